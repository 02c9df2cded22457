"""The upstream simulator (batchq/sim.py) over real HTTP, run as a subprocess on a free loopback port."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import Proc, free_port, wait_for

SIM_MAIN = "import sys; from batchq.sim import main; sys.exit(main(sys.argv[1:]))"


def start_sim(log_dir: Path, *args: str) -> tuple[Proc, str]:
    """Start `batchq.sim.main` in a subprocess (independent of the CLI); return it and its root URL."""
    port = free_port()
    proc = Proc(f"sim-test-{port}", [sys.executable, "-c", SIM_MAIN, "--port", str(port), *args], log_dir).start()
    root = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(f"{root}/healthz").status_code == 200, 30, "simulator")
    except TimeoutError:
        proc.stop()
        raise RuntimeError(f"simulator did not start:\n{proc.log_tail()}") from None
    return proc, root


@pytest.fixture(scope="module")
def sim_root(log_dir: Path) -> Iterator[str]:
    proc, root = start_sim(log_dir, "--latency-ms", "0", "--seed", "7")
    yield root
    proc.stop()


@pytest.fixture
def client(sim_root: str) -> Iterator[httpx.Client]:
    """A client on the module's simulator, reset before the test."""
    with httpx.Client(base_url=sim_root, timeout=10) as c:
        c.post("/sim/reset").raise_for_status()
        yield c


def chat(content: str = "Hello there", model: str = "m", **extra: object) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


def configure(c: httpx.Client, **fields: object) -> None:
    c.post("/sim/config", json=fields).raise_for_status()


def stats(c: httpx.Client, detail: bool = False) -> dict:
    return c.get("/sim/stats", params={"detail": "1"} if detail else None).json()


def line(c: httpx.Client, custom_id: str, batch_id: str | None = None) -> httpx.Response:
    headers = {"X-Batchq-Custom-Id": custom_id}
    if batch_id:
        headers["X-Batchq-Batch-Id"] = batch_id
    return c.post("/v1/chat/completions", json=chat(), headers=headers)


# --- response shapes -----------------------------------------------------------------------------------------


def test_chat_completion_shape_and_usage(client: httpx.Client) -> None:
    body = chat(model="llama")
    body["messages"] = [
        {"role": "system", "content": "s" * 20},
        {"role": "user", "content": [{"type": "text", "text": "What is the capital of France? " * 3}]},
    ]
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200
    assert r.headers["x-request-id"]
    data = r.json()
    assert data["id"].startswith("chatcmpl-")
    assert data["object"] == "chat.completion"
    assert isinstance(data["created"], int)
    assert data["model"] == "llama"
    choice = data["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == "Echo: " + ("What is the capital of France? " * 3)[:60]
    assert choice["finish_reason"] == "stop"
    assert data["usage"] == {"prompt_tokens": (20 + 93) // 4, "completion_tokens": 16, "total_tokens": 28 + 16}
    # Deterministic content, fresh ids.
    again = client.post("/v1/chat/completions", json=body).json()
    assert again["choices"][0]["message"]["content"] == choice["message"]["content"]
    assert again["id"] != data["id"]


def test_completion_tokens_capped_by_max_tokens(client: httpx.Client) -> None:
    r1 = client.post("/v1/chat/completions", json=chat("x", max_tokens=5)).json()
    r2 = client.post("/v1/chat/completions", json=chat("x", max_completion_tokens=3)).json()
    configure(client, completion_tokens=40)
    r3 = client.post("/v1/chat/completions", json=chat("x")).json()
    assert (r1["usage"]["completion_tokens"], r2["usage"]["completion_tokens"]) == (5, 3)
    assert r1["usage"]["prompt_tokens"] == 1  # at least 1
    assert r3["usage"]["completion_tokens"] == 40


def test_embeddings_are_deterministic_8_dim_vectors(client: httpx.Client) -> None:
    r = client.post("/v1/embeddings", json={"model": "emb", "input": ["alpha beta", "gamma", "alpha beta"]})
    assert r.status_code == 200
    data = r.json()
    assert data["object"] == "list" and data["model"] == "emb"
    vectors = [d["embedding"] for d in data["data"]]
    assert [d["index"] for d in data["data"]] == [0, 1, 2]
    assert all(d["object"] == "embedding" and len(d["embedding"]) == 8 for d in data["data"])
    assert vectors[0] == vectors[2] != vectors[1]
    assert data["usage"] == {"prompt_tokens": 25 // 4, "total_tokens": 25 // 4}
    single = client.post("/v1/embeddings", json={"model": "emb", "input": "gamma"}).json()
    assert single["data"][0]["embedding"] == vectors[1]


def test_text_completion_shape(client: httpx.Client) -> None:
    r = client.post("/v1/completions", json={"model": "m", "prompt": "Once upon a time", "max_tokens": 4})
    assert r.status_code == 200
    data = r.json()
    assert data["id"].startswith("cmpl-") and data["object"] == "text_completion"
    assert data["choices"][0]["text"] == "Echo: Once upon a time"
    assert data["choices"][0]["finish_reason"] == "stop"
    assert data["usage"] == {"prompt_tokens": 4, "completion_tokens": 4, "total_tokens": 8}


def test_models_and_health(client: httpx.Client) -> None:
    assert client.get("/healthz").status_code == 200
    models = client.get("/v1/models").json()
    assert models["object"] == "list" and models["data"][0]["object"] == "model"


# --- request errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "param", "code"),
    [
        (b"{not json", None, "invalid_json"),
        (b"[1, 2]", None, "invalid_json"),
        (b'{"messages": [{"role": "user", "content": "hi"}]}', "model", "missing_required_parameter"),
        (b'{"model": "m"}', "messages", "missing_required_parameter"),
        (b'{"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}', "stream", None),
    ],
)
def test_bad_requests_get_400_with_openai_envelope(
    client: httpx.Client, content: bytes, param: str | None, code: str | None
) -> None:
    r = client.post("/v1/chat/completions", content=content, headers={"content-type": "application/json"})
    assert r.status_code == 400
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["message"]
    assert error["param"] == param
    if code is not None:
        assert error["code"] == code
    assert stats(client)["by_status"] == {"400": 1}


def test_api_key_and_models(log_dir: Path) -> None:
    proc, root = start_sim(log_dir, "--api-key", "sekret", "--models", "a, b")
    try:
        with httpx.Client(base_url=root) as c:
            # Given a simulator that requires a key and serves models a and b
            assert c.post("/v1/chat/completions", json=chat(model="a")).status_code == 401
            wrong = c.post("/v1/chat/completions", json=chat(model="a"), headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
            auth = {"Authorization": "Bearer sekret"}
            assert c.post("/v1/chat/completions", json=chat(model="a"), headers=auth).status_code == 200
            # Then an unknown model is a 404 model_not_found
            unknown = c.post("/v1/chat/completions", json=chat(model="zzz"), headers=auth)
            assert unknown.status_code == 404
            assert unknown.json()["error"]["code"] == "model_not_found"
            assert [m["id"] for m in c.get("/v1/models").json()["data"]] == ["a", "b"]
            assert stats(c)["by_status"] == {"200": 1, "401": 2, "404": 1}
    finally:
        proc.stop()


# --- rate limits ---------------------------------------------------------------------------------------------


def test_rpm_31st_request_in_a_minute_gets_429(client: httpx.Client) -> None:
    configure(client, rpm=30)
    statuses = [client.post("/v1/chat/completions", json=chat()).status_code for _ in range(30)]
    assert statuses == [200] * 30
    r = client.post("/v1/chat/completions", json=chat())
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "rate_limit_exceeded"
    retry_after = int(r.headers["Retry-After"])
    assert 55 <= retry_after <= 60
    assert int(r.headers["retry-after-ms"]) >= 1000
    s = stats(client)
    assert s["by_status"] == {"200": 30, "429": 1}
    assert s["received"] == s["max_in_window"] == 31


def test_rpm_window_slides_and_counts_rejected_requests(client: httpx.Client) -> None:
    # Given rpm=3 over a 1 s window
    configure(client, rpm=3, window_s=1)
    first = [client.post("/v1/chat/completions", json=chat()).status_code for _ in range(5)]
    assert first == [200, 200, 200, 429, 429]
    retry_after = client.post("/v1/chat/completions", json=chat()).headers["Retry-After"]
    assert retry_after == "1"
    # When the window has passed, requests are accepted again
    time.sleep(1.1)
    assert client.post("/v1/chat/completions", json=chat()).status_code == 200
    # Rejected requests count too: keep hammering and nothing gets through
    configure(client, window_s=60)
    later = [client.post("/v1/chat/completions", json=chat()).status_code for _ in range(5)]
    assert later == [200, 200, 429, 429, 429]


def test_tpm_limits_tokens_of_accepted_requests(client: httpx.Client) -> None:
    # Each request: 40 chars -> 10 prompt tokens + 10 completion tokens = 20 tokens
    configure(client, tpm=50, completion_tokens=10)
    statuses = [client.post("/v1/chat/completions", json=chat("y" * 40)).status_code for _ in range(2)]
    r = client.post("/v1/chat/completions", json=chat("y" * 40))
    assert statuses == [200, 200] and r.status_code == 429
    assert r.json()["error"]["type"] == "tokens" and int(r.headers["Retry-After"]) >= 1
    # A smaller request still fits: 4 chars -> 1 + 2 capped completion tokens
    assert client.post("/v1/chat/completions", json=chat("zzzz", max_tokens=2)).status_code == 200
    s = stats(client)
    assert s["max_tokens_in_window"] == 43
    assert s["by_status"] == {"200": 3, "429": 1}


def test_max_in_window_is_exact(client: httpx.Client) -> None:
    configure(client, window_s=1)
    for _ in range(3):
        client.post("/v1/chat/completions", json=chat())
    time.sleep(1.1)
    for _ in range(2):
        client.post("/v1/chat/completions", json=chat())
    s = stats(client)
    assert s["received"] == 5
    assert s["max_in_window"] == 3
    client.post("/v1/chat/completions", json=chat())
    client.post("/v1/chat/completions", json=chat())
    assert stats(client)["max_in_window"] == 4


# --- faults --------------------------------------------------------------------------------------------------


def test_error_rate_one_gives_5xx(client: httpx.Client) -> None:
    configure(client, error_rate=1.0)
    responses = [client.post("/v1/chat/completions", json=chat()) for _ in range(12)]
    assert {r.status_code for r in responses} <= {500, 502, 503}
    assert responses[0].json()["error"]["type"] == "server_error"
    assert sum(stats(client)["by_status"].values()) == 12


def test_rate_429_one_gives_429_with_retry_after(client: httpx.Client) -> None:
    configure(client, rate_429=1.0)
    r = client.post("/v1/embeddings", json={"model": "m", "input": "x"})
    assert r.status_code == 429
    assert r.headers["Retry-After"] == "1" and r.headers["retry-after-ms"] == "1000"
    assert r.json()["error"]["code"] == "rate_limit_exceeded"


def test_timeout_rate_stalls_until_the_client_gives_up(client: httpx.Client) -> None:
    configure(client, timeout_rate=1.0, stall_s=30)
    with pytest.raises(httpx.ReadTimeout):
        client.post("/v1/chat/completions", json=chat(), timeout=0.3)
    assert stats(client)["stalled"] == 1
    # The client hung up, so the stalled request stops being in flight
    wait_for(lambda: stats(client)["in_flight"] == 0, 5, "stalled request cancelled")
    # A short stall is answered normally afterwards
    configure(client, stall_s=0.2)
    assert client.post("/v1/chat/completions", json=chat()).status_code == 200
    s = stats(client)
    assert (s["stalled"], s["by_status"]) == (2, {"200": 1})


def test_drop_rate_closes_the_connection(client: httpx.Client) -> None:
    configure(client, drop_rate=1.0)
    with pytest.raises(httpx.RemoteProtocolError):
        line(client, "d1")
    s = stats(client, detail=True)
    assert s["dropped"] == 1 and s["by_status"] == {}
    assert s["per_key_status"] == {"d1": [0]}
    configure(client, drop_rate=0.0)
    assert line(client, "d1").status_code == 200


def test_seed_makes_fault_decisions_reproducible(client: httpx.Client) -> None:
    def run() -> list[int]:
        configure(client, error_rate=0.5)
        return [client.post("/v1/chat/completions", json=chat()).status_code for _ in range(20)]

    first = run()
    client.post("/sim/reset").raise_for_status()
    assert run() == first
    assert 200 in first and any(s >= 500 for s in first)


def test_latency_delays_answers(client: httpx.Client) -> None:
    configure(client, latency_ms=200, latency_jitter_ms=20)
    started = time.monotonic()
    assert client.post("/v1/chat/completions", json=chat()).status_code == 200
    assert time.monotonic() - started >= 0.17


def test_in_flight_is_tracked(client: httpx.Client, sim_root: str) -> None:
    configure(client, latency_ms=400)
    results: list[int] = []

    def call() -> None:
        results.append(httpx.post(f"{sim_root}/v1/chat/completions", json=chat(), timeout=10).status_code)

    threads = [threading.Thread(target=call) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    s = stats(client)
    assert results == [200] * 5
    assert s["max_in_flight"] == 5 and s["in_flight"] == 0


# --- fail rules and per-key counts ---------------------------------------------------------------------------


def test_fail_rules_fail_chosen_lines_deterministically(client: httpx.Client) -> None:
    rules = [
        {"match": "^bad-", "status": 400, "times": -1, "body": {"error": {"message": "no", "code": "nope"}}},
        {"match": "^flaky-", "status": 500, "times": 2},
    ]
    configure(client, fail_rules=rules)
    bad = [line(client, "bad-1") for _ in range(3)]
    assert [r.status_code for r in bad] == [400, 400, 400]
    assert bad[0].json() == {"error": {"message": "no", "code": "nope"}}
    assert [line(client, "flaky-1").status_code for _ in range(3)] == [500, 500, 200]
    # The count is per key: another batch's line with the same custom id fails twice again
    assert [line(client, "flaky-1", "batch_b").status_code for _ in range(3)] == [500, 500, 200]
    assert line(client, "good-1").status_code == 200
    s = stats(client, detail=True)
    assert s["per_key_status"] == {
        "bad-1": [400, 400, 400],
        "flaky-1": [500, 500, 200],
        "batch_b/flaky-1": [500, 500, 200],
        "good-1": [200],
    }


def test_fail_rule_actions_drop_and_stall(client: httpx.Client) -> None:
    configure(client, stall_s=0.1, fail_rules=[
        {"match": "^drop", "action": "drop", "times": 1},
        {"match": "^slow", "action": "stall", "times": 1},
    ])  # fmt: skip
    with pytest.raises(httpx.RemoteProtocolError):
        line(client, "drop-1")
    assert line(client, "drop-1").status_code == 200
    assert line(client, "slow-1").status_code == 200
    s = stats(client)
    assert (s["dropped"], s["stalled"]) == (1, 1)


def test_per_key_counts_every_arrival(client: httpx.Client) -> None:
    for _ in range(3):
        line(client, "r1", "batch_x")
    line(client, "r2", "batch_x")
    line(client, "r1")
    client.post("/v1/chat/completions", json=chat())  # no custom id: counted in received only
    plain = stats(client)
    assert "per_key" not in plain and plain["received"] == 6
    detail = stats(client, detail=True)
    assert detail["per_key"] == {"batch_x/r1": 3, "batch_x/r2": 1, "r1": 1}


# --- control endpoints ---------------------------------------------------------------------------------------


def test_stats_keys_and_reset(client: httpx.Client) -> None:
    before = time.time()
    configure(client, rpm=1, latency_ms=5, fail_rules=[{"match": ".*", "status": 503, "times": -1}])
    line(client, "k")
    line(client, "k")
    s = stats(client)
    assert set(s) >= {
        "received", "by_status", "dropped", "stalled", "max_in_window", "max_tokens_in_window",
        "in_flight", "max_in_flight", "first_at", "last_at", "latency_ms",
    }  # fmt: skip
    assert s["by_status"] == {"429": 1, "503": 1}
    assert before <= s["first_at"] <= s["last_at"] <= time.time()
    assert s["latency_ms"] == 5
    client.post("/sim/reset").raise_for_status()
    s = stats(client, detail=True)
    assert (s["received"], s["by_status"], s["per_key"], s["first_at"], s["max_in_window"]) == (0, {}, {}, None, 0)
    assert s["latency_ms"] == 0 and s["config"]["rpm"] == 0 and s["config"]["fail_rules"] == 0
    assert line(client, "k").status_code == 200


@pytest.mark.parametrize(
    "body",
    [{"nope": 1}, {"error_rate": 2}, {"rpm": "ten"}, {"rpm": 1.5}, {"fail_rules": [{"match": "("}]}, [1]],
)
def test_config_rejects_bad_input(client: httpx.Client, body: object) -> None:
    r = client.post("/sim/config", json=body)
    assert r.status_code == 400
    assert r.json()["error"]["message"]
    assert stats(client)["config"]["rpm"] == 0


@pytest.mark.parametrize("argv", [["--error-rate", "1.5"], ["--rpm", "-1"], ["--drop-rate", "nan"]])
def test_cli_rejects_out_of_range_values(argv: list[str]) -> None:
    from batchq.sim import parse_args

    with pytest.raises(SystemExit) as exc_info:
        parse_args(argv)
    assert exc_info.value.code == 2
    assert parse_args(["--error-rate", "0.25", "--rpm", "60"]).tunables["error_rate"] == 0.25
