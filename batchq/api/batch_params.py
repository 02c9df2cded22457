"""Checks of the ``POST /v1/batches`` body, each mistake answered with OpenAI's error and the parameter named."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from batchq.config import SUPPORTED_ENDPOINTS
from batchq.errors import InvalidRequestError

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


def parse_create_body(content_type: str | None, body: bytes) -> CreateParams:
    if not (content_type or "").lower().startswith("application/json"):
        raise InvalidRequestError(
            "The request body must be JSON (Content-Type: application/json).", code="invalid_content_type"
        )
    try:
        data: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequestError("The request body is not valid JSON.", code="invalid_json") from None
    if not isinstance(data, dict):
        raise InvalidRequestError("The request body must be a JSON object.", code="invalid_json")

    input_file_id = _required_str(data, "input_file_id")
    endpoint = _required_str(data, "endpoint")
    if endpoint not in SUPPORTED_ENDPOINTS:
        raise InvalidRequestError(
            f"Invalid value: {endpoint!r}. Supported values are: "
            + ", ".join(repr(e) for e in SUPPORTED_ENDPOINTS)
            + ".",
            code="invalid_value",
            param="endpoint",
        )
    window = data.get("completion_window", "24h")
    if window not in COMPLETION_WINDOWS:
        raise InvalidRequestError(
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
            raise InvalidRequestError(
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
    )


def _required_str(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if value is None:
        raise InvalidRequestError(
            f"Missing required parameter: '{name}'.", code="missing_required_parameter", param=name
        )
    if not isinstance(value, str) or not value:
        raise InvalidRequestError(
            f"Invalid type for '{name}': expected a non-empty string.", code="invalid_type", param=name
        )
    return value


def _metadata(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidRequestError(
            "Invalid type for 'metadata': expected an object.", code="invalid_type", param="metadata"
        )
    if len(value) > MAX_METADATA_KEYS:
        raise InvalidRequestError(
            f"Invalid 'metadata': at most {MAX_METADATA_KEYS} keys are allowed.", code="invalid_value", param="metadata"
        )
    for key, item in value.items():
        if len(key) > MAX_METADATA_KEY_CHARS:
            raise InvalidRequestError(
                f"Invalid 'metadata': key {key[:20]!r}… is longer than {MAX_METADATA_KEY_CHARS} characters.",
                code="invalid_value",
                param=f"metadata.{key}",
            )
        if not isinstance(item, str):
            raise InvalidRequestError(
                f"Invalid type for 'metadata.{key}': expected a string.", code="invalid_type", param=f"metadata.{key}"
            )
        if len(item) > MAX_METADATA_VALUE_CHARS:
            raise InvalidRequestError(
                f"Invalid 'metadata.{key}': the value is longer than {MAX_METADATA_VALUE_CHARS} characters.",
                code="invalid_value",
                param=f"metadata.{key}",
            )
    return dict(value)
