"""Streaming multipart upload: the ``file`` part goes straight to the object store, chunk by chunk.

Starlette's form parser spools a whole upload to disk before the handler sees it, with no size limit; this
parser decides 413 while the bytes arrive, keeps memory flat and leaves nothing stored when it refuses. Every part
is bounded: the text fields in number and size (their bytes count towards the file limit), and part headers.
Every byte of the body counts, framing and whatever follows the closing boundary included (the multipart parser
skips such bytes without a word), and the whole upload has a deadline (BATCHQ_UPLOAD_TIMEOUT_S, 408 past it).
With BATCHQ_MAX_ACCOUNT_STORAGE_BYTES the file's bytes are reserved against the account's quota as they arrive.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from batchq.api.bodies import drain
from batchq.api.errors import ApiProblem, BadRequestProblem, PayloadTooLargeProblem, RequestTimeoutProblem
from batchq.api.quota import StorageQuota
from batchq.storage import ObjectStore, StoreError, Writer

#: Bytes a text form field may hold (``purpose`` is a short word).
MAX_FIELD_B = 4096
#: Bytes of one part's headers (Content-Disposition with a long filename fits easily).
MAX_PART_HEADERS_B = 16 * 1024
#: Bytes of multipart framing (boundaries, part headers) a body may hold beyond the file limit.
FRAMING_ALLOWANCE_B = 64 * 1024


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int
    """The file part and the text fields together (BATCHQ_MAX_FILE_BYTES)."""
    max_fields: int
    """Text parts besides ``file`` (BATCHQ_MAX_FORM_FIELDS)."""
    timeout_s: float
    """First byte to last (BATCHQ_UPLOAD_TIMEOUT_S)."""

    @property
    def max_body_bytes(self) -> int:
        return self.max_bytes + FRAMING_ALLOWANCE_B


@dataclass
class Upload:
    """What the multipart body held: the stored file (if any) and the text fields."""

    fields: dict[str, str]
    filename: str | None
    size: int
    stored: bool


@dataclass
class _Part:
    name: str = ""
    filename: str | None = None
    headers: dict[bytes, bytes] = field(default_factory=dict)
    data: bytearray = field(default_factory=bytearray)


class _FormParser:
    """python-multipart's push parser with bounds: ``feed`` a chunk, get back the ``file`` part's bytes in it."""

    def __init__(self, boundary: bytes, max_fields: int) -> None:
        self.max_fields = max_fields
        self.fields: dict[str, str] = {}
        self.filename: str | None = None
        self.done_file = False
        self.field_bytes = 0
        self._in_file = False
        self._current = _Part()
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._header_bytes = 0
        self._field_count = 0
        self._file_data: list[bytes] = []
        callbacks = {
            "on_part_begin": self._part_begin,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value_data,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
        }
        self._parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]

    def feed(self, chunk: bytes) -> bytes:
        """Parse ``chunk``; returns the file bytes it held.

        Raises:
            BadRequestProblem: malformed multipart, too many fields, a field or part headers too long.
        """
        try:
            self._parser.write(chunk)
        except BadRequestProblem:
            raise
        except Exception as exc:  # the parser's own errors: the body is not valid multipart
            raise BadRequestProblem(f"Malformed multipart body: {exc}", code="invalid_multipart") from exc
        data = b"".join(self._file_data)
        self._file_data.clear()
        return data

    def finish(self) -> None:
        self._parser.finalize()

    def _part_begin(self) -> None:
        self._current = _Part()
        self._header_bytes = 0

    def _count_header(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > MAX_PART_HEADERS_B:
            raise BadRequestProblem(
                f"A multipart part has more than {MAX_PART_HEADERS_B} bytes of headers.", code="invalid_multipart"
            )

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._header_name.extend(data[start:end])

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._header_value.extend(data[start:end])

    def _header_end(self) -> None:
        self._current.headers[bytes(self._header_name).lower()] = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        current = self._current
        _, disp = parse_options_header(current.headers.get(b"content-disposition", b""))
        current.name = disp.get(b"name", b"").decode("utf-8", "replace")
        raw_filename = disp.get(b"filename")
        current.filename = raw_filename.decode("utf-8", "replace") if raw_filename is not None else None
        if current.name == "file":
            if self.done_file:
                raise BadRequestProblem("Only one 'file' part is allowed.", param="file")
            self._in_file = True
            self.filename = current.filename or "upload.jsonl"
            return
        self._field_count += 1
        if self._field_count > self.max_fields:
            raise BadRequestProblem(
                f"Too many form fields: at most {self.max_fields} besides 'file' (BATCHQ_MAX_FORM_FIELDS).",
                code="too_many_fields",
            )

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self._file_data.append(data[start:end])
            return
        self._current.data.extend(data[start:end])
        self.field_bytes += end - start
        if len(self._current.data) > MAX_FIELD_B:
            name = self._current.name[:64]
            raise BadRequestProblem(f"Form field {name!r} is too long.", param=name)

    def _part_end(self) -> None:
        if self._in_file:
            self._in_file = False
            self.done_file = True
        elif self._current.name:
            self.fields[self._current.name] = self._current.data.decode("utf-8", "replace")


@dataclass
class _Progress:
    body_bytes: int = 0
    file_bytes: int = 0
    writer: Writer | None = None


async def receive_upload(
    request: Request, store: ObjectStore, storage_key: str, limits: UploadLimits, quota: StorageQuota | None = None
) -> Upload:
    """Parse the multipart body, streaming the ``file`` part into ``store`` under ``storage_key``.

    Raises:
        BadRequestProblem: not multipart, malformed, too many text parts, a field or part headers too long.
        PayloadTooLargeProblem: the body passed the file limit (plus framing), or the file and text fields did;
            or the file would take the account beyond its storage quota. Nothing is left stored.
        RequestTimeoutProblem: the body did not arrive within the upload deadline. Nothing is left stored.
    """
    ctype, params = parse_options_header(request.headers.get("content-type"))
    boundary = params.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise BadRequestProblem(
            "The request must be multipart/form-data with 'file' and 'purpose' fields.", code="invalid_content_type"
        )
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limits.max_body_bytes:
        await drain(request)
        raise _too_large(limits.max_bytes)

    form = _FormParser(boundary, limits.max_fields)
    progress = _Progress()
    try:
        with anyio.move_on_after(limits.timeout_s) as deadline:
            await _pump(request, form, progress, store, storage_key, limits, quota)
        if deadline.cancelled_caught:
            raise RequestTimeoutProblem(
                f"The upload did not complete within {limits.timeout_s:g} s (BATCHQ_UPLOAD_TIMEOUT_S).",
                code="upload_timeout",
            )
        form.finish()
        if form.done_file and progress.writer is None:  # an empty file part: store an empty object
            progress.writer = await run_in_threadpool(_open_writer, store, storage_key)
    except BaseException as exc:
        if progress.writer is not None:
            await run_in_threadpool(progress.writer.__exit__, type(exc), exc, None)
        if isinstance(exc, ApiProblem | StoreError) and not isinstance(exc, RequestTimeoutProblem):
            await drain(request)  # so the client reads our answer rather than a reset connection
        raise
    if progress.writer is not None:
        await run_in_threadpool(progress.writer.__exit__, None, None, None)
    return Upload(form.fields, form.filename, progress.file_bytes, stored=progress.writer is not None)


async def _pump(
    request: Request,
    form: _FormParser,
    progress: _Progress,
    store: ObjectStore,
    storage_key: str,
    limits: UploadLimits,
    quota: StorageQuota | None,
) -> None:
    """Read the body to its end: count it, parse it, reserve quota for the file's bytes and write them."""
    async for chunk in request.stream():
        progress.body_bytes += len(chunk)
        if progress.body_bytes > limits.max_body_bytes:  # bytes the parser skips count too
            raise _too_large(limits.max_bytes)
        data = form.feed(chunk)
        if progress.file_bytes + len(data) + form.field_bytes > limits.max_bytes:
            raise _too_large(limits.max_bytes)
        if not data:
            continue
        progress.file_bytes += len(data)
        if quota is not None and quota.needs_round_trip(progress.file_bytes):
            await run_in_threadpool(quota.reserve, progress.file_bytes)
        if progress.writer is None:
            progress.writer = await run_in_threadpool(_open_writer, store, storage_key)
        await run_in_threadpool(progress.writer.write, data)


def _open_writer(store: ObjectStore, key: str) -> Writer:
    """A writer that has been entered (only an entered writer may be exited)."""
    return store.writer(key).__enter__()


def _too_large(max_bytes: int) -> PayloadTooLargeProblem:
    return PayloadTooLargeProblem(
        f"File is too large: the limit is {max_bytes} bytes, form fields included (BATCHQ_MAX_FILE_BYTES).",
        code="file_too_large",
        param="file",
    )
