"""The files the client uploads: request files (the model filled in where lines lack one) and the retry of failures.

Request files are prepared line by line into a temporary file on disk, so a large input is never held twice in memory.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

from batchq.client.retrying import FilesFactory

#: What ``files.create(file=...)`` accepts: a path, bytes, a binary file object, or ``(filename, bytes | file)``.
FileInput = str | os.PathLike[str] | bytes | IO[bytes] | tuple[str, bytes | IO[bytes]]
#: What ``submit`` accepts: JSONL text (str or bytes), a path to a JSONL file, or the request dicts themselves.
RequestsInput = str | bytes | os.PathLike[str] | Iterable[Mapping[str, Any]]

JSONL_CONTENT_TYPE = "application/jsonl"
#: Filename of an upload given as a nameless file object.
DEFAULT_UPLOAD_NAME = "upload.jsonl"
#: Filename of requests given as text or dicts.
DEFAULT_REQUESTS_NAME = "requests.jsonl"


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


class FailedLines:
    """The input lines whose custom_id an error file names, gathered into a file for the retry batch.

    Feed every error line to :meth:`note_error` first, then every input line, in order, to :meth:`offer`.

    Args:
        out: Receives the chosen lines (a temporary file).
    """

    def __init__(self, out: IO[bytes]) -> None:
        self.failed: set[str] = set()
        self.selected = 0
        self._out = out
        self._number = 0

    def note_error(self, line: str) -> None:
        self.failed |= failed_custom_ids((line,))

    def offer(self, line: str) -> None:
        """The next input line (blank lines count, as the server numbers lines)."""
        self._number += 1
        if (chosen := select_line(line, self._number, self.failed)) is not None:
            self._out.write(chosen)
            self.selected += 1
