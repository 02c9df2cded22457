"""Streaming multipart upload: the ``file`` part goes straight to the object store, chunk by chunk.

Starlette's form parser spools a whole upload to disk before the handler sees it, with no size limit; this
parser decides 413 while the bytes arrive, keeps memory flat and leaves nothing stored when it refuses. Every part
is bounded: the text fields in number and size (their bytes count towards the file limit), and part headers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from batchq.api.bodies import drain
from batchq.api.errors import ApiProblem, BadRequestProblem, PayloadTooLargeProblem
from batchq.storage import ObjectStore, StoreError, Writer

#: Bytes a text form field may hold (``purpose`` is a short word).
MAX_FIELD_B = 4096
#: Bytes of one part's headers (Content-Disposition with a long filename fits easily).
MAX_PART_HEADERS_B = 16 * 1024


@dataclass
class _Part:
    name: str = ""
    filename: str | None = None
    headers: dict[bytes, bytes] = field(default_factory=dict)
    data: bytearray = field(default_factory=bytearray)


@dataclass
class Upload:
    """What the multipart body held: the stored file (if any) and the text fields."""

    fields: dict[str, str]
    filename: str | None
    size: int
    stored: bool


async def receive_upload(
    request: Request, store: ObjectStore, storage_key: str, max_bytes: int, max_fields: int
) -> Upload:
    """Parse the multipart body, streaming the ``file`` part into ``store`` under ``storage_key``.

    Raises:
        BadRequestProblem: not multipart, malformed, more than ``max_fields`` text parts, a field or part
            headers too long.
        PayloadTooLargeProblem: the file part and text fields passed ``max_bytes`` (nothing is left stored).
    """
    ctype, params = parse_options_header(request.headers.get("content-type"))
    boundary = params.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise BadRequestProblem(
            "The request must be multipart/form-data with 'file' and 'purpose' fields.", code="invalid_content_type"
        )
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes + 64 * 1024:
        await drain(request)
        raise _too_large(max_bytes)

    fields: dict[str, str] = {}
    current = _Part()
    header_name = bytearray()
    header_value = bytearray()
    pending: list[bytes] = []  # file bytes parsed but not yet handed to the writer
    state: dict[str, Any] = {"in_file": False, "done_file": False, "filename": None}
    counted = {"fields": 0, "field_bytes": 0, "header_bytes": 0}

    def on_part_begin() -> None:
        nonlocal current
        current = _Part()
        counted["header_bytes"] = 0

    def count_header(n: int) -> None:
        counted["header_bytes"] += n
        if counted["header_bytes"] > MAX_PART_HEADERS_B:
            raise BadRequestProblem(
                f"A multipart part has more than {MAX_PART_HEADERS_B} bytes of headers.", code="invalid_multipart"
            )

    def on_header_field(data: bytes, start: int, end: int) -> None:
        count_header(end - start)
        header_name.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        count_header(end - start)
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        current.headers[bytes(header_name).lower()] = bytes(header_value)
        header_name.clear()
        header_value.clear()

    def on_headers_finished() -> None:
        _, disp = parse_options_header(current.headers.get(b"content-disposition", b""))
        current.name = disp.get(b"name", b"").decode("utf-8", "replace")
        raw_filename = disp.get(b"filename")
        current.filename = raw_filename.decode("utf-8", "replace") if raw_filename is not None else None
        if current.name == "file":
            if state["done_file"]:
                raise BadRequestProblem("Only one 'file' part is allowed.", param="file")
            state["in_file"] = True
            state["filename"] = current.filename or "upload.jsonl"
            return
        counted["fields"] += 1
        if counted["fields"] > max_fields:
            raise BadRequestProblem(
                f"Too many form fields: at most {max_fields} besides 'file' (BATCHQ_MAX_FORM_FIELDS).",
                code="too_many_fields",
            )

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if state["in_file"]:
            pending.append(data[start:end])
        else:
            current.data.extend(data[start:end])
            counted["field_bytes"] += end - start
            if len(current.data) > MAX_FIELD_B:
                raise BadRequestProblem(f"Form field {current.name[:64]!r} is too long.", param=current.name[:64])

    def on_part_end() -> None:
        if state["in_file"]:
            state["in_file"] = False
            state["done_file"] = True
        elif current.name:
            fields[current.name] = current.data.decode("utf-8", "replace")

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
        },
    )

    writer: Writer | None = None
    size = 0
    try:
        async for chunk in request.stream():
            try:
                parser.write(chunk)
            except BadRequestProblem:
                raise
            except Exception as exc:  # the parser's own errors: the body is not valid multipart
                raise BadRequestProblem(f"Malformed multipart body: {exc}", code="invalid_multipart") from exc
            if size + counted["field_bytes"] > max_bytes:
                raise _too_large(max_bytes)
            if pending:
                data = b"".join(pending)
                pending.clear()
                size += len(data)
                if size + counted["field_bytes"] > max_bytes:
                    raise _too_large(max_bytes)
                if writer is None:
                    writer = await run_in_threadpool(_open_writer, store, storage_key)
                await run_in_threadpool(writer.write, data)
        parser.finalize()
        if state["done_file"] and writer is None:  # an empty file part: store an empty object
            writer = await run_in_threadpool(_open_writer, store, storage_key)
    except BaseException as exc:
        if writer is not None:
            await run_in_threadpool(writer.__exit__, type(exc), exc, None)
        if isinstance(exc, ApiProblem | StoreError):
            await drain(request)  # so the client reads our answer rather than a reset connection
        raise
    if writer is not None:
        await run_in_threadpool(writer.__exit__, None, None, None)
    return Upload(fields=fields, filename=state["filename"], size=size, stored=writer is not None)


def _open_writer(store: ObjectStore, key: str) -> Writer:
    """A writer that has been entered (only an entered writer may be exited)."""
    return store.writer(key).__enter__()


def _too_large(max_bytes: int) -> PayloadTooLargeProblem:
    return PayloadTooLargeProblem(
        f"File is too large: the limit is {max_bytes} bytes, form fields included (BATCHQ_MAX_FILE_BYTES).",
        code="file_too_large",
        param="file",
    )
