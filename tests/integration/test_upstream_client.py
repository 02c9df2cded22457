"""The upstream client over real HTTP: answers, error bodies, timeouts and refused connections sorted as the
request task expects them (the simulator for the normal path, a tiny raw server for the odd ones)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from batchq.upstream import UpstreamAnswer, UpstreamClient, UpstreamFailure
from tests.servers import free_port

RECEIVED: list[bytes] = []
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def _client(read_timeout_s: float = 5.0) -> UpstreamClient:
    return UpstreamClient(connect_timeout_s=2.0, read_timeout_s=read_timeout_s, max_connections=4)


def test_an_answer_from_the_simulator(sim: str) -> None:
    client = _client()
    answer = client.post(f"{sim}/chat/completions", BODY, api_key="sk-x", batch_id="batch_1", custom_id="req-1")
    assert isinstance(answer, UpstreamAnswer) and answer.ok and answer.status_code == 200
    assert answer.body["object"] == "chat.completion" and answer.body["usage"]["total_tokens"] > 0
    assert all(name == name.lower() for name in answer.headers)
    per_key = httpx.get(sim.removesuffix("/v1") + "/sim/stats", params={"detail": 1}).json()["per_key"]
    assert per_key == {"batch_1/req-1": 1}  # the batch and custom_id headers reached the upstream
    client.close()


def test_an_error_status_keeps_the_body_with_the_key_redacted(sim: str) -> None:
    httpx.post(
        sim.removesuffix("/v1") + "/sim/config",
        json={"fail_rules": [{"match": "^req-bad$", "status": 400, "times": -1}]},
    ).raise_for_status()
    client = _client()
    answer = client.post(f"{sim}/chat/completions", BODY, api_key="sk-x", batch_id="b", custom_id="req-bad")
    assert isinstance(answer, UpstreamAnswer) and answer.status_code == 400 and not answer.ok
    assert isinstance(answer.body, dict) and answer.error_code()
    client.close()


@pytest.fixture
def raw_server() -> Iterator[tuple[int, list[bytes]]]:
    """A server that answers every connection with the next canned reply (or never, for b""); what it received
    goes into ``RECEIVED``."""
    port = free_port()
    replies: list[bytes] = []
    RECEIVED.clear()
    listener = socket.create_server(("127.0.0.1", port))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        held = []
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            RECEIVED.append(conn.recv(65536))
            reply = replies.pop(0) if replies else b""
            if reply:
                conn.sendall(reply)
                conn.close()
            else:
                held.append(conn)  # no answer: the client's read timeout must end the call
        for conn in held:
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port, replies
    stop.set()
    thread.join()
    listener.close()


def test_a_body_that_is_not_json_and_repeated_headers(raw_server: tuple[int, list[bytes]]) -> None:
    port, replies = raw_server
    replies.append(
        b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\nX-Thing: a\r\nX-Thing: b\r\n"
        b"Retry-After: 3\r\nContent-Length: 13\r\nConnection: close\r\n\r\n<html>x</html"
    )
    answer = _client().post(f"http://127.0.0.1:{port}/v1/x", BODY, api_key=None, batch_id="b", custom_id="c")
    assert isinstance(answer, UpstreamAnswer) and answer.status_code == 502
    assert (
        answer.body == "<html>x</html" and answer.headers["x-thing"] == "a, b" and answer.headers["retry-after"] == "3"
    )
    assert answer.error_code() == "upstream_http_502"


def test_a_silent_upstream_is_a_timeout(raw_server: tuple[int, list[bytes]]) -> None:
    port, _ = raw_server
    started = time.monotonic()
    failure = _client(read_timeout_s=0.5).post(
        f"http://127.0.0.1:{port}/v1/x", BODY, api_key=None, batch_id="b", custom_id="c"
    )
    assert isinstance(failure, UpstreamFailure) and failure.code == "upstream_timeout"
    assert 0.4 < time.monotonic() - started < 3


def test_a_dropped_connection_and_a_refused_one_are_unreachable(raw_server: tuple[int, list[bytes]]) -> None:
    port, replies = raw_server
    replies.append(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"partial"')  # closed mid-body
    dropped = _client().post(f"http://127.0.0.1:{port}/v1/x", BODY, api_key="sk-secret", batch_id="b", custom_id="c")
    assert isinstance(dropped, UpstreamFailure) and dropped.code == "upstream_unreachable"
    refused = _client().post(
        f"http://127.0.0.1:{free_port()}/v1/x", BODY, api_key="sk-secret", batch_id="b", custom_id="c"
    )
    assert isinstance(refused, UpstreamFailure) and refused.code == "upstream_unreachable"
    assert "sk-secret" not in dropped.message + refused.message


def test_an_http_proxy_from_the_environment_is_used_and_no_proxy_is_honoured(
    raw_server: tuple[int, list[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, replies = raw_server
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("NO_PROXY", "direct.example")
    replies.append(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
    client = _client()
    answer = client.post("http://upstream.example/v1/chat/completions", BODY, api_key=None, batch_id="b", custom_id="c")
    assert isinstance(answer, UpstreamAnswer) and answer.status_code == 200
    assert RECEIVED[0].startswith(b"POST http://upstream.example/v1/chat/completions HTTP/1.1")
    bypassed = client.post("http://direct.example/v1/x", BODY, api_key=None, batch_id="b", custom_id="c")
    assert isinstance(bypassed, UpstreamFailure) and len(RECEIVED) == 1  # not sent to the proxy
    client.close()
