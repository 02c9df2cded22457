"""Retention with real processes: an output that expires in seconds is reaped by the sweeper, an expired input
stays while another batch reads it. BATCHQ_MIN_EXPIRES_AFTER_S is lowered here; tests/integration/test_retention.py
proves the default (3600) refuses less."""

from __future__ import annotations

import time

import httpx

from tests.e2e.conftest import StackFactory
from tests.e2e.test_chaos import configure_sim
from tests.stack import chat_lines, to_jsonl, wait_final

CHAT = "/v1/chat/completions"


def wait_status(url: str, status: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.get(url).status_code == status:
            return True
        time.sleep(0.25)
    return False


def test_expired_output_is_reaped_and_an_input_in_use_stays(make_stack: StackFactory, sim: str) -> None:
    stack = make_stack(min_expires_after_s="1")  # the sweeper (and reaper) runs every second in e2e stacks
    api = stack.start_api()
    stack.start_worker("w1")
    # Given an input that expires in 3 s and a batch whose output expires 2 s after it is written
    r = httpx.post(
        f"{api}/v1/files",
        files={"file": ("in.jsonl", to_jsonl(chat_lines(2)))},
        data={"purpose": "batch", "expires_after[anchor]": "created_at", "expires_after[seconds]": "3"},
    )
    assert r.status_code == 200, r.text
    input_id = r.json()["id"]
    first = httpx.post(
        f"{api}/v1/batches",
        json={
            "input_file_id": input_id,
            "endpoint": CHAT,
            "output_expires_after": {"anchor": "created_at", "seconds": 2},
        },
    ).json()
    done = wait_final(api, first["id"], stack=stack)
    assert done["status"] == "completed"
    output_url = f"{api}/v1/files/{done['output_file_id']}"
    output = httpx.get(output_url).json()
    assert output["expires_at"] is not None and output["expires_at"] - output["created_at"] == 2
    # And a second batch still reading the same input (slow upstream: it stays in progress for a while)
    configure_sim(sim, latency_ms=10_000)
    second = httpx.post(f"{api}/v1/batches", json={"input_file_id": input_id, "endpoint": CHAT}).json()
    # When the reaper runs past both expiries
    # Then the first batch's output is gone (404 on the record and the content), the input stays while in use
    assert wait_status(output_url, 404, 20), stack.logs()
    assert httpx.get(f"{output_url}/content").status_code == 404
    time.sleep(2.5)  # the input expired by now too (3 s after upload), and the reaper ran twice since
    assert httpx.get(f"{api}/v1/batches/{second['id']}").json()["status"] in ("validating", "in_progress")
    assert httpx.get(f"{api}/v1/files/{input_id}").status_code == 200
    assert httpx.get(f"{api}/v1/files/{input_id}/content").status_code == 200
    # And once the second batch ends, the input goes too; its own output (default 30 days) stays
    finished = wait_final(api, second["id"], stack=stack, timeout=60)
    assert finished["status"] == "completed"
    assert wait_status(f"{api}/v1/files/{input_id}", 404, 20), stack.logs()
    kept = httpx.get(f"{api}/v1/files/{finished['output_file_id']}").json()
    assert kept["expires_at"] - kept["created_at"] == 30 * 24 * 3600
    assert "batchq_storage_bytes" in httpx.get(f"{api}/metrics").text
