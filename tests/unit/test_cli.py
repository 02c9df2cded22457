"""Tests for the batchq command line (batchq.cli) and its progress display (batchq.client.display)."""

from __future__ import annotations

import io
import json
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from batchq import cli
from batchq.client import Client
from batchq.client.display import ProgressDisplay, format_duration, progress_summary
from batchq.schemas import Batch
from tests.unit.test_client import MODEL, FakeServer, error_response


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
def client(server: FakeServer) -> Iterator[Client]:
    with Client("http://batchq.test", transport=httpx.MockTransport(server), sleep=lambda _s: None) as c:
        yield c


@pytest.fixture
def run(client: Client, capsys: pytest.CaptureFixture[str]) -> Any:
    """Run the CLI with the test client; returns (exit code, stdout, stderr)."""

    def run(*argv: str) -> tuple[int, str, str]:
        code = cli.main(list(argv), client=client)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture
def requests_file(tmp_path: Path) -> Path:
    path = tmp_path / "requests.jsonl"
    lines = [{"messages": [{"role": "user", "content": "What is AI?"}]}, {"custom_id": "p", "params": {"messages": []}}]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def _finish(server: FakeServer, status: str, total: int = 2, failed: int = 0) -> None:
    """Make the next batch the server creates go in_progress, then end with ``status``."""
    original = server.add_batch

    def add_batch(input_file_id: str = "file-x", **fields: Any) -> dict[str, Any]:
        batch = original(input_file_id, **fields)
        counts = {"total": total, "completed": total - failed, "failed": failed}
        server.progress(
            batch["id"],
            [
                {"status": "in_progress", "request_counts": {"total": total, "completed": 0, "failed": 0}},
                {"status": status, "request_counts": counts},
            ],
        )
        return batch

    server.add_batch = add_batch  # type: ignore[method-assign]


# --- submit ----------------------------------------------------------------------------------------------------


def test_submit_prints_the_batch_id(run: Any, server: FakeServer, requests_file: Path) -> None:
    code, out, _ = run("submit", str(requests_file), "--model", MODEL)
    assert code == cli.EXIT_OK
    assert out.strip() in server.batches
    uploaded = [json.loads(line) for line in server.uploaded().decode().splitlines()]
    assert uploaded[0]["model"] == MODEL and uploaded[1]["params"]["model"] == MODEL


def test_submit_json_with_metadata(run: Any, server: FakeServer, requests_file: Path) -> None:
    code, out, _ = run(
        "submit", str(requests_file), "--json", "--metadata", "team=ml", "run=7", "--endpoint", "/v1/embeddings"
    )
    assert code == cli.EXIT_OK
    batch = json.loads(out)
    assert batch["object"] == "batch" and batch["status"] == "validating"
    create = json.loads(server.calls("POST", "/v1/batches")[0].content)
    assert create["metadata"] == {"team": "ml", "run": "7"} and create["endpoint"] == "/v1/embeddings"


def test_submit_reads_stdin(run: Any, server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = b'{"messages": [], "model": "m"}\n'
    monkeypatch.setattr(sys, "stdin", types.SimpleNamespace(buffer=io.BytesIO(raw)))
    code, out, _ = run("submit", "-")
    assert code == cli.EXIT_OK and server.uploaded() == raw


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("completed", cli.EXIT_OK),
        ("failed", cli.EXIT_BATCH_FAILED),
        ("expired", cli.EXIT_BATCH_EXPIRED_OR_CANCELLED),
        ("cancelled", cli.EXIT_BATCH_EXPIRED_OR_CANCELLED),
    ],
)
def test_submit_wait_exit_code_follows_final_status(
    status: str, expected: int, run: Any, server: FakeServer, requests_file: Path
) -> None:
    _finish(server, status, total=2, failed=1)
    code, out, err = run("submit", str(requests_file), "--wait", "--json")
    assert code == expected
    assert json.loads(out)["status"] == status
    assert "1/2 done (1 failed)" in err or "2/2 done (1 failed)" in err  # progress went to stderr


def test_submit_usage_errors(run: Any, requests_file: Path, server: FakeServer) -> None:
    assert run("submit", "does/not/exist.jsonl")[0] == cli.EXIT_USAGE
    code, _, err = run("submit", str(requests_file), "--metadata", "novalue")
    assert code == cli.EXIT_USAGE and "key=value" in err
    assert run("submit")[0] == cli.EXIT_USAGE
    assert run("frobnicate")[0] == cli.EXIT_USAGE
    assert run()[0] == cli.EXIT_USAGE
    assert server.requests == []


def test_help_exits_zero_and_lists_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "exit codes" in out and "7 cannot connect" in out
    assert cli.__doc__ is not None and "5  not found" in cli.__doc__


# --- status, list, wait ----------------------------------------------------------------------------------------


def test_status_json_and_table(run: Any, server: FakeServer) -> None:
    cost = {"currency": "USD", "amount": 0.0042, "discount": 0.1}
    batch = server.add_batch(
        status="in_progress",
        request_counts={"total": 10, "completed": 4, "failed": 1},
        usage={"input_tokens": 100, "output_tokens": 50, "total_tokens": 150},
        estimated_cost=cost,
        metadata={"team": "ml"},
    )
    code, out, _ = run("status", batch["id"], "--json")
    assert code == cli.EXIT_OK
    shown = json.loads(out)
    assert shown["id"] == batch["id"] and shown["estimated_cost"] == cost and shown["usage"]["total_tokens"] == 150
    code, out, _ = run("status", batch["id"])
    assert code == cli.EXIT_OK
    assert batch["id"] in out and "in_progress" in out and "4 completed, 1 failed, 10 total" in out
    assert "0.004200 USD" in out and "team=ml" in out


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (error_response(404, "No such batch"), cli.EXIT_NOT_FOUND),
        (error_response(401, "Invalid API key"), cli.EXIT_AUTH),
        (error_response(400, "bad"), cli.EXIT_ERROR),
        (error_response(500, "boom", **{"x-should-retry": "false"}), cli.EXIT_ERROR),
    ],
)
def test_error_exit_codes(response: httpx.Response, expected: int, run: Any, server: FakeServer) -> None:
    server.queue(response)
    code, out, err = run("status", "batch_1")
    assert code == expected and out == "" and err


def test_cannot_connect_exit_code(run: Any, server: FakeServer) -> None:
    server.queue(*[httpx.ConnectError("refused")] * 3)
    code, _, err = run("status", "batch_1")
    assert code == cli.EXIT_CONNECT and "cannot connect" in err


def test_list_table_and_json(run: Any, server: FakeServer) -> None:
    ids = [server.add_batch(status="completed", model=MODEL)["id"] for _ in range(3)]
    code, out, err = run("list", "--limit", "2")
    assert code == cli.EXIT_OK
    assert ids[2] in out and ids[1] in out and ids[0] not in out
    assert f"--after {ids[1]}" in err
    assert server.requests[-1].url.params["limit"] == "2"
    code, out, _ = run("list", "--after", ids[1], "--json")
    listed = json.loads(out)
    assert [b["id"] for b in listed["data"]] == [ids[0]] and listed["has_more"] is False
    assert server.requests[-1].url.params["after"] == ids[1]


def test_wait_command(run: Any, server: FakeServer) -> None:
    batch = server.add_batch()
    errors = {"object": "list", "data": [{"code": "invalid_json_line", "message": "bad line", "line": 3}]}
    server.progress(batch["id"], [{"status": "in_progress"}, {"status": "failed", "errors": errors}])
    code, out, err = run("wait", batch["id"], "--poll-interval", "0")
    assert code == cli.EXIT_BATCH_FAILED
    assert f"{batch['id']} failed" in out and "line 3: invalid_json_line" in err


def test_wait_timeout_is_a_generic_error(run: Any, server: FakeServer) -> None:
    batch = server.add_batch()
    code, _, err = run("wait", batch["id"], "--timeout", "0")
    assert code == cli.EXIT_ERROR and "still validating" in err


# --- results, cancel, retry-failed, delete ---------------------------------------------------------------------


def test_results_to_stdout_and_file(run: Any, server: FakeServer, tmp_path: Path) -> None:
    batch = server.add_batch(status="completed")
    results = [{"custom_id": f"r{i}", "response": None, "error": None} for i in range(5)]
    server.results[batch["id"]] = results
    code, out, _ = run("results", batch["id"])
    assert code == cli.EXIT_OK
    assert [json.loads(line) for line in out.splitlines()] == results
    target = tmp_path / "out.jsonl"
    code, out, err = run("results", batch["id"], "--output", str(target), "--partial")
    assert code == cli.EXIT_OK and out == "" and "wrote 5 results" in err
    assert [json.loads(line) for line in target.read_text().splitlines()] == results
    assert server.requests[-1].url.params["partial"] == "true"


def test_results_of_a_running_batch(run: Any, server: FakeServer) -> None:
    server.queue(error_response(409, "Batch is still in_progress.", **{"x-should-retry": "false"}))
    code, _, err = run("results", "batch_1")
    assert code == cli.EXIT_ERROR and "in_progress" in err


def test_cancel_and_delete(run: Any, server: FakeServer) -> None:
    batch = server.add_batch(status="in_progress")
    code, out, _ = run("cancel", batch["id"])
    assert code == cli.EXIT_OK and out.strip() == f"{batch['id']} cancelling"
    code, out, _ = run("delete", batch["id"], "--json")
    assert code == cli.EXIT_OK and json.loads(out)["deleted"] is True
    assert server.requests[-1].method == "DELETE"
    assert run("delete", batch["id"])[0] == cli.EXIT_NOT_FOUND


def test_retry_failed_command(run: Any, server: FakeServer) -> None:
    line = json.dumps({"custom_id": "a", "params": {"model": MODEL, "messages": []}})
    input_id = server.add_file((line + "\n").encode())
    error_id = server.add_file(json.dumps({"custom_id": "a", "error": {"code": "x"}}).encode() + b"\n")
    old = server.add_batch(input_id, status="completed", error_file_id=error_id)
    _finish(server, "completed", total=1)
    code, out, err = run("retry-failed", old["id"], "--wait")
    assert code == cli.EXIT_OK and f"retry of {old['id']}" in err
    new_id = out.split()[0]
    assert server.batches[new_id]["metadata"] == {"retry_of": old["id"]}
    nothing = server.add_batch(status="completed")["id"]
    code, _, err = run("retry-failed", nothing)
    assert code == cli.EXIT_ERROR and "nothing to retry" in err


# --- global options and delegated commands --------------------------------------------------------------------


def test_url_and_key_before_or_after_the_command() -> None:
    parser = cli.build_parser()
    before = parser.parse_args(["--url", "http://a", "--api-key", "k", "status", "b1"])
    after = parser.parse_args(["status", "b1", "--url", "http://a", "--api-key", "k"])
    assert (before.url, before.api_key) == (after.url, after.api_key) == ("http://a", "k")
    neither = parser.parse_args(["status", "b1"])
    assert (neither.url, neither.api_key) == (None, None)


def test_url_and_key_reach_the_client(monkeypatch: pytest.MonkeyPatch, server: FakeServer) -> None:
    built: list[Client] = []

    class Recorder(Client):
        def __init__(self, base_url: str | None = None, api_key: str | None = None) -> None:
            super().__init__(base_url, api_key, transport=httpx.MockTransport(server))
            built.append(self)

    monkeypatch.setattr(cli, "Client", Recorder)
    batch = server.add_batch()
    assert cli.main(["--url", "http://h:9/v1", "status", batch["id"], "--api-key", "sk-9", "--json"]) == 0
    assert (built[0].base_url, built[0].api_key) == ("http://h:9", "sk-9")
    assert server.requests[-1].headers["authorization"] == "Bearer sk-9"


def test_sim_gets_its_argv_untouched(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []
    fake = types.ModuleType("batchq.sim")

    def sim_main(argv: list[str]) -> int:
        seen.append(argv)
        return 0

    fake.main = sim_main  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "batchq.sim", fake)
    assert cli.main(["sim", "--port", "9000", "--rpm", "60", "--help"]) == 0
    assert cli.main(["--url", "http://x", "sim", "--latency-ms", "5"]) == 0
    assert seen == [["--port", "9000", "--rpm", "60", "--help"], ["--latency-ms", "5"]]


def test_api_delegates_to_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, int]] = []
    fake = types.ModuleType("batchq.api.app")
    fake.serve = lambda host, port: calls.append((host, port))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "batchq.api.app", fake)
    assert cli.main(["api"]) == 0
    assert cli.main(["api", "--host", "0.0.0.0", "--port", "9001"]) == 0
    assert calls == [("127.0.0.1", 8000), ("0.0.0.0", 9001)]


# --- progress display ------------------------------------------------------------------------------------------


def _batch(status: str, completed: int, failed: int, total: int, **fields: Any) -> Batch:
    return Batch.model_validate(
        {
            "id": "batch_1",
            "endpoint": "/v1/chat/completions",
            "input_file_id": "file-1",
            "completion_window": "24h",
            "status": status,
            "created_at": 0,
            "request_counts": {"total": total, "completed": completed, "failed": failed},
            **fields,
        }
    )


def test_plain_progress_lines_with_rate_and_eta() -> None:
    # Given a non-terminal stream and a clock we move by hand
    now = [100.0]
    stream = io.StringIO()
    with ProgressDisplay(stream, every_s=10, clock=lambda: now[0]) as display:
        display.update(_batch("in_progress", 0, 0, 100))
        now[0] += 5
        display.update(_batch("in_progress", 40, 10, 100))  # within 10 s and same status: no line
        now[0] += 5
        display.update(_batch("in_progress", 80, 20, 100))
        display.update(_batch("completed", 90, 10, 100))  # status change: a line at once
    lines = stream.getvalue().splitlines()
    assert lines == [
        "batch_1 in_progress: 0/100 done (0 failed)",
        "batch_1 in_progress: 100/100 done (20 failed) · 10.0 req/s · ETA 0s",
        "batch_1 completed: 100/100 done (10 failed) · 10.0 req/s",
    ]


def test_live_progress_renders_a_bar() -> None:
    stream = io.StringIO()
    with ProgressDisplay(stream, live=True) as display:
        display.update(_batch("in_progress", 3, 1, 10))
        display.update(_batch("completed", 9, 1, 10))
    assert "10/10 done (1 failed)" in stream.getvalue()


def test_summary_and_durations() -> None:
    batch = _batch("in_progress", 10, 2, 100)
    assert progress_summary(batch, 2.5, 3725) == "12/100 done (2 failed) · 2.5 req/s · ETA 1h02m"
    assert [format_duration(s) for s in (0, 59, 61, 3600)] == ["0s", "59s", "1m01s", "1h00m"]
