"""Checks of what a request carries: the ``POST /v1/batches`` body and the list endpoints' query parameters.

Each mistake is answered with OpenAI's error and the parameter named (FastAPI's own 422 is not OpenAI's error).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from batchq.api.errors import BadRequestProblem
from batchq.api.idempotency import canonical_hash
from batchq.config import SUPPORTED_ENDPOINTS

#: OpenAI's metadata limits.
MAX_METADATA_KEYS = 16
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 512
#: The source document's ``timeout_minutes`` may not exceed the 24 h window.
MAX_TIMEOUT_MINUTES = 1440
COMPLETION_WINDOWS = ("24h",)


@dataclass(frozen=True)
class CreateParams:
    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, str] | None
    timeout_minutes: float | None
    window_s: float | None
    """The completion window in seconds when ``timeout_minutes`` sets it; None = the server default."""
    body_hash: str
    """SHA-256 of the body as canonical JSON (what an Idempotency-Key is bound to)."""


def parse_create_body(content_type: str | None, body: bytes) -> CreateParams:
    if not (content_type or "").lower().startswith("application/json"):
        raise BadRequestProblem(
            "The request body must be JSON (Content-Type: application/json).", code="invalid_content_type"
        )
    try:
        data: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadRequestProblem("The request body is not valid JSON.", code="invalid_json") from None
    except RecursionError:
        raise BadRequestProblem("The request body is nested too deeply.", code="invalid_json") from None
    if not isinstance(data, dict):
        raise BadRequestProblem("The request body must be a JSON object.", code="invalid_json")

    input_file_id = _required_str(data, "input_file_id")
    endpoint = _required_str(data, "endpoint")
    if endpoint not in SUPPORTED_ENDPOINTS:
        raise BadRequestProblem(
            f"Invalid value: {endpoint!r}. Supported values are: "
            + ", ".join(repr(e) for e in SUPPORTED_ENDPOINTS)
            + ".",
            code="invalid_value",
            param="endpoint",
        )
    window = data.get("completion_window", "24h")
    if window not in COMPLETION_WINDOWS:
        raise BadRequestProblem(
            f"Invalid value: {window!r}. Supported values are: '24h'.",
            code="invalid_value",
            param="completion_window",
        )
    timeout_minutes = data.get("timeout_minutes")
    window_s: float | None = None
    if timeout_minutes is not None:
        if (
            isinstance(timeout_minutes, bool)
            or not isinstance(timeout_minutes, int | float)
            or not 0 < timeout_minutes <= MAX_TIMEOUT_MINUTES
        ):
            raise BadRequestProblem(
                f"Invalid value for 'timeout_minutes': {timeout_minutes!r}. It must be a number greater than 0 and "
                f"at most {MAX_TIMEOUT_MINUTES}.",
                code="invalid_value",
                param="timeout_minutes",
            )
        window_s = float(timeout_minutes) * 60
    return CreateParams(
        input_file_id=input_file_id,
        endpoint=endpoint,
        completion_window=window,
        metadata=_metadata(data.get("metadata")),
        timeout_minutes=timeout_minutes,
        window_s=window_s,
        body_hash=_body_hash(data),
    )


def _body_hash(data: dict[str, Any]) -> str:
    try:
        return canonical_hash(data)
    except RecursionError:  # nesting just under the parser's limit
        raise BadRequestProblem("The request body is nested too deeply.", code="invalid_json") from None


def _required_str(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if value is None:
        raise BadRequestProblem(f"Missing required parameter: '{name}'.", code="missing_required_parameter", param=name)
    if not isinstance(value, str) or not value:
        raise BadRequestProblem(
            f"Invalid type for '{name}': expected a non-empty string.", code="invalid_type", param=name
        )
    return value


def _metadata(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadRequestProblem(
            "Invalid type for 'metadata': expected an object.", code="invalid_type", param="metadata"
        )
    if len(value) > MAX_METADATA_KEYS:
        raise BadRequestProblem(
            f"Invalid 'metadata': at most {MAX_METADATA_KEYS} keys are allowed.", code="invalid_value", param="metadata"
        )
    for key, item in value.items():
        if len(key) > MAX_METADATA_KEY_CHARS:
            raise BadRequestProblem(
                f"Invalid 'metadata': key {key[:20]!r}… is longer than {MAX_METADATA_KEY_CHARS} characters.",
                code="invalid_value",
                param=f"metadata.{key}",
            )
        if not isinstance(item, str):
            raise BadRequestProblem(
                f"Invalid type for 'metadata.{key}': expected a string.", code="invalid_type", param=f"metadata.{key}"
            )
        if len(item) > MAX_METADATA_VALUE_CHARS:
            raise BadRequestProblem(
                f"Invalid 'metadata.{key}': the value is longer than {MAX_METADATA_VALUE_CHARS} characters.",
                code="invalid_value",
                param=f"metadata.{key}",
            )
    return dict(value)


def list_limit(raw: str | None, *, default: int, maximum: int) -> int:
    """``limit`` as an int in 1..maximum, else a 400 naming the parameter."""
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= maximum:
        raise BadRequestProblem(
            f"Invalid value for 'limit': {raw!r}. It must be an integer between 1 and {maximum}.",
            code="invalid_value",
            param="limit",
        )
    return value
