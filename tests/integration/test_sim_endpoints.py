"""The simulator's /v1/responses and /v1/moderations over real HTTP, parsed with the openai SDK's own types."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openai.types import ModerationCreateResponse
from openai.types.responses import Response

from tests.integration.test_sim import start_sim


@pytest.fixture(scope="module")
def root(log_dir: Path) -> Iterator[str]:
    proc, url = start_sim(log_dir, "--latency-ms", "0")
    yield url
    proc.stop()


def test_responses_answer_is_a_response_object(root: str) -> None:
    r = httpx.post(f"{root}/v1/responses", json={"model": "m", "input": "Say blue.", "max_output_tokens": 5})
    assert r.status_code == 200, r.text
    resp = Response.model_validate(r.json())
    assert resp.object == "response" and resp.model == "m" and resp.output_text == "Echo: Say blue."
    assert resp.usage is not None and resp.usage.output_tokens == 5
    assert resp.usage.total_tokens == resp.usage.input_tokens + 5


def test_moderations_answer_with_default_model(root: str) -> None:
    r = httpx.post(f"{root}/v1/moderations", json={"input": ["fine text", "please flagme"]})
    assert r.status_code == 200, r.text
    mod = ModerationCreateResponse.model_validate(r.json())
    assert mod.model == "omni-moderation-latest"
    assert [res.flagged for res in mod.results] == [False, True]


def test_bad_bodies_get_openai_errors(root: str) -> None:
    r = httpx.post(f"{root}/v1/responses", json={"model": "m"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "input"
    r = httpx.post(f"{root}/v1/moderations", json={"model": "x"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "missing_required_parameter"
