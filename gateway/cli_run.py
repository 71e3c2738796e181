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


async def _run(site: object, metrics_port: int | None, metrics_host: str) -> int:
    import asyncio
    import logging
    import signal

    from gateway.pipeline.gateway import FatalError, Gateway
    from gateway.site.model import Site

    assert isinstance(site, Site)
    log = logging.getLogger("plume.run")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()

    def on_signal(sig: signal.Signals) -> None:
        if not stop.is_set():
            log.info("%s: stopping (flushing the log, letting sinks deliver)", sig.name)
            stop.set()
        else:
            log.warning("%s again: stopping now", sig.name)
            if main is not None:
                main.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    # every log consumer of the site file (sinks, webhooks, HJ 212 uplinks) comes from the one wiring table
    gateway = Gateway(site, metrics_port=metrics_port, metrics_host=metrics_host)
    try:
        await gateway.run(stop)
    except FatalError as exc:
        log.critical("%s", exc)
        return exc.code
    except asyncio.CancelledError:
        return 130
    return 0


if __name__ == "__main__":
    typer.run(run_command)
