"""Who may read /metrics, against a real API process (issue 24, finding 5)."""

from __future__ import annotations

import socket

import httpx
import pytest

from tests.e2e.conftest import StackFactory
from tests.servers import Proc, batchq_cmd, free_port, wait_for

TOKEN = "metrics-token-0123456789abcdef"


def test_with_a_token_set_metrics_answer_only_the_token(make_stack: StackFactory) -> None:
    # Given the API with tenants' keys and BATCHQ_METRICS_TOKEN
    stack = make_stack(api_keys="key-a:acct-a", metrics_token=TOKEN)
    api = stack.start_api()
    # When /metrics is read without a key, with a tenant's key, with a wrong token
    answers = [
        httpx.get(f"{api}/metrics"),
        httpx.get(f"{api}/metrics", headers={"Authorization": "Bearer key-a"}),
        httpx.get(f"{api}/metrics", headers={"Authorization": f"Bearer {TOKEN}x"}),
    ]
    # Then each is a 401 in OpenAI's envelope; the token reads Prometheus text
    for r in answers:
        assert r.status_code == 401, r.text
        assert r.json()["error"]["type"] == "authentication_error" and r.headers["x-should-retry"] == "false"
    ok = httpx.get(f"{api}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and "# TYPE batchq_active_batches gauge" in ok.text
    assert ok.headers["content-type"].startswith("text/plain")
    # And the tenant's key still works where it belongs
    assert httpx.get(f"{api}/v1/files", headers={"Authorization": "Bearer key-a"}).status_code == 200


def non_loopback_address() -> str | None:
    """An address of this machine that is not loopback (the source address of a connection to it), if any."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
        except OSError:
            return None
        address = str(s.getsockname()[0])
    return None if address.startswith("127.") else address


def test_without_a_token_only_loopback_clients_read_metrics(make_stack: StackFactory) -> None:
    address = non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    # Given the API listening on a non-loopback address of this machine, without BATCHQ_METRICS_TOKEN
    stack = make_stack(api_keys="key-a:acct-a")
    port = free_port()
    proc = Proc(f"api-{port}", batchq_cmd("api", "--host", address, "--port", str(port)), stack.log_dir, stack.env)
    stack.procs.append(proc.start())
    api = f"http://{address}:{port}"
    wait_for(lambda: httpx.get(f"{api}/livez").status_code == 200, 30, "api")
    # When a client that is not loopback reads /metrics (even with a tenant's key)
    r = httpx.get(f"{api}/metrics", headers={"Authorization": "Bearer key-a"})
    # Then it is refused, and told how to open it
    assert r.status_code == 401 and "BATCHQ_METRICS_TOKEN" in r.json()["error"]["message"], r.text
