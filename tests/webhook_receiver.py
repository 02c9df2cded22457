"""A real webhook receiver on loopback for tests: records every request, answers from a programmed list."""

from __future__ import annotations

import select
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """``statuses`` are answered in order (then 200); ``received`` holds every request, in arrival order."""

    statuses: list[int] = field(default_factory=list)
    delay_s: float = 0.0
    """How long each answer takes (a slow receiver)."""
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/hooks"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(min(length, 1 << 20))
                with receiver.lock:
                    receiver.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                if receiver.delay_s:
                    time.sleep(receiver.delay_s)
                self.send_response(status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, name="webhook-receiver", daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def snapshot(self) -> list[Received]:
        with self.lock:
            return list(self.received)


@dataclass
class DripConnection:
    arrived: float
    """time.monotonic() when the request had arrived."""
    closed: float | None = None
    """When the sender closed (or reset) the connection; None while it is open."""

    def open_at(self, moment: float) -> bool:
        return self.arrived <= moment and (self.closed is None or self.closed > moment)


@dataclass
class DripReceiver:
    """A hostile receiver: reads the request, then sends its answer's status line and headers one byte every
    ``interval_s``, never finishing them. Records when each request arrived and when the sender gave up."""

    interval_s: float = 2.0
    connections: list[DripConnection] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _sock: socket.socket | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        assert self._sock is not None
        host, port = self._sock.getsockname()[:2]
        return f"http://{host}:{port}/drip"

    def start(self) -> DripReceiver:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        threading.Thread(target=self._accept, name="drip-receiver", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._sock is not None:
            self._sock.close()

    def snapshot(self) -> list[DripConnection]:
        with self.lock:
            return [DripConnection(c.arrived, c.closed) for c in self.connections]

    def _accept(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        with conn:
            _read_request(conn)
            record = DripConnection(time.monotonic())
            with self.lock:
                self.connections.append(record)
            answer = b"HTTP/1.1 200 OK\r\nX-Drip: " + b"a" * 100_000
            for byte in answer:
                readable, _, _ = select.select([conn], [], [], self.interval_s)
                try:
                    if readable and not conn.recv(1024):
                        break  # the sender closed its side
                    conn.sendall(bytes([byte]))
                except OSError:
                    break
                if self._stop.is_set():
                    return
            with self.lock:
                record.closed = time.monotonic()


def _read_request(conn: socket.socket) -> None:
    """Read one request's head and body (Content-Length)."""
    conn.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return
        body += chunk
    conn.settimeout(None)
