"""`plume run FILE`: the long-running gateway (acquisition -> durable log -> sinks, webhooks, HJ 212 uplinks).

Exit codes: 0 after SIGTERM/SIGINT (clean stop), 2 for a site file that cannot be used (every problem printed as
`FILE: path: message`), 1 for any other fatal error (one line). Heavy imports happen inside the command so that
`plume --help` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer


def run_command(
    file: Annotated[Path, typer.Argument(help="The site file (YAML) to run.", show_default=False)],
    log_format: Annotated[str, typer.Option("--log-format", help="Log lines as text or json.")] = "text",
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning or error.")] = "info",
    metrics_port: Annotated[
        int | None,
        typer.Option("--metrics-port", help="Serve Prometheus metrics at http://HOST:PORT/metrics (off by default)."),
    ] = None,
    metrics_host: Annotated[str, typer.Option("--metrics-host", help="Address for --metrics-port.")] = "127.0.0.1",
) -> None:
    """Run the gateway: poll every device, commit each reading to the durable log, deliver it to every sink."""
    hide_trio()
    import asyncio
    import logging

    from gateway.config import ConfigError
    from gateway.core.clock import SPEEDUP_ENV, speedup_from_environment
    from gateway.logsetup import setup_logging
    from gateway.site.load import load_site

    try:
        setup_logging(log_format, log_level)
        fast = speedup_from_environment()
    except ValueError as exc:
        print(f"plume run: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    if fast != 1.0:
        logging.getLogger("plume.run").warning("%s: the clock runs %g times as fast as real time (tests and demos "
                                               "only: never on a real site)", SPEEDUP_ENV, fast)
    try:
        site = load_site(file)
    except ConfigError as exc:
        for line in exc.problems:
            print(f"{file}: {line}", file=sys.stderr)
        raise typer.Exit(2) from None
    try:
        code = asyncio.run(_run(site, metrics_port, metrics_host))
    except ConfigError as exc:
        for line in exc.problems:
            print(f"{file}: {line}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        code = 130
    logging.shutdown()
    if code:
        raise typer.Exit(code)


def hide_trio() -> None:
    """Make `import trio` fail in this process, as it does where the gateway is installed alone.

    httpcore (under httpx, the InfluxDB sink's client) imports trio whenever it is installed, to support trio
    programs; `plume run` runs on asyncio only and never uses it. trio comes into an environment only with tools
    (selenium in the development extra), and importing it with attrs, outcome and sortedcontainers costs ~4 MB of
    RSS. Only the `plume run` process does this (it owns its imports), never a library import."""
    if "trio" not in sys.modules:
        sys.modules["trio"] = None  # type: ignore[assignment]  # None in sys.modules: ImportError on import


async def _run(site: object, metrics_port: int | None, metrics_host: str) -> int:
    """Run the gateway until SIGTERM/SIGINT. SIGHUP (`systemctl reload plume`) reloads the site file: a file that
    does not load is refused with every problem and the running configuration goes on; a valid one replaces it -
    acquisition finishes the polls in flight, the log commits them, sinks hand over through their cursors, then
    the gateway starts again on the new file, in the same process and on the same log."""
    import asyncio
    import logging
    import signal

    from gateway.config import ConfigError
    from gateway.pipeline.gateway import FatalError, Gateway
    from gateway.site.load import load_site
    from gateway.site.model import Site

    assert isinstance(site, Site)
    log = logging.getLogger("plume.run")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    current: Site = site
    pending: list[Site] = []
    run_stop = asyncio.Event()
    gateway: Gateway | None = None

    def on_signal(sig: signal.Signals) -> None:
        if not stop.is_set():
            log.info("%s: stopping (flushing the log, letting sinks deliver)", sig.name)
            stop.set()
            run_stop.set()
        else:
            log.warning("%s again: stopping now", sig.name)
            if main is not None:
                main.cancel()

    def on_hup() -> None:
        if stop.is_set():
            return
        path = current.path
        try:
            new = load_site(path)
        except ConfigError as exc:
            log.error("SIGHUP: %s has %d problem%s; the gateway keeps running the previous configuration:", path,
                      len(exc.problems), "" if len(exc.problems) == 1 else "s")
            for line in exc.problems:
                log.error("%s: %s", path, line)
            return
        for line in new.warnings:
            log.warning("%s: %s", path, line)
        log.info("SIGHUP: %s is valid; applying it (polls in flight finish, the log commits them)", path)
        pending[:] = [new]
        if gateway is not None:
            gateway.reloading = True
        run_stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    for line in current.warnings:
        log.warning("%s: %s", current.path, line)
    try:
        while True:
            # every log consumer of the site file (sinks, webhooks, HJ 212 uplinks) comes from the one wiring table
            gateway = Gateway(current, metrics_port=metrics_port, metrics_host=metrics_host)
            try:
                await gateway.run(run_stop)
            except FatalError as exc:
                log.critical("%s", exc)
                return exc.code
            except asyncio.CancelledError:
                return 130
            if stop.is_set() or not pending:
                return 0
            current = pending.pop()
            run_stop = asyncio.Event()
            log.info("reloaded %s", current.path)
    finally:
        loop.remove_signal_handler(signal.SIGHUP)


if __name__ == "__main__":
    typer.run(run_command)
