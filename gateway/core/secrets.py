"""The one redaction path: every secret the site file holds, in every form it can take, is masked as `***`.

Why here (core): log lines (gateway.logsetup), stored error texts (the log's rejected table, health's
`last_error`) and what a receiver echoes back all pass through `redact`, and every layer may import core.

A secret is registered when its section is wired (gateway.pipeline.consumers, HJ 212 uplinks) in the forms it
travels in: as given, URL-encoded, and — for a user and password sent as HTTP Basic — the base64 of `user:pass`.
A URL is registered by its parts: the password of its user-info, every query value, and every path segment that
looks like a key (a robot's `.../hook/<uuid>`). Patterns catch what nobody registered: `user:pass@` in a URL,
`password=`/`token=`/`key=`-style pairs, and `Authorization: Basic|Bearer|Token ...` in any quoting.
"""

from __future__ import annotations

import base64
import re
import urllib.parse

MASK = "***"
_secrets: set[str] = set()
_sorted: list[str] = []
_KEYS = r"password|passwd|pwd|token|access_token|secret|key|apikey|api_key|sign|signature|auth|pw"
_PATTERNS = [
    # user-info of a URL: scheme://user:pass@host
    (re.compile(r"(?i)(://[^/\s:@]+:)[^@\s/]+@"), r"\1" + MASK + "@"),
    # an Authorization header (or its echo as JSON / repr): the credentials after the scheme
    (re.compile(r"(?i)(authorization[\"']?\s*[:=,]\s*[\"']?\s*(?:basic|bearer|token)\s+)[^\s\"',;}]+"),
     r"\1" + MASK),
    (re.compile(r"(?i)\b(basic\s+)[A-Za-z0-9+/]{8,}={0,2}"), r"\1" + MASK),
    # key=value pairs: query strings, form bodies, config dumps, JSON
    (re.compile(rf"(?i)\b({_KEYS})([\"']?\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s\"',;&}}]+)"), r"\1\2" + MASK),
]


def _looks_like_a_key(segment: str) -> bool:
    """A URL path segment that is probably a credential: long, or mixing letters and digits."""
    if len(segment) >= 20:
        return True
    return len(segment) >= 8 and any(c.isdigit() for c in segment) and any(c.isalpha() for c in segment)


def add_secret(value: str | None) -> None:
    """Never show this value, as given or URL-encoded (values shorter than 3 characters are ignored: masking 'a'
    everywhere helps nobody)."""
    if not value or len(value) < 3:
        return
    for form in (value, urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value)):
        _secrets.add(form)
    _sorted[:] = sorted(_secrets, key=len, reverse=True)


def add_basic_auth(user: str | None, password: str | None) -> None:
    """A user and password sent as HTTP Basic: the password and the header's base64 are secrets."""
    add_secret(password)
    if user and password:
        add_secret(base64.b64encode(f"{user}:{password}".encode()).decode())


def add_header(name: str, value: str) -> None:
    """A header configured in the site file: credentials in it are secrets (Authorization, *key*, *token*...)."""
    if not re.search(r"(?i)auth|key|token|secret|sign|cookie|pass", name):
        return
    scheme, _, cred = value.strip().partition(" ")
    if not cred:
        add_secret(value.strip())
        return
    add_secret(cred)
    if scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(cred, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return
        add_secret(f"{user}:{password}")
        add_secret(password)


def add_url(url: str | None) -> None:
    """A URL that holds credentials: the whole of it, its user-info password, query values and key-like path
    segments."""
    if not url:
        return
    add_secret(url)
    p = urllib.parse.urlsplit(url)
    add_secret(p.password)
    for _, value in urllib.parse.parse_qsl(p.query, keep_blank_values=False):
        add_secret(value)
    for segment in p.path.split("/"):
        if _looks_like_a_key(segment):
            add_secret(segment)


def add_url_credentials(url: str | None) -> None:
    """A URL that is no secret but may carry one: its user-info password and its query values (a camera's
    snapshot URL with `?auth=...`)."""
    if not url:
        return
    p = urllib.parse.urlsplit(url)
    add_secret(p.password)
    for _, value in urllib.parse.parse_qsl(p.query, keep_blank_values=False):
        add_secret(value)


def safe_url(url: str, query: bool = True) -> str:
    """The URL as a log line may show it: scheme://host[:port]/path, key-like path segments and every query
    value masked (or, `query=False`, no query at all), no user-info."""
    p = urllib.parse.urlsplit(url)
    host = p.hostname or ""
    if p.port:
        host += f":{p.port}"
    path = "/".join(MASK if _looks_like_a_key(s) else s for s in p.path.split("/"))
    shown = "&".join(f"{k}={MASK}" for k, _ in urllib.parse.parse_qsl(p.query, keep_blank_values=True))
    return f"{p.scheme}://{host}{path}" + (f"?{shown}" if shown and query else "")


def redact(text: str) -> str:
    """`text` with every registered secret and every credential-looking part masked."""
    for s in _sorted:
        if s in text:
            text = text.replace(s, MASK)
    for rx, repl in _PATTERNS:
        text = rx.sub(repl, text)
    return text


def cut(text: str, limit: int = 200) -> str:
    """A receiver's answer as it may be shown or stored: one line, at most `limit` characters, redacted."""
    one = redact(" ".join(text.split()))  # redact before cutting: a cut secret would no longer match
    return one[:limit] + ("..." if len(one) > limit else "")
