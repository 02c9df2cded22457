"""How long a batch's output files live: the batch's ``output_expires_after`` or the server default.

The request parsing (and its 400s) is in ``batchq.api.expiry``; this is what the pipeline needs at finalize.
"""

from __future__ import annotations

from typing import Any

#: The longest expiry accepted (OpenAI's: 30 days).
MAX_EXPIRES_AFTER_S = 30 * 24 * 3600


def output_expiry_field(seconds: int | None) -> dict[str, Any] | None:
    """The batch record's ``output_expires_after`` (None: the server default applies at finalize)."""
    return None if seconds is None else {"anchor": "created_at", "seconds": seconds}


def output_expiry_s(stored: dict[str, Any] | None, default_s: int) -> int:
    """Seconds an output file of the batch lives: the batch's own ``output_expires_after``, else ``default_s``."""
    seconds = (stored or {}).get("seconds")
    return int(seconds) if isinstance(seconds, int | float) and seconds > 0 else default_s
