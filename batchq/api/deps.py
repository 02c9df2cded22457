"""What route handlers depend on: the per-app services and the caller's account."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import redis
from fastapi import Depends, Request

from batchq.api.auth import KeyRing, MetricsGuard
from batchq.api.idempotency import IdempotencyKeys
from batchq.broker.producer import TaskSender
from batchq.config import Settings
from batchq.state import BatchState
from batchq.state.files import FileRegistry
from batchq.storage import ObjectStore


@dataclass
class Services:
    settings: Settings
    redis: redis.Redis[bytes]
    store: ObjectStore
    state: BatchState
    files: FileRegistry
    tasks: TaskSender
    keys: KeyRing
    idempotency: IdempotencyKeys
    metrics_guard: MetricsGuard


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_account(request: Request, services: ServicesDep) -> str:
    """The account of the Bearer key (async: pure CPU, so it takes no threadpool slot)."""
    host = request.client.host if request.client else ""
    return services.keys.authenticate(request.headers.get("authorization"), host)


AccountDep = Annotated[str, Depends(get_account)]
