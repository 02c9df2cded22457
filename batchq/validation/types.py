"""The values validation works with: limits in, errors and normalized lines out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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
