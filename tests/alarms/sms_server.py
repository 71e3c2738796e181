"""A fake HTTP SMS provider for the tests, as a separate process on a loopback port (it survives a `kill -9` of the
gateway): every request is written to `--out` as one JSON line (method, path, query, headers, form or JSON body)
once it has been answered ("answered": true) or held. Answers like an SMS API: HTTP 200 with `{"code": 0}`;
`--busy N` answers the first N requests `{"code": 33, "msg": "too often"}` (a rate limit), `--refuse-phone P` answers
`{"code": 2, "msg": "bad number"}` for that number, `--hold-first S` holds the first answer S seconds (a crash between
the provider taking the SMS and the gateway hearing so)."""

from __future__ import annotations

import argparse
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--busy", type=int, default=0)
    ap.add_argument("--refuse-phone", default="")
    ap.add_argument("--hold-first", type=float, default=0.0)
    args = ap.parse_args()
    lock = threading.Lock()
    state = {"n": 0}

    def record(entry: dict[str, Any]) -> None:
        with lock, args.out.open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry, ensure_ascii=False) + "\n")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a: object) -> None:
            pass

        def _handle(self) -> None:
            split = urllib.parse.urlsplit(self.path)
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            ctype = self.headers.get("Content-Type", "")
            body: Any = raw
            if "json" in ctype:
                body = json.loads(raw)
            elif "form" in ctype:
                body = dict(urllib.parse.parse_qsl(raw))
            with lock:
                state["n"] += 1
                n = state["n"]
            entry = {"n": n, "method": self.command, "path": split.path,
                     "query": dict(urllib.parse.parse_qsl(split.query)),
                     "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
            phones = json.dumps(body, ensure_ascii=False) + split.query
            if n <= args.busy:
                answer = {"code": 33, "msg": "too often"}
            elif args.refuse_phone and args.refuse_phone in phones:
                answer = {"code": 2, "msg": "bad number"}
            else:
                answer = {"code": 0, "msg": "发送成功"}
            if n == 1 and args.hold_first:
                record({**entry, "answered": False, "answer": answer})
                time.sleep(args.hold_first)
            else:
                record({**entry, "answered": True, "answer": answer})
            data = json.dumps(answer, ensure_ascii=False).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_POST = _handle
        do_GET = _handle

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
