"""Secrets and token-looking strings never survive into error lines or log records."""

from __future__ import annotations

import logging

import pytest

from batchq.redact import REDACTED, install_log_redaction, redact, redact_json

KEY = "my-upstream-secret-1234"


@pytest.mark.parametrize(
    "text",
    [
        "Incorrect API key provided: sk-proj-abcdefghijklmnop1234.",
        "Incorrect API key provided: sk-proj-********************************abcd.",
        "Incorrect API key provided: abcd************wxyz.",
        "header was Authorization: Bearer eyJhbGciOi.J9.x-y_z",
        f"the key {KEY} is wrong",
    ],
)
def test_tokens_and_the_configured_key_are_redacted(text: str) -> None:
    out = redact(text, (KEY,))
    assert REDACTED in out
    for leaked in (KEY, "sk-proj-a", "abcdefghijklmnop", "****", "eyJhbGciOi"):
        assert leaked not in out


def test_ordinary_text_is_left_alone() -> None:
    text = "The model `m` does not exist or you do not have access to it. Rate 5 * 3 ** 2; risk-free."
    assert redact(text) == text


def test_json_bodies_are_redacted_everywhere() -> None:
    body = {"error": {"message": f"bad key {KEY}", "details": [f"Bearer {KEY}", 3]}, KEY: True}
    out = redact_json(body, (KEY,))
    assert KEY not in repr(out) and out["error"]["details"][1] == 3


def test_log_records_are_redacted_whatever_the_handler(caplog: pytest.LogCaptureFixture) -> None:
    # Given: the redaction installed with a registered secret. When: a record holds it in its args and traceback
    install_log_redaction("registered-secret-987")
    log = logging.getLogger("batchq.test.redact")
    with caplog.at_level(logging.INFO):
        log.info("upstream said %s", "no such key registered-secret-987")
        try:
            raise ValueError("Bearer abc.def.ghi rejected")
        except ValueError:
            log.exception("call failed")
    # Then: neither the message nor the formatted traceback carries it
    text = caplog.text + "".join(r.exc_text or "" for r in caplog.records)
    assert "registered-secret-987" not in text and "abc.def.ghi" not in text
    assert REDACTED in text
