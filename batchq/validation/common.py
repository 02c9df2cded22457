"""Small helpers shared by the line and body checks: error builders and message quoting."""

from __future__ import annotations

from batchq.validation.types import LineError, ValidationLimits

#: Longest user value quoted in an error message.
_QUOTE_CHARS = 80


def missing(name: str, line_no: int) -> LineError:
    return LineError("missing_required_parameter", f"Missing required parameter: '{name}'.", line_no, name)


def line_too_long(line_no: int, length: int, limits: ValidationLimits) -> LineError:
    message = f"This line is {length:,} bytes long; the limit is {limits.max_line_bytes:,} bytes."
    return LineError("line_too_long", message, line_no)


def encodable(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def quote(text: str) -> str:
    """A user value for an error message: cut short, and always encodable as UTF-8."""
    if len(text) > _QUOTE_CHARS:
        text = text[:_QUOTE_CHARS] + "..."
    return "'" + text.encode("utf-8", "backslashreplace").decode("utf-8") + "'"
