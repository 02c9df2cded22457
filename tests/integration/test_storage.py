"""The object store, run against every backend: a local folder and moto's S3 server over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from batchq.storage import LocalStore, ObjectNotFoundError, ObjectStore, S3Store, make_s3_client, store_from_url


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    if request.param == "local":
        yield LocalStore(tmp_path / "store")
    else:
        endpoint = request.getfixturevalue("moto_endpoint")
        bucket = request.getfixturevalue("s3_bucket")
        # 5 MiB parts (S3's minimum) so a 12 MiB object goes out as a three-part multipart upload
        yield S3Store(bucket, "prefix", client=make_s3_client(endpoint), part_size=5 * 1024 * 1024)


def test_write_read_range_delete(store: ObjectStore) -> None:
    # Given: an object written in small chunks
    with store.writer("files/a") as w:
        for i in range(100):
            w.write(f"line {i}\n".encode())
    data = b"".join(f"line {i}\n".encode() for i in range(100))
    # Then: it reads back whole, by chunks, and by byte range; size is right
    assert b"".join(store.iter_chunks("files/a", chunk_size=7)) == data
    assert store.read_range("files/a", 7, 7) == b"line 1\n"
    assert store.size("files/a") == len(data)
    store.delete("files/a")
    with pytest.raises(ObjectNotFoundError):
        list(store.iter_chunks("files/a"))


def test_large_object_is_streamed_in_parts(store: ObjectStore) -> None:
    chunk = bytes(range(256)) * 4096  # 1 MiB
    with store.writer("big") as w:
        for _ in range(12):
            w.write(chunk)
    assert store.size("big") == 12 * len(chunk)
    assert store.read_range("big", 11 * len(chunk) + 5, 3) == chunk[5:8]
    total = sum(len(c) for c in store.iter_chunks("big"))
    assert total == 12 * len(chunk)


def test_failed_write_leaves_nothing(store: ObjectStore) -> None:
    # Given: a writer whose block raises midway (an upload refused for size, say)
    with pytest.raises(RuntimeError), store.writer("half") as w:
        w.write(b"x" * (6 * 1024 * 1024))
        raise RuntimeError("client went away")
    # Then: no object exists
    with pytest.raises(ObjectNotFoundError):
        store.size("half")


def test_s3_multipart_upload_really_used(moto_endpoint: str, s3_bucket: str) -> None:
    store = S3Store(s3_bucket, "", client=make_s3_client(moto_endpoint), part_size=5 * 1024 * 1024)
    with store.writer("mp") as w:
        w.write(b"a" * (11 * 1024 * 1024))
    head = boto3.client("s3", endpoint_url=moto_endpoint).head_object(Bucket=s3_bucket, Key="mp")
    assert head["ETag"].strip('"').endswith("-3")  # S3 ETags of multipart objects end in -<parts>


def test_store_from_url(tmp_path: Path) -> None:
    assert isinstance(store_from_url(f"file://{tmp_path}"), LocalStore)
    s3 = store_from_url("s3://bucket/some/prefix", s3_endpoint_url="http://127.0.0.1:1")
    assert isinstance(s3, S3Store) and s3.bucket == "bucket" and s3.prefix == "some/prefix"
    with pytest.raises(ValueError):
        store_from_url("ftp://x")
