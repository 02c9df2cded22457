"""One line on its own: decode, parse JSON, recognise the form, check the fields."""

from __future__ import annotations

import json
import math
import sys
from typing import Any

from batchq.validation.common import encodable, line_too_long, missing, quote
from batchq.validation.endpoints import check_body
from batchq.validation.types import LineError, RequestLine, ValidationLimits

_BOM = b"\xef\xbb\xbf"
_CR = 13


def parse_line(raw: bytes, line_no: int, endpoint: str, limits: ValidationLimits) -> RequestLine | list[LineError]:
    """Validate one line (a trailing ``\\n`` / ``\\r\\n`` is stripped; a UTF-8 BOM is tolerated on line 1).

    Returns the normalized request, or a non-empty list of errors. Never raises.
    """
    end = len(raw)
    if end and raw[end - 1] == 10:
        end -= 1
    if end and raw[end - 1] == _CR:
        end -= 1
    begin = len(_BOM) if line_no == 1 and raw.startswith(_BOM) else 0
    if end - begin > limits.max_line_bytes:
        return [line_too_long(line_no, end - begin, limits)]
    return parse_raw(raw, begin, end, line_no, endpoint, limits)


_ANY_LINE = ValidationLimits(max_requests=sys.maxsize, max_line_bytes=sys.maxsize, max_custom_id_chars=sys.maxsize)


def normalize_line(raw: bytes, line_no: int, endpoint: str) -> RequestLine:
    """Re-parse a line that already passed validation; raises ValueError if it does not parse."""
    result = parse_line(raw, line_no, endpoint, _ANY_LINE)
    if isinstance(result, list):
        raise ValueError(f"line {line_no}: " + " ".join(error.message for error in result))
    return result


def parse_raw(
    data: bytes | bytearray, begin: int, end: int, line_no: int, endpoint: str, limits: ValidationLimits
) -> RequestLine | list[LineError]:
    """Check ``data[begin:end]`` (no line ending, no BOM) without copying it first."""
    if data.find(b"\x00", begin, end) != -1:
        return [LineError("invalid_encoding", "This line contains a NUL byte.", line_no)]
    try:
        text = str(memoryview(data)[begin:end], "utf-8")
    except UnicodeDecodeError as exc:
        message = f"This line is not valid UTF-8 (invalid byte at offset {exc.start} of the line)."
        return [LineError("invalid_encoding", message, line_no)]
    try:
        obj = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except Exception:  # JSONDecodeError, too many digits, nesting too deep (RecursionError), ...
        return [LineError("invalid_json_line", "This line is not parseable as valid JSON.", line_no)]
    del text
    if not isinstance(obj, dict):
        return [LineError("invalid_json_line", "This line is valid JSON but not a JSON object.", line_no)]
    return _check_object(obj, line_no, endpoint, limits)


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError("number out of range")
    return value


def _check_object(
    obj: dict[str, Any], line_no: int, endpoint: str, limits: ValidationLimits
) -> RequestLine | list[LineError]:
    errors: list[LineError] = []
    body: dict[str, Any] | None = None
    url_ok = True
    if "body" in obj or "method" in obj or "url" in obj:  # OpenAI form
        custom_id = _custom_id(obj.get("custom_id"), None, line_no, limits, errors)
        method = obj.get("method")
        if method is None:
            errors.append(missing("method", line_no))
        elif not isinstance(method, str):
            errors.append(LineError("invalid_request", "The method parameter must be a string.", line_no, "method"))
        elif method.upper() != "POST":
            message = f"Only the POST method is supported, not {quote(method)}."
            errors.append(LineError("invalid_method", message, line_no, "method"))
        url = obj.get("url")
        url_ok = url == endpoint
        if url is None:
            errors.append(missing("url", line_no))
        elif not isinstance(url, str):
            errors.append(LineError("invalid_request", "The url parameter must be a string.", line_no, "url"))
        elif not url_ok:
            message = "The URL provided for this request does not match the batch endpoint."
            errors.append(LineError("invalid_url", message, line_no, "url"))
        raw_body = obj.get("body")
        if raw_body is None:
            errors.append(missing("body", line_no))
        elif not isinstance(raw_body, dict):
            errors.append(LineError("invalid_request", "The body parameter must be an object.", line_no, "body"))
        else:
            body = raw_body
    elif "params" in obj:  # source-document form
        custom_id = _custom_id(obj.get("custom_id"), f"request-{line_no}", line_no, limits, errors)
        params = obj["params"]
        if params is None:
            errors.append(missing("params", line_no))
        elif not isinstance(params, dict):
            errors.append(LineError("invalid_request", "The params parameter must be an object.", line_no, "params"))
        else:
            body = params
    else:  # bare form: the line is the body
        custom_id = _custom_id(obj.get("custom_id"), f"request-{line_no}", line_no, limits, errors)
        body = {k: v for k, v in obj.items() if k != "custom_id"} if "custom_id" in obj else obj
    model = None if body is None else check_body(body, line_no, endpoint, limits, url_ok, errors)
    if errors or custom_id is None or body is None:
        return errors
    return RequestLine(custom_id=custom_id, url=endpoint, body=body, model=model)


def _custom_id(
    value: object, default: str | None, line_no: int, limits: ValidationLimits, errors: list[LineError]
) -> str | None:
    if value is None:
        if default is None:
            errors.append(missing("custom_id", line_no))
        return default
    if not isinstance(value, str):
        errors.append(LineError("invalid_request", "The custom_id parameter must be a string.", line_no, "custom_id"))
        return None
    if not value or len(value) > limits.max_custom_id_chars:
        message = f"The custom_id must be a non-empty string of at most {limits.max_custom_id_chars} characters."
        errors.append(LineError("invalid_custom_id", message, line_no, "custom_id"))
        return None
    if not encodable(value):
        message = "The custom_id contains an unpaired surrogate and cannot be encoded as UTF-8."
        errors.append(LineError("invalid_custom_id", message, line_no, "custom_id"))
        return None
    return value
