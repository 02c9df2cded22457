"""Suite-wide fixtures: a real redis-server, moto's S3 server and the upstream simulator, started here.

Unit tests need none of them; the fixtures start lazily, once per session, on free loopback ports.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest
import redis as redis_lib

from tests.servers import Proc, batchq_cmd, free_port, start_moto, start_redis, wait_for

ROOT = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark tests by folder: tests/integration -> integration, tests/e2e -> e2e, tests/bench -> bench."""
    for item in items:
        parts = Path(str(item.fspath)).relative_to(ROOT).parts
        if parts and parts[0] in {"integration", "e2e", "bench"}:
            item.add_marker(getattr(pytest.mark, parts[0]))


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory, log_dir: Path) -> Iterator[int]:
    port = free_port()
    proc = start_redis(tmp_path_factory.mktemp("redis"), port, log_dir)
    yield port
    proc.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: int) -> str:
    return f"redis://127.0.0.1:{redis_server}/0"


@pytest.fixture
def redis(redis_url: str) -> Iterator[redis_lib.Redis]:
    """A client on a flushed database; flushed again afterwards."""
    client = redis_lib.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture(scope="session")
def moto_endpoint(log_dir: Path) -> Iterator[str]:
    port = free_port()
    proc = start_moto(port, log_dir)
    yield f"http://127.0.0.1:{port}"
    proc.stop()


@pytest.fixture(scope="session", autouse=True)
def _aws_env(monkeypatch_session: pytest.MonkeyPatch) -> None:
    """moto accepts any credentials; boto3 only needs some to sign with."""
    monkeypatch_session.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch_session.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch_session.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture(scope="session")
def monkeypatch_session() -> Iterator[pytest.MonkeyPatch]:
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.fixture
def s3_bucket(moto_endpoint: str) -> str:
    """A fresh bucket on moto's server; returns its name."""
    name = f"batchq-test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def sim_url(log_dir: Path) -> Iterator[str]:
    """Base URL (with /v1) of a `batchq sim` process with no latency and no faults."""
    port = free_port()
    proc = Proc(f"sim-{port}", batchq_cmd("sim", "--port", str(port), "--latency-ms", "0"), log_dir).start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(f"{base}/sim/stats").status_code == 200, 30, "simulator")
    except TimeoutError:
        proc.stop()
        raise RuntimeError(f"simulator did not start:\n{proc.log_tail()}") from None
    yield f"{base}/v1"
    proc.stop()


@pytest.fixture
def sim(sim_url: str) -> Iterator[str]:
    """The session simulator, reset (counters and faults) before the test."""
    root = sim_url.removesuffix("/v1")
    httpx.post(f"{root}/sim/reset").raise_for_status()
    yield sim_url
