"""Standard Webhooks signatures, checked against the official openai SDK's own verifier."""

from __future__ import annotations

import base64
import json
import time

import pytest
from openai import InvalidWebhookSignatureError, OpenAI
from openai.types.webhooks import BatchCompletedWebhookEvent

from batchq.webhooks.events import event_body
from batchq.webhooks.signing import WebhookVerificationError, generate_secret, signature_headers, verify_webhook

SDK = OpenAI(api_key="unused", base_url="http://127.0.0.1:9/v1")


def test_secret_is_whsec_and_standard_base64_of_32_bytes() -> None:
    secret = generate_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
    assert generate_secret() != secret


def test_openai_sdk_unwraps_a_signed_event_and_rejects_a_tampered_one() -> None:
    # Given an event signed the way deliveries are
    secret = generate_secret()
    body = event_body("batch_abc", "batch.completed", int(time.time()))
    headers = signature_headers(secret, "msg_1", body)
    # When the openai SDK unwraps it, Then it is a batch.completed event for the batch
    event = SDK.webhooks.unwrap(body, headers, secret=secret)
    assert isinstance(event, BatchCompletedWebhookEvent)
    assert event.data.id == "batch_abc" and event.id.startswith("evt_") and event.object == "event"
    # And our own verifier agrees
    assert verify_webhook(body, headers, secret)["type"] == "batch.completed"
    # But a tampered body, or another secret, is rejected by both
    tampered = body.replace(b"batch_abc", b"batch_xyz")
    with pytest.raises(InvalidWebhookSignatureError):
        SDK.webhooks.unwrap(tampered, headers, secret=secret)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(tampered, headers, secret)
    with pytest.raises(InvalidWebhookSignatureError):
        SDK.webhooks.unwrap(body, headers, secret=generate_secret())


def test_stale_timestamp_and_missing_header_are_rejected() -> None:
    secret = generate_secret()
    body = b'{"id":"evt_1"}'
    old = signature_headers(secret, "msg_1", body, timestamp=int(time.time()) - 301)
    with pytest.raises(WebhookVerificationError, match="tolerance"):
        verify_webhook(body, old, secret)
    with pytest.raises(InvalidWebhookSignatureError):
        SDK.webhooks.verify_signature(body, old, secret=secret)
    headers = signature_headers(secret, "msg_1", body)
    del headers["webhook-id"]
    with pytest.raises(WebhookVerificationError, match="webhook-id"):
        verify_webhook(body, headers, secret)


def test_any_of_several_signatures_may_match_and_headers_are_case_insensitive() -> None:
    secret = generate_secret()
    body = b'{"id":"evt_1"}'
    headers = signature_headers(secret, "msg_1", body)
    rotated = {
        "Webhook-Id": headers["webhook-id"],
        "Webhook-Timestamp": headers["webhook-timestamp"],
        "Webhook-Signature": "v1,bm90IGl0 " + headers["webhook-signature"],
    }
    assert verify_webhook(body, rotated, secret) == json.loads(body)
    SDK.webhooks.verify_signature(body, rotated, secret=secret)


def test_signing_module_imports_nothing_of_the_server() -> None:
    import ast
    import inspect

    import batchq.webhooks.signing as signing

    tree = ast.parse(inspect.getsource(signing))
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not any(m.startswith("batchq") for m in imported), imported
