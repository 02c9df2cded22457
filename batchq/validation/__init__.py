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

Each endpoint's body needs ``model`` and its own field: ``messages`` (chat), ``input`` (embeddings, responses,
moderations) or ``prompt`` (completions). A moderations line may leave ``model`` out (the upstream's default
model then serves it, as OpenAI's does); a responses line may not set ``background: true``.

The package: ``types`` (the values), ``common`` (error helpers), ``endpoints`` (body rules per endpoint),
``lines`` (one line), ``files`` (a whole file, streamed).

Body-level params are named ``body.<field>`` in every form (for the other forms the body is the params
object / the line itself).
"""

from __future__ import annotations

from batchq.validation.files import FileValidator
from batchq.validation.lines import normalize_line, parse_line
from batchq.validation.types import LineError, RequestLine, ValidationLimits, ValidationResult

__all__ = [
    "FileValidator",
    "LineError",
    "RequestLine",
    "ValidationLimits",
    "ValidationResult",
    "normalize_line",
    "parse_line",
]
