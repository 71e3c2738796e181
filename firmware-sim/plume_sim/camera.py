"""A site camera's HTTP snapshot endpoint, as ONVIF cameras and NVRs expose one, for testing alarm snapshots.

    python -m plume_sim.camera --port P [--auth digest|basic|none] [--user U:PW] [--mode ok|hang|error]

Every GET (any path, e.g. /onvif/snapshot or /ISAPI/Streaming/channels/101/picture) answers a fresh JPEG (a small
greyscale picture that changes with each frame; plume_sim.jpeg) once the client authenticated: digest (RFC 7616,
MD5, qop=auth, the common camera default) or basic. `--mode hang` accepts connections and reads the request but
never answers (a camera that is frozen or a NVR port that is half up); `--mode error` answers 500. Listens on
127.0.0.1 only. Prints `ready on 127.0.0.1:P` when listening and one line per request unless --quiet.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import secrets
import time

from plume_sim.jpeg import site_picture

REALM = "plume-camera"


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def _params(header: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in _split(header):
        key, _, value = part.strip().partition("=")
        out[key.strip().lower()] = value.strip().strip('"')
    return out


def _split(text: str) -> list[str]:
    parts, cur, quoted = [], "", False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return [*parts, cur] if cur.strip() else parts


class Camera:
    def __init__(self, auth: str, user: str, password: str, mode: str, quiet: bool):
        self.auth, self.user, self.password, self.mode, self.quiet = auth, user, password, mode, quiet
        self.nonces: set[str] = set()
        self.frame = 0
        self.refused = 0
        self.hanging: list[asyncio.StreamWriter] = []

    def authorised(self, method: str, header: str) -> bool:
        if self.auth == "none":
            return True
        scheme, _, rest = header.partition(" ")
        if self.auth == "basic":
            try:
                given = base64.b64decode(rest.strip()).decode()
            except ValueError:
                return False
            return scheme.lower() == "basic" and secrets.compare_digest(given, f"{self.user}:{self.password}")
        if scheme.lower() != "digest":
            return False
        p = _params(rest)
        if p.get("username") != self.user or p.get("nonce") not in self.nonces or p.get("realm") != REALM:
            return False
        ha1 = _md5(f"{self.user}:{REALM}:{self.password}")
        ha2 = _md5(f"{method}:{p.get('uri', '')}")
        if p.get("qop"):
            expected = _md5(f"{ha1}:{p['nonce']}:{p.get('nc', '')}:{p.get('cnonce', '')}:{p['qop']}:{ha2}")
        else:
            expected = _md5(f"{ha1}:{p['nonce']}:{ha2}")
        return secrets.compare_digest(expected, p.get("response", ""))

    def challenge(self) -> str:
        if self.auth == "basic":
            return f'Basic realm="{REALM}"'
        nonce = secrets.token_hex(16)
        self.nonces.add(nonce)
        return f'Digest realm="{REALM}", qop="auth", nonce="{nonce}", opaque="{secrets.token_hex(8)}", algorithm=MD5'

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = [*lines[0].split(" "), "", ""][:3]
                headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)}
                if self.mode == "hang":
                    self._say(f"{method} {path}: hanging (never answering)")
                    self.hanging.append(writer)
                    await asyncio.Event().wait()
                if not self.authorised(method, headers.get("authorization", "")):
                    self.refused += 1
                    why = "no credentials" if "authorization" not in headers else "refused"
                    self._say(f"{method} {path}: 401 ({why})")
                    self._answer(writer, 401, b"unauthorised", "text/plain",
                                 [("WWW-Authenticate", self.challenge())])
                elif self.mode == "error":
                    self._answer(writer, 500, b"internal error", "text/plain")
                else:
                    self.frame += 1
                    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
                    body = site_picture(self.frame, f"plume-sim camera frame {self.frame} {stamp}")
                    self._say(f"{method} {path}: 200 frame {self.frame} ({len(body)} bytes)")
                    self._answer(writer, 200, body, "image/jpeg")
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()

    def _answer(self, writer: asyncio.StreamWriter, status: int, body: bytes, ctype: str,
                extra: list[tuple[str, str]] | None = None) -> None:
        reason = {200: "OK", 401: "Unauthorized", 500: "Internal Server Error"}[status]
        head = [f"HTTP/1.1 {status} {reason}", f"Content-Type: {ctype}", f"Content-Length: {len(body)}",
                *(f"{k}: {v}" for k, v in extra or [])]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)

    def _say(self, line: str) -> None:
        if not self.quiet:
            print(line, flush=True)


async def serve(port: int, camera: Camera) -> None:
    server = await asyncio.start_server(camera.handle, "127.0.0.1", port)
    print(f"ready on 127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m plume_sim.camera", description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=0, help="loopback port (0: any free one, printed when ready)")
    ap.add_argument("--auth", choices=["digest", "basic", "none"], default="digest")
    ap.add_argument("--user", default="admin:admin", help="USER:PASSWORD the camera accepts")
    ap.add_argument("--mode", choices=["ok", "hang", "error"], default="ok")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    user, _, password = a.user.partition(":")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(a.port, Camera(a.auth, user, password, a.mode, a.quiet)))


if __name__ == "__main__":
    main()
