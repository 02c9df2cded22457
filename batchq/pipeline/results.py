"""A batch's result lines (output and error merged) in input order: from the files once final, live before."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

from batchq.keys import request_id
from batchq.state import BatchRecord, LineState
from batchq.state.files import FileRegistry
from batchq.storage import ObjectStore


def iter_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Split a stream of chunks into lines (without line endings), never holding more than one line."""
    rest = b""
    for chunk in chunks:
        rest += chunk
        *complete, rest = rest.split(b"\n")
        for line in complete:
            if line.strip():
                yield line.rstrip(b"\r")
    if rest.strip():
        yield rest.rstrip(b"\r")


def iter_results(store: ObjectStore, files: FileRegistry, lines: LineState, record: BatchRecord) -> Iterator[bytes]:
    """Every recorded result line of the batch, in input order."""
    if record.is_final and (record.output_file_id or record.error_file_id):
        yield from _merge_files(store, files, record, record.total)
        return
    for _line, value in lines.iter_outcomes(record.id, record.total):
        if value is not None:
            yield value


def _merge_files(store: ObjectStore, files: FileRegistry, record: BatchRecord, total: int) -> Iterator[bytes]:
    """Merge the output and error files (each already in input order) by the lines' stable ``batch_req_`` ids."""
    streams = []
    for file_id in (record.output_file_id, record.error_file_id):
        file_record = files.record(file_id) if file_id else None
        streams.append(_peekable(iter_lines(store.iter_chunks(file_record["storage_key"]))) if file_record else None)
    heads: list[tuple[str, bytes] | None] = [next(s, None) if s else None for s in streams]
    for line in range(total):
        rid = request_id(record.id, line)
        for i, head in enumerate(heads):
            if head is not None and head[0] == rid:
                yield head[1]
                stream = streams[i]
                heads[i] = next(stream, None) if stream else None
                break


def _peekable(lines: Iterator[bytes]) -> Iterator[tuple[str, bytes]]:
    for raw in lines:
        yield str(json.loads(raw).get("id", "")), raw
