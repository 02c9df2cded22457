"""A whole file, streamed in chunks: the checks that span lines, and the index of request lines."""

from __future__ import annotations

from batchq.validation.common import line_too_long, quote
from batchq.validation.lines import parse_raw
from batchq.validation.types import LineError, ValidationLimits, ValidationResult

_BOM = b"\xef\xbb\xbf"
_CR = 13
_NL = b"\n"
#: Bytes that ``bytes.isspace()`` counts as whitespace; a line made of them only is blank.
_WHITESPACE = b" \t\r\n\x0b\x0c"


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
        self._add(line_too_long(self._line_no, length, self._limits))

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
            self._add(line_too_long(line_no, length, limits))
            return
        if length == 0 or (data[begin] in _WHITESPACE and data[begin:end].isspace()):
            return  # blank lines are tolerated (and still counted as physical lines)
        within = self._request_line(line_no, offset, length)
        result = parse_raw(data, begin, end, line_no, self._endpoint, limits)
        if isinstance(result, list):
            for error in result:
                self._add(error)
            return
        first = self._seen.get(result.custom_id)
        if first is not None:
            message = (
                f"custom_id {quote(result.custom_id)} on line {line_no} duplicates line {first}; "
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
                    f"Model {quote(result.model)} on line {line_no} differs from model {quote(self._model)} "
                    f"on line {self._model_line}; each input file can only include requests to a single model."
                )
                self._add(LineError("model_mismatch", message, line_no, "body.model"))
