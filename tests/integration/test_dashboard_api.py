"""The dashboard's HTTP side in-process against a real Redis: the page and assets, the security headers, the
helpers' auth and isolation, the error summary. The browser tests are in tests/e2e/test_dashboard.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib
from fastapi.testclient import TestClient

from batchq.api.app import create_app
from batchq.api.dashboard.errors import line_numbers, summarize_errors
from batchq.config import Settings
from batchq.keys import request_id

A = {"Authorization": "Bearer key-a"}
B = {"Authorization": "Bearer key-b"}


@pytest.fixture
def client(redis: redis_lib.Redis, redis_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(redis_url=redis_url, storage_url=f"file://{tmp_path}", api_keys="key-a:acct-a,key-b:acct-b")
    with TestClient(create_app(settings)) as c:
        yield c


def test_the_page_and_its_assets_carry_a_strict_policy(client: TestClient) -> None:
    page = client.get("/dashboard")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    for directive in ("default-src 'self'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"):
        assert directive in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    # No inline script or style in the page itself, and every asset it names is served from the package
    assert "<style" not in page.text and "style=" not in page.text
    assert all('src="/dashboard/static/' in tag for tag in page.text.split("<script")[1:])
    for asset in ("/dashboard/static/app.css", "/dashboard/static/js/main.js", "/dashboard/static/favicon.svg"):
        r = client.get(asset)
        assert r.status_code == 200 and r.headers["content-security-policy"] == csp, asset
    assert client.get("/dashboard/static/nope.js").status_code == 404


def test_the_scripts_never_write_html() -> None:
    # Every user-supplied string reaches the page as text: no innerHTML, outerHTML, insertAdjacentHTML or eval
    static = Path(__file__).resolve().parents[2] / "batchq" / "api" / "dashboard" / "static"
    scripts = list(static.rglob("*.js"))
    assert len(scripts) >= 8
    for path in scripts:
        text = path.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
            assert sink not in text, f"{path.name} uses {sink}"


def test_the_api_answers_never_render_as_a_page(client: TestClient) -> None:
    r = client.get("/livez")
    assert r.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert r.headers["x-content-type-options"] == "nosniff"


def test_session_needs_a_key_and_names_the_account(client: TestClient) -> None:
    assert client.get("/dashboard/api/session").status_code == 401
    assert client.get("/dashboard/api/session", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/dashboard/api/session", headers=A).json() == {
        "object": "dashboard.session",
        "account": "acct-a",
        "local_mode": False,
    }


def test_local_mode_needs_no_key(redis: redis_lib.Redis, redis_url: str, tmp_path: Path) -> None:
    settings = Settings(redis_url=redis_url, storage_url=f"file://{tmp_path}", local_mode=True)
    with TestClient(create_app(settings)) as c:
        assert c.get("/dashboard/api/session").json()["local_mode"] is True


def test_error_summary_is_the_owners_only(client: TestClient) -> None:
    line = b'{"custom_id": "a", "params": {"model": "m", "messages": [{"role": "user", "content": "x"}]}}\n'
    file_id = client.post("/v1/files", files={"file": ("a.jsonl", line)}, data={"purpose": "batch"}, headers=A).json()
    body = {"input_file_id": file_id["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    batch = client.post("/v1/batches", json=body, headers=A).json()
    r = client.get(f"/dashboard/api/batches/{batch['id']}/errors", headers=A)
    assert r.status_code == 200 and r.json()["total"] == 0 and r.json()["final"] is False
    assert client.get(f"/dashboard/api/batches/{batch['id']}/errors", headers=B).status_code == 404
    assert client.get(f"/dashboard/api/batches/{batch['id']}/errors").status_code == 401
    assert client.get(f"/dashboard/api/batches/{batch['id']}/errors?examples=99", headers=A).status_code == 400


def test_summary_groups_by_code_with_line_numbers() -> None:
    batch_id = "batch_x"

    def line(n: int, code: str | None) -> bytes:
        error = {"code": code, "message": f"<b>bad {n}</b>"} if code else None
        response = {"status_code": 400 if code else 200, "body": {}}
        return json.dumps(
            {"id": request_id(batch_id, n), "custom_id": f"c{n}", "response": response, "error": error}
        ).encode()

    lines = [line(0, None), line(1, "rate"), line(2, "bad"), line(3, "rate"), line(4, "rate"), b"not json"]
    summary = summarize_errors(lines, per_code=2)
    out = summary.public(batch_id, line_numbers(batch_id, 5, summary.example_ids()), final=True)
    assert out["total"] == 4
    assert [(c["code"], c["count"]) for c in out["codes"]] == [("rate", 3), ("bad", 1)]
    first = out["codes"][0]["examples"]
    assert [(e["custom_id"], e["line"], e["status_code"]) for e in first] == [("c1", 2, 400), ("c3", 4, 400)]
    assert first[0]["message"] == "<b>bad 1</b>"  # as data: the page shows it as text
