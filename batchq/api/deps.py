"""What route handlers depend on: the per-app services and the caller's account."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Annotated

import redis
from celery import Celery
from fastapi import Depends, Request

from batchq.api.errors import AuthProblem
from batchq.config import Settings
from batchq.files import FileRegistry
from batchq.state import BatchState
from batchq.storage import ObjectStore

#: Account of every caller in local mode (no BATCHQ_API_KEYS).
LOCAL_ACCOUNT = "local"


@dataclass
class Services:
    settings: Settings
    redis: redis.Redis[bytes]
    store: ObjectStore
    state: BatchState
    files: FileRegistry
    producer: Celery
    api_keys: dict[str, str]


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_account(request: Request, services: ServicesDep) -> str:
    """The account of the Bearer key; in local mode, ``local`` for loopback callers and 401 for others."""
    header = request.headers.get("authorization")
    if not services.api_keys:
        host = request.client.host if request.client else ""
        if not _is_loopback(host):
            raise AuthProblem(
                "This server runs in local mode (BATCHQ_API_KEYS unset) and only accepts loopback clients.",
                code="invalid_api_key",
            )
        return LOCAL_ACCOUNT
    if not header:
        raise AuthProblem(
            "You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'.", code="missing_api_key"
        )
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthProblem(
            "Malformed Authorization header: expected 'Bearer YOUR_KEY'.", code="invalid_authorization_header"
        )
    account = services.api_keys.get(token)
    if account is None:
        raise AuthProblem("Incorrect API key provided.", code="invalid_api_key")
    return account


def _is_loopback(host: str) -> bool:
    if host in ("testclient", "localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


AccountDep = Annotated[str, Depends(get_account)]
