"""The operations of ``client.files``, written once for both clients (see :mod:`batchq.client.effects`)."""

from __future__ import annotations

from contextlib import ExitStack
from urllib.parse import quote

from batchq.client.connection import Connection
from batchq.client.effects import Op
from batchq.client.lines import Lines
from batchq.client.pages import Listing
from batchq.client.retrying import send
from batchq.client.uploads import FileInput, upload_parts
from batchq.schemas import FileDeleted, FileList, FileObject


def file_path(file_id: str, suffix: str = "") -> str:
    return f"/files/{quote(file_id, safe='')}{suffix}"


def create_file(conn: Connection, *, file: FileInput, purpose: str = "batch") -> Op[FileObject]:
    """Upload a file (streamed from disk when given a path or file object).

    Args:
        file: A path, bytes, a binary file object, or ``(filename, bytes | file object)``.
        purpose: ``"batch"`` for batch inputs.
    """
    with ExitStack() as stack:
        files, retries = upload_parts(file, stack)
        response = yield from send(conn, "POST", "/files", files=files, data={"purpose": purpose}, max_retries=retries)
    return FileObject.model_validate(response.json())


def retrieve_file(conn: Connection, file_id: str) -> Op[FileObject]:
    """The file's metadata."""
    response = yield from send(conn, "GET", file_path(file_id))
    return FileObject.model_validate(response.json())


def list_files(
    conn: Connection,
    *,
    purpose: str | None = None,
    after: str | None = None,
    limit: int | None = None,
    order: str | None = None,
) -> Op[Listing[FileObject]]:
    """One page of the account's files; iterate the page (or ``auto_paging_iter()``) for all of them."""
    params = {"purpose": purpose, "after": after, "limit": limit, "order": order}
    response = yield from send(conn, "GET", "/files", params=params)
    listed = FileList.model_validate(response.json())

    def next_page(last: str) -> Op[Listing[FileObject]]:
        return list_files(conn, purpose=purpose, after=last, limit=limit, order=order)

    return Listing(listed.data, listed.has_more, listed.first_id, listed.last_id, next_page)


def file_content(conn: Connection, file_id: str) -> Op[bytes]:
    """The file's raw bytes (loaded into memory; see ``iter_lines`` for large files)."""
    response = yield from send(conn, "GET", file_path(file_id, "/content"))
    return response.content


def file_lines(conn: Connection, file_id: str) -> Op[Lines[str]]:
    """The file's lines, streamed (blank lines included, line ends removed)."""
    response = yield from send(conn, "GET", file_path(file_id, "/content"), stream=True)
    return Lines(response, _as_is)


def delete_file(conn: Connection, file_id: str) -> Op[FileDeleted]:
    """Delete the file."""
    response = yield from send(conn, "DELETE", file_path(file_id))
    return FileDeleted.model_validate(response.json())


def _as_is(line: str) -> str:
    return line
