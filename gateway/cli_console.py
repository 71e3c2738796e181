"""The commands' rich consoles and tables, made at first use.

rich (~45 modules, ~2.5 MB of RSS) is needed only by the commands that print tables and progress; `plume run` goes
through the same `plume` command line (gateway.cli) but never prints with rich, so nothing here imports it before a
command uses it. Piped output (CI logs, `| less`) gets wide lines instead of rich's 80-column default."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table as RichTable


class LazyConsole:
    """Stands for `rich.console.Console(highlight=False, ...)` on stdout (or stderr); made at the first use."""

    def __init__(self, stderr: bool = False):
        self._stderr = stderr
        self._console: Console | None = None

    @property
    def console(self) -> Console:
        """The rich Console itself (for APIs that want one: Live, Progress)."""
        if self._console is None:
            from rich.console import Console

            stream = sys.stderr if self._stderr else sys.stdout
            self._console = Console(stderr=self._stderr, highlight=False, width=None if stream.isatty() else 160)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.console, name)


def Table(*columns: Any, **options: Any) -> RichTable:
    from rich.table import Table as RichTable

    return RichTable(*columns, **options)
