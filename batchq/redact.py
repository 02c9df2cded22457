"""Secrets out of every line we write: error lines, API answers and log records.

The upstream's own error messages are copied into users' error lines, and OpenAI's 401 message quotes the
key's first and last characters; so we blank the configured secrets and anything that looks like a token.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from typing import Any

#: What replaces a secret.
REDACTED = "[redacted]"

#: ``Bearer <token>``, ``sk-...`` keys (also masked ones like ``sk-proj-****abcd``) and masked tokens
#: (``abcd****wxyz``) that quote parts of a key.
_TOKEN_PATTERNS = re.compile(
    r"(?i)\bbearer\s+[^\s\"',;]+"
    r"|\bsk-[A-Za-z0-9*_\-]{4,}"
    r"|[^\s\"',;:]*\*{4,}[^\s\"',;:.]*"
)

_lock = threading.Lock()
_secrets: tuple[str, ...] = ()


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with the given secrets, the registered ones and token-looking strings replaced."""
    for secret in (*secrets, *_secrets):
        if secret and len(secret) >= 4 and secret in text:
            text = text.replace(secret, REDACTED)
    return _TOKEN_PATTERNS.sub(REDACTED, text)


def redact_json(value: Any, secrets: Iterable[str | None] = ()) -> Any:
    """A parsed JSON value with every string redacted (keys included)."""
    keep = tuple(secrets)
    if isinstance(value, str):
        return redact(value, keep)
    if isinstance(value, dict):
        return {redact(str(k), keep): redact_json(v, keep) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_json(v, keep) for v in value]
    return value


def register_secrets(*secrets: str | None) -> None:
    """Secrets (the upstream key, the API keys) that ``redact`` and the log redaction always blank."""
    global _secrets
    with _lock:
        _secrets = tuple(sorted({*_secrets, *(s for s in secrets if s and len(s) >= 4)}, key=len, reverse=True))


def install_log_redaction(*secrets: str | None) -> None:
    """Redact every log record of the process, whatever logger or handler it goes through (idempotent).

    A record factory sees each record once at creation, before any handler or formatter: the message is
    rendered and redacted there, and so is the traceback text of an exception.
    """
    register_secrets(*secrets)
    current = logging.getLogRecordFactory()
    if getattr(current, "batchq_redacting", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = current(*args, **kwargs)
        try:
            record.msg, record.args = redact(record.getMessage()), None
            if record.exc_info and record.exc_info[0] is not None:
                record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        except Exception:  # noqa: BLE001 - a record that cannot be rendered is left to logging's own handling
            pass
        return record

    factory.batchq_redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
