"""What the sync and async clients share: request files, URL paths, request bodies, list pages.

Request files are prepared line by line into a temporary file on disk, so a large input is never held twice in memory.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any, Generic, Literal, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from batchq._http import DEFAULT_CONNECT_TIMEOUT_S, FilesFactory
from batchq.schemas import Batch

T = TypeVar("T")

#: What ``files.create(file=...)`` accepts: a path, bytes, a binary file object, or ``(filename, bytes | file)``.
FileInput = str | os.PathLike[str] | bytes | IO[bytes] | tuple[str, bytes | IO[bytes]]
#: What ``submit`` accepts: JSONL text (str or bytes), a path to a JSONL file, or the request dicts themselves.
RequestsInput = str | bytes | os.PathLike[str] | Iterable[Mapping[str, Any]]
#: Called with the batch after each poll of ``wait``.
OnUpdate = Callable[[Batch], None]

#: Endpoint of a batch when none is given.
DEFAULT_ENDPOINT = "/v1/chat/completions"
#: Seconds between two polls of ``wait``.
DEFAULT_POLL_INTERVAL_S = 2.0
JSONL_CONTENT_TYPE = "application/jsonl"
#: Filename of an upload given as a nameless file object.
DEFAULT_UPLOAD_NAME = "upload.jsonl"
#: Filename of requests given as text or dicts.
DEFAULT_REQUESTS_NAME = "requests.jsonl"


class BatchDeleted(BaseModel):
    """Answer of ``DELETE /v1/batches/{id}``: the batch, its files and outputs are gone."""

    id: str
    object: Literal["batch.deleted"] = "batch.deleted"
    deleted: bool


# --- request files --------------------------------------------------------------------------------------------


def upload_parts(file: FileInput, stack: ExitStack) -> tuple[FilesFactory, int | None]:
    """Multipart files for an upload, rebuilt (rewound) per attempt, and a retry override (0 when not replayable).

    Args:
        file: A path, bytes, a binary file object, or ``(filename, bytes | file object)``.
        stack: Closes the file opened for a path when the upload is done.
    """
    content: bytes | IO[bytes]
    if isinstance(file, tuple):
        name, content = file
    elif isinstance(file, str | os.PathLike):
        path = Path(file)
        name, content = path.name, stack.enter_context(path.open("rb"))
    else:
        content = file
        file_name = getattr(file, "name", None)
        name = os.path.basename(file_name) if isinstance(file_name, str) and file_name else DEFAULT_UPLOAD_NAME
    if isinstance(content, bytes):
        data = content
        return (lambda: {"file": (name, data, JSONL_CONTENT_TYPE)}), None
    stream = content
    if not stream.seekable():  # a pipe cannot be sent twice: no retries for it
        return (lambda: {"file": (name, stream, JSONL_CONTENT_TYPE)}), 0
    start = stream.tell()

    def factory() -> Mapping[str, Any]:
        stream.seek(start)
        return {"file": (name, stream, JSONL_CONTENT_TYPE)}

    return factory, None


def fill_model(obj: dict[str, Any], model: str) -> dict[str, Any] | None:
    """A copy of a request line with ``model`` set where it lacks one, or None when it needs no change.

    The line's form decides where the model goes, as the server's validation reads it: OpenAI form (``body``,
    ``method`` or ``url`` present) → ``body.model``; source-document form (``params``) → ``params.model``;
    bare form → top-level ``model``. A missing, null or empty model counts as lacking.
    """
    key = "body" if ("body" in obj or "method" in obj or "url" in obj) else "params" if "params" in obj else None
    target = obj if key is None else obj.get(key)
    if not isinstance(target, dict) or target.get("model") not in (None, ""):
        return None  # a malformed line is left for the server to report with its line number
    filled = {**target, "model": model}
    return filled if key is None else {**obj, key: filled}


def rewrite_line(raw: bytes, model: str, first: bool) -> bytes:
    """One JSONL line with its model filled; blank, unparseable or complete lines come back unchanged."""
    text = raw.rstrip(b"\r\n")
    ending = raw[len(text) :]
    try:
        obj = json.loads(text.removeprefix(b"\xef\xbb\xbf") if first else text)
    except ValueError:
        return raw  # the server reports it with its line number
    filled = fill_model(obj, model) if isinstance(obj, dict) else None
    if filled is None:
        return raw
    return json.dumps(filled, ensure_ascii=False).encode() + ending


def str_lines(text: str) -> Iterator[bytes]:
    """The lines of a string, line ends kept, without copying the whole string at once."""
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end == -1 else end + 1
        yield text[start:end].encode()
        start = end


def is_jsonl_text(value: str) -> bool:
    head = value.lstrip("\ufeff \t\r\n")
    return not head or head.startswith("{") or "\n" in value


def prepare_requests(requests: RequestsInput, model: str | None, stack: ExitStack) -> FileInput:
    """The upload for ``submit``: the user's file itself when nothing changes, else a rewritten temporary file.

    Lines are rewritten one at a time into a file on disk, so a large input is never held twice in memory.

    Args:
        requests: JSONL text (str or bytes), a path to an existing JSONL file, or request dicts. A str is JSONL
            when it starts with ``{`` or holds a newline (or is empty), else a path.
        model: Model for lines that lack one (``body.model``, ``params.model`` or top-level ``model``).
        stack: Closes the temporary file when the caller is done.

    Returns:
        A path, or ``(filename, file object)`` positioned at its start.

    Raises:
        FileNotFoundError: ``requests`` is a string that is neither JSONL nor an existing file.
    """
    lines: Iterable[bytes]
    if isinstance(requests, bytes):
        lines, name = io.BytesIO(requests), DEFAULT_REQUESTS_NAME
    elif isinstance(requests, str | os.PathLike):
        if isinstance(requests, str) and is_jsonl_text(requests):
            lines, name = str_lines(requests), DEFAULT_REQUESTS_NAME
        else:
            path = Path(requests)
            if not path.is_file():
                raise FileNotFoundError(f"requests is neither JSONL text nor an existing file: {str(requests)[:200]!r}")
            if model is None:
                return path
            lines, name = stack.enter_context(path.open("rb")), path.name
    else:
        lines = (json.dumps(dict(obj), ensure_ascii=False).encode() + b"\n" for obj in requests)
        name = DEFAULT_REQUESTS_NAME
    out = stack.enter_context(tempfile.TemporaryFile())
    for number, raw in enumerate(lines, start=1):
        out.write(rewrite_line(raw, model, number == 1) if model else raw)
    out.seek(0)
    return (name, out)


def failed_custom_ids(error_lines: Iterable[str]) -> set[str]:
    """The custom_ids of an error file's lines."""
    ids: set[str] = set()
    for line in error_lines:
        obj = _json_object(line)
        if obj is not None and isinstance(obj.get("custom_id"), str):
            ids.add(obj["custom_id"])
    return ids


def select_line(line: str, number: int, failed: set[str]) -> bytes | None:
    """The input line to resubmit if its custom_id failed, else None.

    Args:
        line: Line ``number`` (1-based, blank lines counted, as the server numbers them) of the input file.
        number: Its line number.
        failed: The custom_ids of the error file.

    Returns:
        The line with a newline; a line without custom_id gets its implicit ``request-<line>`` written in, so the
        retry's results keep the original ids.
    """
    obj = _json_object(line.removeprefix("\ufeff") if number == 1 else line)
    if obj is None:
        return None
    custom_id = obj.get("custom_id") or f"request-{number}"
    if custom_id not in failed:
        return None
    if "custom_id" in obj:
        return line.removeprefix("\ufeff").encode() + b"\n"
    return json.dumps({"custom_id": custom_id, **obj}, ensure_ascii=False).encode() + b"\n"


def _json_object(line: str) -> dict[str, Any] | None:
    if not line.strip():
        return None
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def batch_path(batch_id: str, suffix: str = "") -> str:
    return f"/batches/{quote(batch_id, safe='')}{suffix}"


def file_path(file_id: str, suffix: str = "") -> str:
    return f"/files/{quote(file_id, safe='')}{suffix}"


def json_line(line: str) -> dict[str, Any] | None:
    return json.loads(line) if line.strip() else None


def create_body(
    input_file_id: str,
    endpoint: str,
    completion_window: str,
    metadata: Mapping[str, str] | None,
    timeout_minutes: int | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "input_file_id": input_file_id,
        "endpoint": endpoint,
        "completion_window": completion_window,
    }
    if metadata is not None:
        body["metadata"] = dict(metadata)
    if timeout_minutes is not None:
        body["timeout_minutes"] = timeout_minutes
    return body


def to_timeout(timeout: float | httpx.Timeout) -> httpx.Timeout:
    if isinstance(timeout, httpx.Timeout):
        return timeout
    return httpx.Timeout(timeout, connect=min(timeout, DEFAULT_CONNECT_TIMEOUT_S))


# --- pages ------------------------------------------------------------------------------------------------------


class SyncPage(Generic[T]):
    """One page of a list (``data``, ``has_more``, ``first_id``, ``last_id``); iterating it walks every page.

    Args:
        data: The items of this page.
        has_more: Whether the server holds more items after ``last_id``.
        first_id: Id of the first item, if any.
        last_id: Id of the last item, if any.
        fetch: Fetches the page after a given id (None: this page is the last).
    """

    def __init__(
        self,
        data: list[T],
        *,
        has_more: bool,
        first_id: str | None = None,
        last_id: str | None = None,
        fetch: Callable[[str], SyncPage[T]] | None = None,
    ) -> None:
        self.data = data
        self.has_more = has_more
        self.first_id = first_id
        self.last_id = last_id
        self._fetch = fetch

    def has_next_page(self) -> bool:
        return self.has_more and bool(self.data) and self._fetch is not None

    def get_next_page(self) -> SyncPage[T]:
        """Fetch the next page.

        Raises:
            StopIteration: There is no next page.
        """
        if not self.has_next_page() or self._fetch is None:
            raise StopIteration("no next page")
        return self._fetch(self.last_id or _item_id(self.data[-1]))

    def auto_paging_iter(self) -> Iterator[T]:
        """Every item of this page and of the pages after it, fetched as needed."""
        page = self
        while True:
            yield from page.data
            if not page.has_next_page():
                return
            page = page.get_next_page()

    def __iter__(self) -> Iterator[T]:
        return self.auto_paging_iter()

    def __repr__(self) -> str:
        return f"SyncPage(data=<{len(self.data)} items>, has_more={self.has_more}, last_id={self.last_id!r})"


class AsyncPage(Generic[T]):
    """The asyncio twin of :class:`SyncPage`: ``async for`` walks every page; ``fetch`` is awaited."""

    def __init__(
        self,
        data: list[T],
        *,
        has_more: bool,
        first_id: str | None = None,
        last_id: str | None = None,
        fetch: Callable[[str], Awaitable[AsyncPage[T]]] | None = None,
    ) -> None:
        self.data = data
        self.has_more = has_more
        self.first_id = first_id
        self.last_id = last_id
        self._fetch = fetch

    def has_next_page(self) -> bool:
        return self.has_more and bool(self.data) and self._fetch is not None

    async def get_next_page(self) -> AsyncPage[T]:
        """Fetch the next page.

        Raises:
            StopAsyncIteration: There is no next page.
        """
        if not self.has_next_page() or self._fetch is None:
            raise StopAsyncIteration("no next page")
        return await self._fetch(self.last_id or _item_id(self.data[-1]))

    async def auto_paging_iter(self) -> AsyncIterator[T]:
        """Every item of this page and of the pages after it, fetched as needed."""
        page = self
        while True:
            for item in page.data:
                yield item
            if not page.has_next_page():
                return
            page = await page.get_next_page()

    def __aiter__(self) -> AsyncIterator[T]:
        return self.auto_paging_iter()


def _item_id(item: object) -> str:
    item_id = getattr(item, "id", None)
    if not isinstance(item_id, str):
        raise TypeError(f"cannot page after an item without an id: {item!r}")
    return item_id
