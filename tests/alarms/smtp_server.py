"""A real SMTP server process for the e-mail tests (aiosmtpd): STARTTLS required, a login, every message written to a
folder as it arrives (before the server answers), and misbehaviour on demand.

    python tests/alarms/smtp_server.py --port P --cert C --key K --out DIR [--user U:PW]
        [--refuse N --code 451] [--hold-first S]

`--refuse N`: the first N messages are answered with `--code` (4xx: try later, 5xx: refused for good).
`--hold-first S`: the first accepted message is written to DIR/held-1.eml, then the 250 waits S seconds (a
gateway killed meanwhile never learns it was sent). Accepted messages are DIR/NNN.eml in arrival order.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def _write(path: Path, content: bytes) -> None:
    """Whole or not at all: a test polling the folder must never read a message half written."""
    part = path.with_name(f".{path.name}.part")
    part.write_bytes(content)
    os.replace(part, path)


class Handler:
    def __init__(self, out: Path, refuse: int, code: int, hold_first: float):
        self.out, self.refuse, self.code, self.hold_first = out, refuse, code, hold_first
        self.seen = 0
        self.accepted = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.seen += 1
        if self.seen <= self.refuse:
            _write(self.out / f"refused-{self.seen}.eml", envelope.content)
            return f"{self.code} {'try again later' if self.code < 500 else 'mailbox unavailable'}"
        if self.hold_first and self.accepted == 0 and not (self.out / "held-1.eml").exists():
            _write(self.out / "held-1.eml", envelope.content)
            await asyncio.sleep(self.hold_first)
        self.accepted += 1
        _write(self.out / f"{self.accepted:03d}.eml", envelope.content)
        return "250 OK"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--user", default="")
    ap.add_argument("--refuse", type=int, default=0)
    ap.add_argument("--code", type=int, default=451)
    ap.add_argument("--hold-first", type=float, default=0.0)
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(a.cert, a.key)
    user, _, pw = a.user.partition(":")

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.login.decode() == user and data.password.decode() == pw
        return AuthResult(success=ok, handled=False)

    handler = Handler(out, a.refuse, a.code, a.hold_first)

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(handler, hostname="localhost", tls_context=tls, require_starttls=True,
                         authenticator=authenticate if user else None, auth_required=bool(user)),
            "127.0.0.1", a.port)
        print(f"ready on 127.0.0.1:{a.port}", flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
