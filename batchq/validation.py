"""Validation of batch input files, one JSONL line at a time, streamed, never raising.

Three line forms are accepted (DESIGN.md "Input lines"), one model per file::

    {"custom_id": "r1", "method": "POST", "url": "/v1/chat/completions", "body": {...}}   OpenAI form
    {"custom_id": "r1", "params": {...}}                                                source-document form
    {"model": "m", "messages": [...]}                                                     bare form

The form is decided by the keys present: ``body``, ``method`` or ``url`` -> OpenAI form; else ``params``
-> source-document form; else bare form. The source-document and bare forms may leave out ``custom_id``;
it then becomes ``"request-<line>"``.

``parse_line()`` checks one line on its own. ``FileValidator`` adds the checks that span lines (duplicate
custom_id, one model per file, too many requests, empty file) and records where each request line sits
in the file, so that a request task can read its line back with a ranged GET and ``normalize_line()`` it.

Error codes (``LineError.code``), with their ``param``:

    invalid_encoding              not UTF-8, or a NUL byte
    invalid_json_line             not JSON, not a JSON object, NaN/Infinity, a truncated last line
    missing_required_parameter    custom_id / method / url / body (OpenAI form), params (params null)
    invalid_request               wrong type: custom_id / method / url / body / params / body.stream;
                                  model missing or not a string (body.model); messages / input / prompt
                                  missing or of the wrong shape (body.messages / body.input / body.prompt)
    invalid_method                method other than POST (any case)            (method)
    invalid_url                   url other than the batch endpoint            (url)
    invalid_custom_id             empty, too long, or not encodable as UTF-8   (custom_id)
    streaming_unsupported         body.stream is true                          (body.stream)
    model_not_found               model not in ValidationLimits.served_models  (body.model)
    model_mismatch                model differs from the file's first model    (body.model)
    duplicate_custom_id           custom_id already used on an earlier line    (custom_id)
    line_too_long                 line longer than max_line_bytes; skipped unread
    too_many_requests             more request lines than max_requests (reported once, at the first excess line)
    empty_file                    no request line at all (line None)
    too_many_errors               summary after the first max_reported_errors errors (line None)

Body-level params are named ``body.<field>`` in every form (for the other forms the body is the params
object / the line itself).
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FileValidator",
    "LineError",
    "RequestLine",
    "ValidationLimits",
    "ValidationResult",
    "normalize_line",
    "parse_line",
]

_BOM = b"\xef\xbb\xbf"
_CR = 13
_NL = b"\n"
#: Bytes that ``bytes.isspace()`` counts as whitespace; a line made of them only is blank.
_WHITESPACE = b" \t\r\n\x0b\x0c"
#: Longest user value quoted in an error message.
_QUOTE_CHARS = 80

#: The body field each endpoint needs besides ``model``: (field, how messages name it).
_REQUIRED_FIELD: dict[str, tuple[str, str]] = {
    "/v1/chat/completions": ("messages", "Messages"),
    "/v1/embeddings": ("input", "Input"),
    "/v1/completions": ("prompt", "Prompt"),
}
_ENDPOINT_TITLES: dict[str, str] = {
    "/v1/chat/completions": "Chat Completions",
    "/v1/embeddings": "Embeddings",
    "/v1/completions": "Completions",
    "/v1/responses": "Responses",
}
_OPENAI_FIELDS = ("custom_id", "method", "url", "body")


@dataclass(frozen=True)
class ValidationLimits:
    max_requests: int = 10_000
    max_line_bytes: int = 10 * 1024 * 1024
    max_custom_id_chars: int = 512
    max_reported_errors: int = 100
    served_models: frozenset[str] | None = None
    """None means any model is served."""


@dataclass(frozen=True)
class LineError:
    """One validation error; ``line`` is the 1-based physical line, None for file-level errors."""

    code: str
    message: str
    line: int | None
    param: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, "param": self.param, "line": self.line}


@dataclass(frozen=True)
class RequestLine:
    """A valid line, normalized: ``url`` is the batch endpoint and ``body`` is what to POST upstream."""

    custom_id: str
    url: str
    body: dict[str, Any]
    model: str | None


@dataclass
class ValidationResult:
    errors: list[LineError]
    """At most ``max_reported_errors`` errors in line order, then one ``too_many_errors`` entry if cut."""
    error_count: int
    """Every error found, shown or not (the summary entry not included)."""
    total: int
    """Request lines, i.e. non-blank lines, valid or not."""
    model: str | None
    """The model of the first valid line (None if no valid line names one)."""
    index: list[tuple[int, int, int]]
    """Per request line up to ``max_requests``: (line number, byte offset, length without the line ending).

    ``file[offset:offset + length]`` is the line; for line 1 the offset skips a UTF-8 BOM.
    """

    @property
    def ok(self) -> bool:
        return self.error_count == 0


# --- one line ---------------------------------------------------------------------------------------


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
        return [_line_too_long(line_no, end - begin, limits)]
    return _parse(raw, begin, end, line_no, endpoint, limits)


_ANY_LINE = ValidationLimits(max_requests=sys.maxsize, max_line_bytes=sys.maxsize, max_custom_id_chars=sys.maxsize)


def normalize_line(raw: bytes, line_no: int, endpoint: str) -> RequestLine:
    """Re-parse a line that already passed validation; raises ValueError if it does not parse."""
    result = parse_line(raw, line_no, endpoint, _ANY_LINE)
    if isinstance(result, list):
        raise ValueError(f"line {line_no}: " + " ".join(error.message for error in result))
    return result


def _parse(
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
            errors.append(_missing("method", line_no))
        elif not isinstance(method, str):
            errors.append(LineError("invalid_request", "The method parameter must be a string.", line_no, "method"))
        elif method.upper() != "POST":
            message = f"Only the POST method is supported, not {_quote(method)}."
            errors.append(LineError("invalid_method", message, line_no, "method"))
        url = obj.get("url")
        url_ok = url == endpoint
        if url is None:
            errors.append(_missing("url", line_no))
        elif not isinstance(url, str):
            errors.append(LineError("invalid_request", "The url parameter must be a string.", line_no, "url"))
        elif not url_ok:
            message = "The URL provided for this request does not match the batch endpoint."
            errors.append(LineError("invalid_url", message, line_no, "url"))
        raw_body = obj.get("body")
        if raw_body is None:
            errors.append(_missing("body", line_no))
        elif not isinstance(raw_body, dict):
            errors.append(LineError("invalid_request", "The body parameter must be an object.", line_no, "body"))
        else:
            body = raw_body
    elif "params" in obj:  # source-document form
        custom_id = _custom_id(obj.get("custom_id"), f"request-{line_no}", line_no, limits, errors)
        params = obj["params"]
        if params is None:
            errors.append(_missing("params", line_no))
        elif not isinstance(params, dict):
            errors.append(LineError("invalid_request", "The params parameter must be an object.", line_no, "params"))
        else:
            body = params
    else:  # bare form: the line is the body
        custom_id = _custom_id(obj.get("custom_id"), f"request-{line_no}", line_no, limits, errors)
        body = {k: v for k, v in obj.items() if k != "custom_id"} if "custom_id" in obj else obj
    model = None if body is None else _check_body(body, line_no, endpoint, limits, url_ok, errors)
    if errors or custom_id is None or body is None:
        return errors
    return RequestLine(custom_id=custom_id, url=endpoint, body=body, model=model)


def _custom_id(
    value: object, default: str | None, line_no: int, limits: ValidationLimits, errors: list[LineError]
) -> str | None:
    if value is None:
        if default is None:
            errors.append(_missing("custom_id", line_no))
        return default
    if not isinstance(value, str):
        errors.append(LineError("invalid_request", "The custom_id parameter must be a string.", line_no, "custom_id"))
        return None
    if not value or len(value) > limits.max_custom_id_chars:
        message = f"The custom_id must be a non-empty string of at most {limits.max_custom_id_chars} characters."
        errors.append(LineError("invalid_custom_id", message, line_no, "custom_id"))
        return None
    if not _encodable(value):
        message = "The custom_id contains an unpaired surrogate and cannot be encoded as UTF-8."
        errors.append(LineError("invalid_custom_id", message, line_no, "custom_id"))
        return None
    return value


def _check_body(
    body: dict[str, Any], line_no: int, endpoint: str, limits: ValidationLimits, url_ok: bool, errors: list[LineError]
) -> str | None:
    """Check the request body; returns its model if that one is acceptable."""
    stream = body.get("stream")
    if stream is True:
        title = _ENDPOINT_TITLES.get(endpoint, "This endpoint")
        message = f"{title}: Streaming is not supported in the Batch API."
        errors.append(LineError("streaming_unsupported", message, line_no, "body.stream"))
    elif stream is not None and not isinstance(stream, bool):
        errors.append(LineError("invalid_request", "The stream parameter must be a boolean.", line_no, "body.stream"))

    model = body.get("model")
    accepted: str | None = None
    if model is None or model == "":
        errors.append(LineError("invalid_request", "Model parameter is required.", line_no, "body.model"))
    elif not isinstance(model, str):
        errors.append(LineError("invalid_request", "The model parameter must be a string.", line_no, "body.model"))
    elif not _encodable(model):
        message = "The model parameter contains an unpaired surrogate and cannot be encoded as UTF-8."
        errors.append(LineError("invalid_request", message, line_no, "body.model"))
    elif limits.served_models is not None and model not in limits.served_models:
        message = f"The provided model {_quote(model)} is not supported by the Batch API."
        errors.append(LineError("model_not_found", message, line_no, "body.model"))
    else:
        accepted = model

    # A line aimed at another endpoint would only collect noise here: its invalid_url says enough.
    required = _REQUIRED_FIELD.get(endpoint) if url_ok else None
    if required is not None:
        name, title = required
        param = f"body.{name}"
        value = body.get(name)
        if value is None:
            errors.append(LineError("invalid_request", f"{title} parameter is required.", line_no, param))
        elif name == "messages":
            if not isinstance(value, list) or not value:
                message = "The messages parameter must be a non-empty array."
                errors.append(LineError("invalid_request", message, line_no, param))
            elif not all(isinstance(item, dict) for item in value):
                errors.append(LineError("invalid_request", "Each message must be an object.", line_no, param))
        elif not isinstance(value, str | list):
            message = f"The {name} parameter must be a string or an array."
            errors.append(LineError("invalid_request", message, line_no, param))
    return accepted


def _missing(name: str, line_no: int) -> LineError:
    return LineError("missing_required_parameter", f"Missing required parameter: '{name}'.", line_no, name)


def _line_too_long(line_no: int, length: int, limits: ValidationLimits) -> LineError:
    message = f"This line is {length:,} bytes long; the limit is {limits.max_line_bytes:,} bytes."
    return LineError("line_too_long", message, line_no)


def _encodable(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _quote(text: str) -> str:
    """A user value for an error message: cut short, and always encodable as UTF-8."""
    if len(text) > _QUOTE_CHARS:
        text = text[:_QUOTE_CHARS] + "..."
    return "'" + text.encode("utf-8", "backslashreplace").decode("utf-8") + "'"


# --- a whole file -----------------------------------------------------------------------------------


class FileValidator:
    """Validate a JSONL file fed in chunks of any size; memory stays at one line plus one chunk.

    A line longer than ``max_line_bytes`` is never buffered: its bytes are counted and dropped.
    """

    def __init__(self, endpoint: str, limits: ValidationLimits) -> None:
        self._endpoint = endpoint
        self._limits = limits
        self._buf = bytearray()  # the start of the current line, when it spans chunks
        self._base = 0  # file offset of the next chunk's first byte
        self._line_start = 0  # file offset of the current line's first byte
        self._line_no = 1
        self._skip_len: int | None = None  # bytes seen so far of an over-long line being skipped
        self._skip_bom = False
        self._skip_cr = False  # whether the last byte seen of the skipped line is \r
        self._errors: list[LineError] = []
        self._error_count = 0
        self._too_many_line: int | None = None
        self._too_many_pos: int | None = None
        self._total = 0
        self._index: list[tuple[int, int, int]] = []
        self._seen: dict[str, int] = {}
        self._model: str | None = None
        self._model_line = 0
        self._result: ValidationResult | None = None

    def feed(self, chunk: bytes) -> None:
        if self._result is not None:
            raise RuntimeError("FileValidator.feed() called after finish()")
        base = self._base
        size = len(chunk)
        pos = 0
        while pos < size:
            nl = chunk.find(_NL, pos)
            stop = size if nl == -1 else nl
            if self._skip_len is not None:
                if stop > pos:
                    self._skip_len += stop - pos
                    self._skip_cr = chunk[stop - 1] == _CR
            elif self._buf or nl == -1:
                if len(self._buf) + (stop - pos) > self._max_pending():
                    self._start_skip(chunk, pos, stop)
                else:
                    self._buf += memoryview(chunk)[pos:stop]
            if nl == -1:
                break
            if self._skip_len is not None:
                self._end_skip()
            elif self._buf:
                buf, self._buf = self._buf, bytearray()
                self._line(buf, 0, len(buf))
            else:
                self._line(chunk, pos, nl)
            self._line_no += 1
            self._line_start = base + nl + 1
            pos = nl + 1
        self._base = base + size

    def finish(self) -> ValidationResult:
        if self._result is not None:
            return self._result
        if self._skip_len is not None:
            self._end_skip()
        elif self._buf:
            buf, self._buf = self._buf, bytearray()
            self._line(buf, 0, len(buf))
        limits = self._limits
        if self._total == 0:
            self._add(LineError("empty_file", "The input file contains no requests.", None))
        errors = list(self._errors)
        if self._too_many_line is not None:
            message = (
                f"The input file has {self._total:,} requests; the limit is {limits.max_requests:,} requests per batch."
            )
            error = LineError("too_many_requests", message, self._too_many_line)
            if self._too_many_pos is not None:
                errors[self._too_many_pos] = error
            elif errors:  # past the cap: show it anyway, in place of the last error shown (it comes later)
                errors[-1] = error
        if self._error_count > len(errors):
            hidden = self._error_count - len(errors)
            errors.append(
                LineError("too_many_errors", f"{hidden} more errors not shown ({self._error_count} in all)", None)
            )
        self._result = ValidationResult(
            errors=errors, error_count=self._error_count, total=self._total, model=self._model, index=self._index
        )
        return self._result

    # --- internals ---

    def _max_pending(self) -> int:
        """Bytes of an unfinished line worth keeping: the limit, plus a \\r, plus a BOM on line 1."""
        return self._limits.max_line_bytes + 1 + (len(_BOM) if self._line_no == 1 else 0)

    def _add(self, error: LineError) -> int | None:
        """Count an error and keep it if under the cap; returns its position in the kept list."""
        self._error_count += 1
        if len(self._errors) < self._limits.max_reported_errors:
            self._errors.append(error)
            return len(self._errors) - 1
        return None

    def _start_skip(self, chunk: bytes, pos: int, stop: int) -> None:
        if self._line_no == 1:
            head = bytes(self._buf[: len(_BOM)]) + chunk[pos : pos + len(_BOM)]
            self._skip_bom = head.startswith(_BOM)
        self._skip_len = len(self._buf) + (stop - pos)
        self._skip_cr = chunk[stop - 1] == _CR  # stop > pos: the buffer alone never exceeds the limit
        self._buf = bytearray()

    def _end_skip(self) -> None:
        assert self._skip_len is not None
        bom = len(_BOM) if self._skip_bom else 0
        length = self._skip_len - bom - (1 if self._skip_cr else 0)
        self._skip_len = None
        self._skip_bom = self._skip_cr = False
        self._request_line(self._line_no, self._line_start + bom, length)
        self._add(_line_too_long(self._line_no, length, self._limits))

    def _request_line(self, line_no: int, offset: int, length: int) -> bool:
        """Count a non-blank line; returns whether it is within max_requests."""
        self._total += 1
        if self._total <= self._limits.max_requests:
            self._index.append((line_no, offset, length))
            return True
        if self._too_many_line is None:
            self._too_many_line = line_no
            self._too_many_pos = self._add(LineError("too_many_requests", "", line_no))  # message set by finish()
        return False

    def _line(self, data: bytes | bytearray, begin: int, end: int) -> None:
        """One complete line, ``data[begin:end]`` without its ``\\n``."""
        line_no = self._line_no
        offset = self._line_start
        if end > begin and data[end - 1] == _CR:
            end -= 1
        if line_no == 1 and data.startswith(_BOM, begin, end):
            begin += len(_BOM)
            offset += len(_BOM)
        length = end - begin
        limits = self._limits
        if length > limits.max_line_bytes:  # before the blank check: a skipped line is never looked at either
            self._request_line(line_no, offset, length)
            self._add(_line_too_long(line_no, length, limits))
            return
        if length == 0 or (data[begin] in _WHITESPACE and data[begin:end].isspace()):
            return  # blank lines are tolerated (and still counted as physical lines)
        within = self._request_line(line_no, offset, length)
        result = _parse(data, begin, end, line_no, self._endpoint, limits)
        if isinstance(result, list):
            for error in result:
                self._add(error)
            return
        first = self._seen.get(result.custom_id)
        if first is not None:
            message = (
                f"custom_id {_quote(result.custom_id)} on line {line_no} duplicates line {first}; "
                "the custom_id parameter must be unique for each request in a batch."
            )
            self._add(LineError("duplicate_custom_id", message, line_no, "custom_id"))
        elif within:
            self._seen[result.custom_id] = line_no
        if result.model is not None:
            if self._model is None:
                self._model, self._model_line = result.model, line_no
            elif result.model != self._model:
                message = (
                    f"Model {_quote(result.model)} on line {line_no} differs from model {_quote(self._model)} "
                    f"on line {self._model_line}; each input file can only include requests to a single model."
                )
                self._add(LineError("model_mismatch", message, line_no, "body.model"))
