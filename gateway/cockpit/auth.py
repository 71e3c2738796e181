"""Passwords and sessions of the cockpit, with the standard library only.

- A password is kept as `scrypt$N$r$p$salt$hash` (hashlib.scrypt, 16-byte random salt, base64): the site file
  never holds the password itself. Checking compares in constant time.
- A login gives a random session token (a cookie, HttpOnly, SameSite=Strict) that expires `session_minutes`
  after the login, whatever happens in between; expired sessions are forgotten. The clock is injectable for tests.
- Failed logins are counted; after 5 in a row from anywhere, each next attempt waits a second longer (up to 10 s)
  before it is judged, so guessing over the LAN is slow.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable

N, R, P = 16384, 8, 1
MAXMEM = 64 * 1024 * 1024


def hash_password(password: str, *, n: int = N, r: int = R, p: int = P) -> str:
    if not password:
        raise ValueError("the password is empty")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=MAXMEM, dklen=32)
    return "$".join(["scrypt", str(n), str(r), str(p), base64.b64encode(salt).decode(),
                     base64.b64encode(digest).decode()])


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        want = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             maxmem=MAXMEM, dklen=len(want))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


class Sessions:
    """Who is logged in: token -> expiry (monotonic seconds)."""

    def __init__(self, minutes: float, clock: Callable[[], float] = time.monotonic):
        self.lifetime_s = minutes * 60
        self._clock = clock
        self._expiry: dict[str, float] = {}
        self.failures = 0

    def create(self) -> str:
        self._forget_expired()
        token = secrets.token_urlsafe(32)
        self._expiry[token] = self._clock() + self.lifetime_s
        self.failures = 0
        return token

    def valid(self, token: str | None) -> bool:
        if not token:
            return False
        expiry = self._expiry.get(token)
        if expiry is None:
            return False
        if self._clock() >= expiry:
            del self._expiry[token]
            return False
        return True

    def end(self, token: str | None) -> None:
        if token:
            self._expiry.pop(token, None)

    def penalty_s(self) -> float:
        """How long the next login attempt waits before it is judged."""
        return 0.0 if self.failures < 5 else min(10.0, float(self.failures - 4))

    def _forget_expired(self) -> None:
        now = self._clock()
        for token in [t for t, e in self._expiry.items() if e <= now]:
            del self._expiry[token]
