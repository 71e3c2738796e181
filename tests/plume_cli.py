"""`plume ...` one-shot commands for the tests, each in a process of its own, forked from one that has already
imported the CLI.

A command started as `python -m gateway.cli ...` spends ~0.7 s of CPU importing (pydantic building the site
models, typer, rich) before it does anything, and the suite runs hundreds of them. Here a per-worker server process
imports `gateway.cli` once and forks a child per command; the child gets the command's arguments, environment,
working directory and fresh stdin/stdout/stderr, runs the command as `python -m gateway.cli` would (same program
name, exit code, tracebacks on stderr) and exits. What a test sees is what `subprocess.run` gives: a
CompletedProcess with the exit code and the two outputs, or TimeoutExpired (the child is killed). If the server
cannot be used, the command runs as a plain child process instead.

Long-running commands (`plume run`, `plume-sim`) are started as real processes by tests/pipeline/helpers.Proc.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PROG = "python -m gateway.cli"  # what click names the program when it is started with -m


def plume(*args: str | Path, cwd: Path | str = ROOT, env: dict[str, str] | None = None, timeout: float = 90,
          input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run `plume ARGS` like `subprocess.run([python, -m, gateway.cli, ...], capture_output=True, text=True)`;
    `env` is the child's whole environment (None: this process's), `input` its stdin (None: empty)."""
    argv = [str(a) for a in args]
    environ = dict(os.environ if env is None else env)
    try:
        if _startup(environ) != _startup(os.environ):  # e.g. a sitecustomize on PYTHONPATH: needs a fresh start
            raise _Unavailable("the interpreter's own settings differ")
        return _server().run(argv, str(cwd), environ, timeout, input)
    except _Unavailable:
        return subprocess.run(_command_line(argv), capture_output=True, text=True,
                              env=environ, cwd=cwd, timeout=timeout, input=input,
                              stdin=subprocess.DEVNULL if input is None else None)


class _Unavailable(Exception):
    pass


def _command_line(argv: list[str]) -> list[str]:
    return [sys.executable, "-m", "gateway.cli", *argv]


def _startup(environ: Mapping[str, str]) -> dict[str, str]:
    """What the interpreter reads before any code runs (PYTHONPATH, PYTHONHASHSEED, ...): a forked child keeps the
    server's."""
    return {k: v for k, v in environ.items() if k.startswith("PYTHON")}


class _Server:
    """The client side: one server process per test process, one command at a time."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.proc: subprocess.Popen[bytes] | None = None
        self.broken = False

    def _start(self) -> subprocess.Popen[bytes]:
        if self.proc is None or self.proc.poll() is not None:
            path = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
            self.proc = subprocess.Popen([sys.executable, "-m", "tests.plume_cli"], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, cwd=ROOT, env=env, start_new_session=True)
            line = self.proc.stdout.readline() if self.proc.stdout else b""
            if line.strip() != b"ready":
                self.broken = True
                raise _Unavailable(line)
        return self.proc

    def run(self, argv: list[str], cwd: str, env: dict[str, str], timeout: float,
            stdin: str | None) -> subprocess.CompletedProcess[str]:
        if self.broken:
            raise _Unavailable()
        with self.lock:
            try:
                proc = self._start()
                assert proc.stdin is not None and proc.stdout is not None
                proc.stdin.write(json.dumps({"argv": argv, "cwd": cwd, "env": env, "timeout": timeout,
                                            "stdin": stdin}).encode()
                                 + b"\n")
                proc.stdin.flush()
                line = proc.stdout.readline()
                answer = json.loads(line)
            except (OSError, ValueError) as exc:
                self.broken = True
                raise _Unavailable(exc) from None
        if answer.get("error"):
            self.broken = True
            raise _Unavailable(answer["error"])
        out, err = _read(answer["stdout"]), _read(answer["stderr"])
        cmd = _command_line(argv)
        if answer["timed_out"]:
            raise subprocess.TimeoutExpired(cmd, timeout, output=out, stderr=err)
        return subprocess.CompletedProcess(cmd, answer["returncode"], out, err)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    finally:
        os.unlink(path)


_client: _Server | None = None


def _server() -> _Server:
    global _client
    if _client is None:
        _client = _Server()
        atexit.register(_client.close)
    return _client


# --- the server process --------------------------------------------------------------------------------------------
def _serve() -> None:
    requests = sys.stdin.buffer
    answers = os.fdopen(os.dup(1), "wb", buffering=0)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 1)  # what the CLI module sees at import: output that is not a terminal, as under capture
    import gateway.cli  # noqa: F401 - the point: imported once, before any fork

    answers.write(b"ready\n")
    for line in requests:
        req = json.loads(line)
        try:
            answers.write((json.dumps(_fork(req, devnull)) + "\n").encode())
        except Exception as exc:  # the server cannot run it: the client falls back to a plain process
            answers.write((json.dumps({"error": repr(exc)}) + "\n").encode())


def _fork(req: dict[str, Any], devnull: int) -> dict[str, Any]:
    out_fd, out_path = tempfile.mkstemp(prefix="plume-out-")
    err_fd, err_path = tempfile.mkstemp(prefix="plume-err-")
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the command's own process
        code = 1
        try:
            os.setsid()
            if req["stdin"] is None:
                os.dup2(devnull, 0)
            else:
                r, w = os.pipe()
                os.dup2(r, 0)
                _feed(w, req["stdin"].encode())
            os.dup2(out_fd, 1)
            os.dup2(err_fd, 2)
            os.chdir(req["cwd"])
            os.environ.clear()
            os.environ.update(req["env"])
            signal.signal(signal.SIGINT, signal.default_int_handler)
            code = _command(req["argv"])
        finally:
            os._exit(code)
    os.close(out_fd)
    os.close(err_fd)
    exited = os.pidfd_open(pid)  # readable once the child has exited: a wait with a timeout, no polling
    try:
        timed_out = not select.select([exited], [], [], float(req["timeout"]))[0]
    finally:
        os.close(exited)
    if timed_out:
        os.killpg(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    return {"returncode": os.waitstatus_to_exitcode(status), "timed_out": timed_out, "stdout": out_path,
            "stderr": err_path}


def _feed(fd: int, data: bytes) -> None:
    """The command's stdin, written from a thread so that input larger than a pipe's buffer cannot block."""
    def write() -> None:
        with os.fdopen(fd, "wb") as f:
            f.write(data)

    threading.Thread(target=write, daemon=True).start()


def _command(argv: list[str]) -> int:
    """Run the CLI as `python -m gateway.cli ARGV` would, and say the exit code a shell would see."""
    from gateway.cli import app

    sys.argv = [str(ROOT / "gateway" / "cli.py"), *argv]
    code: int = 0
    try:
        app(args=argv, prog_name=PROG)
    except SystemExit as exc:
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    try:
        atexit._run_exitfuncs()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    return code


if __name__ == "__main__":
    _serve()
