"""One hard deadline per webhook attempt (issue 24, finding 4): post_webhook against hostile loopback receivers."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from batchq.webhooks.transport import post_webhook
from tests.webhook_receiver import DripReceiver

TIMEOUT_S = 1.0
#: Scheduling slack on a busy machine.
SLACK_S = 0.7


@pytest.fixture
def drip() -> Iterator[DripReceiver]:
    r = DripReceiver(interval_s=0.2).start()
    yield r
    r.stop()


def test_a_receiver_dripping_its_headers_is_cut_off_at_the_deadline(drip: DripReceiver) -> None:
    # When an attempt meets a receiver that sends a header byte every 0.2 s (each read well within the timeout)
    started = time.monotonic()
    result = post_webhook(drip.url, b"{}", {}, allow_private=True, timeout_s=TIMEOUT_S)
    elapsed = time.monotonic() - started
    # Then it ends at twice the timeout, a failure that says so, and the receiver saw its connection closed
    assert elapsed <= 2 * TIMEOUT_S + SLACK_S, f"the attempt took {elapsed:.1f}s"
    assert result.status_code is None and not result.ok and "deadline" in (result.error or ""), result
    (connection,) = drip.snapshot()
    deadline = time.monotonic() + 5
    while drip.snapshot()[0].closed is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert drip.snapshot()[0].closed is not None, connection


def test_a_body_dripped_after_a_2xx_still_counts_as_delivered() -> None:
    # Given a receiver that answers 200 at once, then drips its body forever
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
            while not stop.wait(0.2):
                try:
                    conn.sendall(b"x")
                except OSError:
                    return

    threading.Thread(target=serve, daemon=True).start()
    try:
        started = time.monotonic()
        result = post_webhook(f"http://127.0.0.1:{port}/", b"{}", {}, allow_private=True, timeout_s=TIMEOUT_S)
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        server.close()
    # Then the attempt ends at the deadline with the receiver's status: the event was accepted
    assert elapsed <= 2 * TIMEOUT_S + SLACK_S, f"the attempt took {elapsed:.1f}s"
    assert result.ok and result.status_code == 200 and result.answer.startswith("x"), result


def test_a_receiver_stalling_the_tls_handshake_is_cut_off() -> None:
    # Given a TLS receiver that reads the ClientHello, then drips a record header byte by byte
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            for byte in b"\x16\x03\x03\x40\x00" + b"\x02" * 10_000:
                if stop.wait(0.2):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    threading.Thread(target=serve, daemon=True).start()
    try:
        started = time.monotonic()
        result = post_webhook(f"https://127.0.0.1:{port}/", b"{}", {}, allow_private=True, timeout_s=TIMEOUT_S)
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        server.close()
    assert elapsed <= 2 * TIMEOUT_S + SLACK_S, f"the attempt took {elapsed:.1f}s"
    assert result.status_code is None and not result.ok, result
