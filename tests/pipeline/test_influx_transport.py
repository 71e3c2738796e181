"""The InfluxDB sink's own HTTP/1.1 transport (gateway/sinks/http1.py) against real servers: InfluxDB 1.6 with no
HTTP client library importable, and a local HTTP(S) server (the standard library's, in a thread) for what
InfluxDB does not do on demand: TLS with a private CA, a path prefix, chunked answers, a kept-alive connection
the server closed, an answer that never comes."""

from __future__ import annotations

import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from gateway.sinks.config import InfluxSinkConfig
from gateway.sinks.influx_http import TransportError, make_writer
from gateway.store.config import StoreConfig
from gateway.store.log import DurableLog

from .helpers import reading
from .servers import InfluxDB
from .test_influx_sink import T0, deliver, v1_sink


async def test_the_sink_writes_with_no_http_client_library(tmp_path: Path, influxdb: InfluxDB,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    log = DurableLog(tmp_path / "log.sqlite", StoreConfig())
    await log.open(["tsdb"])
    for i in range(20):
        log.append(reading(f"d{i % 2}", T0 + i * 100))
    with monkeypatch.context() as m:  # the test's own InfluxDB helper reads back through httpx afterwards
        for lib in ("httpx", "httpcore", "anyio", "h11"):  # importing any of them now raises ImportError
            m.setitem(sys.modules, lib, None)
        await deliver(v1_sink(influxdb, log, username="plume", password="pw"), log)
    await log.close()
    assert [r["time"] for r in influxdb.rows("dust")] == [T0 + i * 100 for i in range(20)]


class Recorder(BaseHTTPRequestHandler):
    """Records each request (path, headers, body) and answers as the test's `mode` says."""

    protocol_version = "HTTP/1.1"
    seen: ClassVar[list[dict[str, Any]]] = []
    mode = "204"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.seen.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body,
                          "conn": id(self.connection)})
        if self.mode == "hang":
            threading.Event().wait(3)
            return
        if self.mode == "chunked":
            self.send_response(400)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b'{"error":', b'"partial write: field type conflict"}'):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
            return
        self.send_response(204)
        self.send_header("Content-Length", "0")
        if self.mode == "close":
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout", str(key),
                    "-out", str(cert), "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
    return key, cert


def serve(tls: tuple[Path, Path] | None = None) -> Iterator[tuple[str, type[Recorder]]]:
    handler = type("Handler", (Recorder,), {"seen": [], "mode": "204"})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    scheme = "http"
    if tls is not None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tls[1], tls[0])
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{scheme}://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def plain() -> Iterator[tuple[str, type[Recorder]]]:
    yield from serve()


@pytest.fixture
def https(tls_files: tuple[Path, Path]) -> Iterator[tuple[str, type[Recorder]]]:
    yield from serve(tls_files)


def writer(url: str, **kw: Any) -> Any:
    cfg = InfluxSinkConfig(type="influx", name="t", url=url, database="plume", gzip=False, **kw)
    return make_writer(cfg, kw.get("password"))


async def test_a_path_prefix_basic_auth_and_one_kept_alive_connection(plain: tuple[str, type[Recorder]]) -> None:
    url, handler = plain
    w = writer(url + "/influx/", username="u", password="p")
    await w.open()
    try:
        for i in range(3):
            assert await w.write(f"dust,device=d1 pm10={i} 1") == (204, "")
    finally:
        await w.close()
    assert [s["path"] for s in handler.seen] == ["/influx/write?db=plume&precision=ms"] * 3
    assert {s["auth"] for s in handler.seen} == {"Basic dTpw"}
    assert [s["body"] for s in handler.seen] == [f"dust,device=d1 pm10={i} 1".encode() for i in range(3)]
    assert len({s["conn"] for s in handler.seen}) == 1, "one connection for every write"


async def test_a_connection_the_server_closed_is_opened_again(plain: tuple[str, type[Recorder]]) -> None:
    url, handler = plain
    handler.mode = "close"
    w = writer(url)
    await w.open()
    try:
        for _ in range(3):
            assert (await w.write("m v=1 1"))[0] == 204
    finally:
        await w.close()
    assert len(handler.seen) == 3


async def test_a_chunked_error_answer_is_read_whole(plain: tuple[str, type[Recorder]]) -> None:
    url, handler = plain
    handler.mode = "chunked"
    w = writer(url)
    await w.open()
    try:
        assert await w.write("m v=1 1") == (400, '{"error":"partial write: field type conflict"}')
    finally:
        await w.close()


async def test_no_answer_within_the_timeout_is_a_transport_error(plain: tuple[str, type[Recorder]]) -> None:
    url, handler = plain
    handler.mode = "hang"
    w = writer(url, timeout_s=0.3)
    await w.open()
    try:
        with pytest.raises(TransportError, match=r"timed out after 0\.3 s"):
            await w.write("m v=1 1")
    finally:
        await w.close()


async def test_nothing_listening_is_a_transport_error(plain: tuple[str, type[Recorder]]) -> None:
    from gateway.localservers import free_port

    w = writer(f"http://127.0.0.1:{free_port()}")
    await w.open()
    try:
        with pytest.raises(TransportError):
            await w.write("m v=1 1")
    finally:
        await w.close()


async def test_tls_with_the_sites_ca_file(https: tuple[str, type[Recorder]], tls_files: tuple[Path, Path]) -> None:
    url, handler = https
    w = writer(url, ca_file=str(tls_files[1]))
    await w.open()
    try:
        assert await w.write("m v=1 1") == (204, "")
    finally:
        await w.close()
    untrusted = writer(url)  # the system's CA store does not know this certificate
    await untrusted.open()
    try:
        with pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"):
            await untrusted.write("m v=1 1")
    finally:
        await untrusted.close()
    unchecked = writer(url, verify_tls=False)
    await unchecked.open()
    try:
        assert (await unchecked.write("m v=1 1"))[0] == 204
    finally:
        await unchecked.close()
    assert len(handler.seen) == 2
