"""Expiry requests: ``output_expires_after`` on batch create, ``expires_after`` on upload (OpenAI's shape).

Both are ``{"anchor": "created_at", "seconds": N}`` with N from ``BATCHQ_MIN_EXPIRES_AFTER_S`` (3600, as
OpenAI's) to 30 days. On an upload the openai SDK sends them as the form fields ``expires_after[anchor]`` and
``expires_after[seconds]``. The anchor is the file's own creation time: an output file expires ``seconds``
after finalize wrote it (see ``batchq.state.files``).
"""

from __future__ import annotations

import json
from typing import Any

from batchq.api.errors import BadRequestProblem
from batchq.state.files import MAX_EXPIRES_AFTER_S

ANCHORS = ("created_at",)


def parse_expires_after(value: Any, *, param: str, min_s: int) -> int | None:
    """The seconds of an ``{anchor, seconds}`` object, None when absent; a 400 naming ``param`` otherwise."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadRequestProblem(
            f"Invalid type for '{param}': expected an object with 'anchor' and 'seconds'.",
            code="invalid_type",
            param=param,
        )
    anchor = value.get("anchor")
    if anchor not in ANCHORS:
        raise BadRequestProblem(
            f"Invalid value for '{param}.anchor': {anchor!r}. Supported values are: 'created_at'.",
            code="invalid_value" if anchor is not None else "missing_required_parameter",
            param=f"{param}.anchor",
        )
    seconds = value.get("seconds")
    if isinstance(seconds, str) and seconds.strip().isdigit():
        seconds = int(seconds)  # form fields are text
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not min_s <= seconds <= MAX_EXPIRES_AFTER_S:
        raise BadRequestProblem(
            f"Invalid value for '{param}.seconds': {seconds!r}. It must be an integer between {min_s} and "
            f"{MAX_EXPIRES_AFTER_S} (BATCHQ_MIN_EXPIRES_AFTER_S sets the minimum).",
            code="invalid_value" if seconds is not None else "missing_required_parameter",
            param=f"{param}.seconds",
        )
    return seconds


def parse_batch_output_expiry(body: bytes, *, min_s: int) -> int | None:
    """``output_expires_after`` of a batch-create body already checked to be a JSON object."""
    data = json.loads(body)
    return parse_expires_after(data.get("output_expires_after"), param="output_expires_after", min_s=min_s)


def parse_upload_expiry(fields: dict[str, str], *, min_s: int) -> int | None:
    """``expires_after`` of an upload, from its bracketed form fields (or one JSON-valued field)."""
    if "expires_after" in fields:
        try:
            value: Any = json.loads(fields["expires_after"])
        except ValueError:
            value = fields["expires_after"]
        return parse_expires_after(value, param="expires_after", min_s=min_s)
    prefix = "expires_after["
    nested = {k[len(prefix) : -1]: v for k, v in fields.items() if k.startswith(prefix) and k.endswith("]")}
    if not nested:
        return None
    return parse_expires_after(nested, param="expires_after", min_s=min_s)
