"""``Idempotency-Key`` on batch create, as Stripe defines it.

Same key and same body: the same batch. Same key and another body: 409 ``idempotency_key_reused``. A
concurrent retry waits for the first request's batch. The key is stored with a hash of the canonical body
(sorted keys, no whitespace), under a hash of the key itself, so long keys neither get cut nor collide.

A claim starts ``pending`` with a short TTL (a creator that dies frees the key) and lives a day once the
batch exists.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

import redis

from batchq import keys
from batchq.api.errors import BadRequestProblem, ConflictProblem
from batchq.schemas import Batch
from batchq.state import BatchState

#: Longest key accepted (Stripe's limit); longer keys are a 400, never truncated.
MAX_KEY_CHARS = 255
#: How long a key answers with the batch it created.
DONE_TTL_S = 24 * 3600
#: How long a claim whose batch does not exist yet blocks the key (its creator may have died).
PENDING_TTL_S = 30
#: How long a concurrent retry waits for the first request's batch, and how often it looks.
WAIT_S = 10.0
POLL_S = 0.05

#: Delete the claim only if it is still ours (a retry may have taken over an expired one).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def canonical_hash(data: Any) -> str:
    """SHA-256 of the body as canonical JSON: key order and whitespace do not make another body."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def check_key(raw: str | None) -> str | None:
    """The header's key, or None when absent.

    Raises:
        BadRequestProblem: empty, longer than ``MAX_KEY_CHARS`` or not printable ASCII.
    """
    if raw is None:
        return None
    if not 1 <= len(raw) <= MAX_KEY_CHARS or not (raw.isascii() and raw.isprintable()):
        raise BadRequestProblem(
            f"Invalid Idempotency-Key: it must be 1 to {MAX_KEY_CHARS} printable ASCII characters (got {len(raw)}).",
            code="invalid_idempotency_key",
        )
    return raw


@dataclass(frozen=True)
class Claim:
    slot: str
    value: str
    body_hash: str
    batch_id: str


class IdempotencyKeys:
    def __init__(self, client: redis.Redis[bytes], state: BatchState) -> None:
        self.redis = client
        self.state = state
        self._release = client.register_script(_RELEASE)

    def claim(self, account: str, key: str, body_hash: str, batch_id: str) -> Claim | Batch:
        """A claim to create ``batch_id`` under ``key``, or the batch an earlier request with it created.

        Raises:
            ConflictProblem: the key was used with another body, or its first request is still running
                after ``WAIT_S`` (retryable).
        """
        slot = keys.idempotency(account, hashlib.sha256(key.encode()).hexdigest())
        value = json.dumps({"h": body_hash, "b": batch_id, "s": "pending"})
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            if self.redis.set(slot, value, nx=True, ex=PENDING_TTL_S):
                return Claim(slot, value, body_hash, batch_id)
            raw = self.redis.get(slot)
            if raw is None:
                continue  # released or expired meanwhile: try to claim again
            stored = json.loads(raw)
            if stored.get("h") != body_hash:
                raise ConflictProblem(
                    "This Idempotency-Key was already used with a different request body; use a new key "
                    "for a different request.",
                    code="idempotency_key_reused",
                )
            if stored.get("s") == "done":  # only then is the batch sure to stay (a failed first try removes it)
                found = self.state.get(str(stored.get("b")), account)
                if found is None:
                    raise ConflictProblem(
                        "The batch created with this Idempotency-Key has been deleted; use a new key.",
                        code="idempotency_key_reused",
                    )
                return found
            time.sleep(POLL_S)
        raise ConflictProblem(
            "A request with this Idempotency-Key is still being processed; retry shortly.",
            code="idempotency_request_in_progress",
            retryable=True,
        )

    def complete(self, claim: Claim) -> None:
        """The batch exists: the key answers with it for ``DONE_TTL_S``."""
        done = json.dumps({"h": claim.body_hash, "b": claim.batch_id, "s": "done"})
        self.redis.set(claim.slot, done, ex=DONE_TTL_S)

    def release(self, claim: Claim) -> None:
        """No batch was created: free the key (if it is still ours)."""
        self._release(keys=[claim.slot], args=[claim.value])
