"""Standard Webhooks signatures: what batchq signs with and what a receiver verifies with.

Pure standard library, no server imports: ``batchq.verify_webhook`` re-exports :func:`verify_webhook` for
receivers, and it accepts exactly what the openai SDK's ``client.webhooks.unwrap`` accepts.

Scheme (standard-webhooks spec 1.0): the signed content is ``{webhook-id}.{webhook-timestamp}.{body}``,
HMAC-SHA256 keyed with the base64-decoded part of the ``whsec_…`` secret, sent as ``v1,<base64 MAC>`` in
``webhook-signature`` (space-separated when several keys sign).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from typing import Any

#: Prefix of every secret (the openai SDK base64-decodes what follows it).
SECRET_PREFIX = "whsec_"
#: Random bytes in a secret (Standard Webhooks asks for 24 to 64).
SECRET_BYTES = 32
#: How far a timestamp may be from now, either way, as the openai SDK checks it.
DEFAULT_TOLERANCE_S = 300


class WebhookVerificationError(ValueError):
    """The payload, headers or secret do not verify (missing header, stale timestamp, wrong signature)."""


def generate_secret() -> str:
    """A new endpoint secret: ``whsec_`` + standard, padded base64 of 32 random bytes (URL-safe would break the SDK)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def _key(secret: str) -> bytes:
    if secret.startswith(SECRET_PREFIX):
        try:
            return base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise WebhookVerificationError("The webhook secret is not valid base64 after 'whsec_'.") from exc
    return secret.encode("utf-8")  # as the openai SDK does with a secret lacking the prefix


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value for one attempt: ``v1,<base64 HMAC-SHA256>``."""
    mac = hmac.new(_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode("ascii")


def signature_headers(secret: str, msg_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt (a fresh timestamp every attempt)."""
    ts = int(time.time()) if timestamp is None else timestamp
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": sign(secret, msg_id, ts, body)}


def verify_webhook(
    payload: str | bytes,
    headers: Mapping[str, str],
    secret: str,
    *,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> dict[str, Any]:
    """Verify a delivery and return its event (``{"id", "object", "type", "created_at", "data"}``).

    Args:
        payload: the request body exactly as received (bytes, or text decoded as UTF-8).
        headers: the request headers (any case).
        secret: the endpoint's ``whsec_…`` secret, as shown when the endpoint was created.
        tolerance_s: the largest accepted distance between the timestamp and now.
        now: the current Unix time (for tests).

    Raises:
        WebhookVerificationError: a header is missing, the timestamp is out of tolerance, or no signature matches.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        msg_id, raw_ts, signatures = (lowered[h] for h in ("webhook-id", "webhook-timestamp", "webhook-signature"))
    except KeyError as exc:
        raise WebhookVerificationError(f"Missing required header: {exc.args[0]}") from None
    try:
        ts = int(raw_ts)
    except ValueError:
        raise WebhookVerificationError("Invalid webhook-timestamp header.") from None
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance_s:
        raise WebhookVerificationError("The webhook timestamp is outside the tolerance.")
    body = payload.encode("utf-8") if isinstance(payload, str) else payload
    expected = sign(secret, msg_id, ts, body).removeprefix("v1,")
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected.encode()):
            break
    else:
        raise WebhookVerificationError("No webhook signature matches the payload.")
    event: dict[str, Any] = json.loads(body)
    return event
