"""Object storage behind one small interface: a local folder, or an S3-compatible bucket.

Everything is streamed: writers take chunks (S3 writes go out as a multipart upload, 8 MiB a part), readers
yield chunks, and ``read_range`` fetches one input line without reading the rest of the file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import urlparse

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

#: Size of each S3 multipart part (S3's minimum is 5 MiB for every part but the last).
DEFAULT_PART_SIZE_B = 8 * 1024 * 1024
#: Chunk size of streamed reads.
DEFAULT_READ_CHUNK_B = 1024 * 1024


class StoreError(Exception):
    """The object store failed: unreachable, timed out, denied, out of space (every backend error ends here)."""


class ObjectNotFoundError(StoreError):
    pass


@contextlib.contextmanager
def _local_errors(key: str, *, reading: bool) -> Iterator[None]:
    """OSError of a local store as StoreError; a missing file while reading is ObjectNotFoundError."""
    try:
        yield
    except StoreError:
        raise
    except FileNotFoundError as exc:
        if reading:
            raise ObjectNotFoundError(key) from exc
        raise StoreError(f"local store: {exc.strerror or exc} ({key})") from exc
    except OSError as exc:
        raise StoreError(f"local store: {exc.strerror or type(exc).__name__} ({key})") from exc


@contextlib.contextmanager
def _s3_errors(key: str) -> Iterator[None]:
    """Every botocore failure as StoreError: timeouts and refused connections (BotoCoreError), S3 error codes."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except StoreError:
        raise
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code in {"NoSuchKey", "404", "NotFound"}:
            raise ObjectNotFoundError(key) from exc
        raise StoreError(f"S3 answered {code or 'an error'} ({key})") from exc
    except (BotoCoreError, OSError) as exc:
        raise StoreError(f"S3 unreachable: {type(exc).__name__} ({key})") from exc


class Writer(Protocol):
    """Accepts chunks; the object appears only when the ``with`` block exits cleanly."""

    bytes_written: int

    def write(self, data: bytes) -> None: ...

    def __enter__(self) -> Writer: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class ObjectStore(Protocol):
    def writer(self, key: str) -> Writer: ...

    def iter_chunks(self, key: str, chunk_size: int = DEFAULT_READ_CHUNK_B) -> Iterator[bytes]: ...

    def read_range(self, key: str, start: int, length: int) -> bytes: ...

    def size(self, key: str) -> int: ...

    def delete(self, key: str) -> None: ...

    def ping(self) -> None: ...


# --- local folder --------------------------------------------------------------------------------


class _LocalWriter:
    """Writes to a temporary file beside the target and renames it into place: readers never see half a file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.bytes_written = 0
        self._tmp: Any = None

    def __enter__(self) -> _LocalWriter:
        with _local_errors(self.path.name, reading=False):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._tmp = tempfile.NamedTemporaryFile(dir=self.path.parent, prefix=".partial-", delete=False)  # noqa: SIM115
        return self

    def write(self, data: bytes) -> None:
        with _local_errors(self.path.name, reading=False):
            self._tmp.write(data)
        self.bytes_written += len(data)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            try:
                with _local_errors(self.path.name, reading=False):
                    self._tmp.close()  # flushes: a full disk shows here
                    os.replace(self._tmp.name, self.path)
                return
            except StoreError:
                with contextlib.suppress(OSError):
                    os.unlink(self._tmp.name)
                raise
        with contextlib.suppress(OSError):
            self._tmp.close()
        with contextlib.suppress(OSError):
            os.unlink(self._tmp.name)


class LocalStore:
    """A folder on this machine (or a shared mount when workers run on several machines)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise StoreError(f"key {key!r} escapes the store root")
        return path

    def writer(self, key: str) -> Writer:
        return _LocalWriter(self._path(key))

    def iter_chunks(self, key: str, chunk_size: int = DEFAULT_READ_CHUNK_B) -> Iterator[bytes]:
        with _local_errors(key, reading=True):
            f = open(self._path(key), "rb")  # noqa: SIM115 - closed by the generator
        with f:
            while True:
                with _local_errors(key, reading=True):
                    chunk = f.read(chunk_size)
                if not chunk:
                    return
                yield chunk

    def read_range(self, key: str, start: int, length: int) -> bytes:
        with _local_errors(key, reading=True), open(self._path(key), "rb") as f:
            f.seek(start)
            return f.read(length)

    def size(self, key: str) -> int:
        with _local_errors(key, reading=True):
            return self._path(key).stat().st_size

    def delete(self, key: str) -> None:
        with _local_errors(key, reading=False), contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def ping(self) -> None:
        with _local_errors("", reading=False):
            self.root.mkdir(parents=True, exist_ok=True)
        if not os.access(self.root, os.W_OK):
            raise StoreError(f"{self.root} is not writable")

    def clear(self) -> None:
        """Remove everything (tests only)."""
        shutil.rmtree(self.root, ignore_errors=True)


# --- S3 ----------------------------------------------------------------------------------------


class _S3Writer:
    """Buffers one part at a time and sends it as a multipart upload part; small objects use one PUT."""

    def __init__(self, client: S3Client, bucket: str, key: str, part_size: int) -> None:
        self.client = client
        self.bucket = bucket
        self.key = key
        self.part_size = part_size
        self.bytes_written = 0
        self._buf = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []

    def __enter__(self) -> _S3Writer:
        return self

    def write(self, data: bytes) -> None:
        self._buf += data
        self.bytes_written += len(data)
        while len(self._buf) >= self.part_size:
            part = bytes(self._buf[: self.part_size])
            del self._buf[: self.part_size]
            self._send_part(part)

    def _send_part(self, part: bytes) -> None:
        with _s3_errors(self.key):
            self._send_part_unmapped(part)

    def _send_part_unmapped(self, part: bytes) -> None:
        if self._upload_id is None:
            self._upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=self.key)["UploadId"]
        number = len(self._parts) + 1
        etag = self.client.upload_part(
            Bucket=self.bucket, Key=self.key, UploadId=self._upload_id, PartNumber=number, Body=part
        )["ETag"]
        self._parts.append({"ETag": etag, "PartNumber": number})

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            if self._upload_id is not None:
                with contextlib.suppress(Exception):
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id)
            return
        try:
            with _s3_errors(self.key):
                if self._upload_id is None:
                    self.client.put_object(Bucket=self.bucket, Key=self.key, Body=bytes(self._buf))
                    return
                if self._buf:
                    self._send_part_unmapped(bytes(self._buf))
                    self._buf.clear()
                self.client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=self.key,
                    UploadId=self._upload_id,
                    MultipartUpload={"Parts": self._parts},  # type: ignore[typeddict-item]
                )
        except StoreError as exc:
            if self._upload_id is not None:  # do not leave the parts billed in the bucket
                with contextlib.suppress(Exception):
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id)
            raise exc


class S3Store:
    """An S3-compatible bucket (AWS, MinIO, Ceph, moto), under an optional key prefix."""

    def __init__(self, bucket: str, prefix: str = "", *, client: S3Client, part_size: int = DEFAULT_PART_SIZE_B):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client
        self.part_size = part_size

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def writer(self, key: str) -> Writer:
        return _S3Writer(self.client, self.bucket, self._key(key), self.part_size)

    def _get(self, key: str, **kwargs: Any) -> Any:
        with _s3_errors(key):
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key), **kwargs)

    def iter_chunks(self, key: str, chunk_size: int = DEFAULT_READ_CHUNK_B) -> Iterator[bytes]:
        body = self._get(key)["Body"]
        try:
            with _s3_errors(key):  # a read timeout or a dropped connection midway
                yield from body.iter_chunks(chunk_size)
        finally:
            body.close()

    def read_range(self, key: str, start: int, length: int) -> bytes:
        if length <= 0:
            return b""
        body = self._get(key, Range=f"bytes={start}-{start + length - 1}")["Body"]
        try:
            with _s3_errors(key):
                return bytes(body.read())
        finally:
            body.close()

    def size(self, key: str) -> int:
        with _s3_errors(key):
            return int(self.client.head_object(Bucket=self.bucket, Key=self._key(key))["ContentLength"])

    def delete(self, key: str) -> None:
        with _s3_errors(key):
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def ping(self) -> None:
        with _s3_errors(""):
            self.client.head_bucket(Bucket=self.bucket)


ChecksumMode = Literal["when_required", "when_supported"]


def make_s3_client(
    endpoint_url: str | None,
    checksum_mode: ChecksumMode = "when_required",
    timeout_s: float = 60.0,
    max_attempts: int = 5,
) -> S3Client:
    """A boto3 S3 client with retries and the checksum mode S3-compatible stores accept (boto3#4392).

    ``timeout_s`` bounds each read (connect: at most 10 s); a stalled store costs about
    ``max_attempts`` times that before StoreError, so the API passes a few seconds and 2 attempts.
    """
    import boto3
    from botocore.config import Config

    config = Config(
        request_checksum_calculation=checksum_mode,
        response_checksum_validation=checksum_mode,
        retries={"max_attempts": max_attempts, "mode": "standard"},
        max_pool_connections=64,
        connect_timeout=min(timeout_s, 10.0),
        read_timeout=timeout_s,
        s3={"addressing_style": "path"} if endpoint_url else {},
    )
    return boto3.client("s3", endpoint_url=endpoint_url, config=config)


def store_from_url(
    url: str,
    *,
    s3_endpoint_url: str | None = None,
    checksum_mode: ChecksumMode = "when_required",
    s3_timeout_s: float = 60.0,
    s3_max_attempts: int = 5,
) -> ObjectStore:
    """Build the store named by ``BATCHQ_STORAGE_URL``: ``file://path`` or ``s3://bucket/prefix``."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return LocalStore(parsed.netloc + parsed.path if parsed.netloc else parsed.path)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ValueError(f"storage URL {url!r} names no bucket")
        return S3Store(
            parsed.netloc,
            parsed.path,
            client=make_s3_client(s3_endpoint_url, checksum_mode, s3_timeout_s, s3_max_attempts),
        )
    if parsed.scheme == "":
        return LocalStore(url)
    raise ValueError(f"unsupported storage URL {url!r}: use file://<folder> or s3://<bucket>/<prefix>")


def new_object_key(kind: str) -> str:
    return f"{kind}/{uuid.uuid4().hex}"
