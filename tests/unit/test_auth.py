"""API keys: parsed strictly, compared in constant time, local mode only when asked for."""

from __future__ import annotations

import pytest

from batchq.api.auth import LOCAL_ACCOUNT, KeyRing
from batchq.api.errors import AuthProblem
from batchq.config import Settings


def ring(api_keys: str | None, local_mode: bool = False) -> KeyRing:
    return KeyRing.from_settings(Settings(api_keys=api_keys, local_mode=local_mode))


def test_keys_map_to_accounts() -> None:
    keys = ring(" ka:alice , kb:bob ")
    assert keys.authenticate("Bearer ka", "10.0.0.1") == "alice"
    assert keys.authenticate("bearer  kb", "10.0.0.1") == "bob"
    assert keys.account_for("k") is None and keys.account_for("ka2") is None


@pytest.mark.parametrize(
    ("header", "code"),
    [(None, "missing_api_key"), ("Token ka", "invalid_authorization_header"), ("Bearer nope", "invalid_api_key")],
)
def test_bad_credentials_are_401(header: str | None, code: str) -> None:
    with pytest.raises(AuthProblem) as err:
        ring("ka:alice").authenticate(header, "127.0.0.1")  # loopback does not matter once keys exist
    assert err.value.code == code


def test_local_mode_is_explicit_and_loopback_only() -> None:
    with pytest.raises(ValueError, match="BATCHQ_LOCAL_MODE"):
        ring(None)
    local = ring(None, local_mode=True)
    assert local.authenticate(None, "127.0.0.1") == LOCAL_ACCOUNT
    assert local.authenticate(None, "::1") == LOCAL_ACCOUNT
    with pytest.raises(AuthProblem):
        local.authenticate(None, "192.168.1.10")


@pytest.mark.parametrize("bad", [" ", ",", "ka:alice,ka:bob", ":alice", "ka:", "ka"])
def test_malformed_keys_stop_the_start(bad: str) -> None:
    with pytest.raises(ValueError, match="BATCHQ_API_KEYS"):
        ring(bad, local_mode=True)
