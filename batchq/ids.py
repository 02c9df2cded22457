"""Random, unguessable ids in OpenAI's shapes, and ids derived from them where a retry must land on the same one."""

from __future__ import annotations

import hashlib
import secrets


def new_file_id() -> str:
    return f"file-{secrets.token_hex(12)}"


def new_batch_id() -> str:
    return f"batch_{secrets.token_hex(12)}"


def derived_file_id(batch_id: str, kind: str) -> str:
    """The id of a batch's output or error file: fixed per batch, so finalize can run twice harmlessly.

    The batch id is itself unguessable, so the derived id is too.
    """
    return "file-" + hashlib.sha256(f"{batch_id}:{kind}".encode()).hexdigest()[:24]


def request_id(batch_id: str, line: int) -> str:
    """``batch_req_…`` id of one line's outcome: stable across retries and redeliveries."""
    return "batch_req_" + hashlib.sha256(f"{batch_id}:{line}".encode()).hexdigest()[:24]
