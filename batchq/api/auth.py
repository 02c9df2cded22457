"""Who is calling: Bearer keys compared in constant time, or the explicit loopback-only local mode."""

from __future__ import annotations

import hmac
import ipaddress
import logging

from batchq.api.errors import AuthProblem
from batchq.config import Settings

log = logging.getLogger("batchq.api")

#: Account of every caller in local mode.
LOCAL_ACCOUNT = "local"


class KeyRing:
    """The configured keys; an empty ring means local mode (which ``from_settings`` allows only when asked)."""

    def __init__(self, keys: dict[str, str]) -> None:
        self._keys = [(key.encode(), account) for key, account in keys.items()]

    @property
    def local_mode(self) -> bool:
        return not self._keys

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        """The ring for ``BATCHQ_API_KEYS``; local mode only with ``BATCHQ_LOCAL_MODE=true``.

        Raises:
            ValueError: the keys are malformed, or there are none and local mode was not asked for.
        """
        ring = cls(settings.api_key_map())
        if ring.local_mode and not settings.local_mode:
            raise ValueError(
                "BATCHQ_API_KEYS is unset. Set it (key:account[,key:account...]), or set BATCHQ_LOCAL_MODE=true "
                "to accept loopback clients without a key (development only)."
            )
        if ring.local_mode:
            log.warning(
                "LOCAL MODE: no API keys; every loopback client is trusted as account %r. Never run it behind a "
                "proxy or sidecar on this host (every client would look loopback). Set BATCHQ_API_KEYS instead.",
                LOCAL_ACCOUNT,
            )
        elif settings.local_mode:
            log.warning("BATCHQ_LOCAL_MODE is ignored: BATCHQ_API_KEYS is set.")
        return ring

    def account_for(self, token: str) -> str | None:
        """The account of ``token``; every key is compared (in constant time) so timing tells nothing."""
        given = token.encode()
        found: str | None = None
        for key, account in self._keys:
            if hmac.compare_digest(key, given):
                found = account
        return found

    def authenticate(self, authorization: str | None, client_host: str) -> str:
        """The caller's account from its ``Authorization`` header (or its address in local mode).

        Raises:
            AuthProblem: no key, a malformed header, an unknown key, or a non-loopback client in local mode.
        """
        if self.local_mode:
            if not _is_loopback(client_host):
                raise AuthProblem(
                    "This server runs in local mode (no BATCHQ_API_KEYS) and only accepts loopback clients.",
                    code="invalid_api_key",
                )
            return LOCAL_ACCOUNT
        if not authorization:
            raise AuthProblem(
                "You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'.", code="missing_api_key"
            )
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthProblem(
                "Malformed Authorization header: expected 'Bearer YOUR_KEY'.", code="invalid_authorization_header"
            )
        account = self.account_for(token)
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


class MetricsGuard:
    """Who may read ``/metrics``: with ``BATCHQ_METRICS_TOKEN`` only that token (tenants' keys are refused: the
    figures name every account); without it, loopback clients only (a Prometheus or sidecar on the same host)."""

    def __init__(self, token: str | None) -> None:
        self._token = token.encode() if token else None

    def check(self, authorization: str | None, client_host: str) -> None:
        """
        Raises:
            AuthProblem: no token, a wrong one (a tenant's key included), or a remote client while no token is set.
        """
        if self._token is None:
            if not _is_loopback(client_host):
                raise AuthProblem(
                    "/metrics answers loopback clients only; set BATCHQ_METRICS_TOKEN to let a scraper in with "
                    "'Authorization: Bearer <token>'.",
                    code="invalid_api_key",
                )
            return
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self._token):
            raise AuthProblem(
                "/metrics needs 'Authorization: Bearer <BATCHQ_METRICS_TOKEN>'.",
                code="missing_api_key" if not authorization else "invalid_api_key",
            )
