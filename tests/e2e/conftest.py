"""Fixtures that build a whole stack (API + workers) against the session's Redis, S3 server and simulator."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis as redis_lib

from tests.stack import Stack

StackFactory = Callable[..., Stack]


@pytest.fixture
def make_stack(
    redis: redis_lib.Redis, redis_url: str, log_dir: Path, tmp_path: Path, sim: str, moto_endpoint: str
) -> Iterator[StackFactory]:
    """Build a Stack with BATCHQ_* settings for this test; extra settings override the defaults."""
    stacks: list[Stack] = []

    def build(*, storage: str = "local", s3_bucket: str | None = None, **settings: str) -> Stack:
        env = {
            "BATCHQ_REDIS_URL": redis_url,
            "BATCHQ_LOCAL_MODE": "true",  # tests without api_keys= run keyless on loopback; keys override it
            "BATCHQ_UPSTREAM_URL": sim,
            "BATCHQ_STORAGE_URL": f"file://{tmp_path / 'store'}" if storage == "local" else f"s3://{s3_bucket}/data",
            "BATCHQ_S3_ENDPOINT_URL": moto_endpoint,
            "BATCHQ_SWEEP_INTERVAL_S": "1",
            "BATCHQ_RETRY_BASE_DELAY_S": "0.05",
            "BATCHQ_RETRY_MAX_DELAY_S": "0.5",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        env.update({f"BATCHQ_{k.upper()}": v for k, v in settings.items()})
        stack = Stack(log_dir, env)
        stacks.append(stack)
        return stack

    yield build
    for stack in stacks:
        stack.close()
