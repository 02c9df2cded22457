"""When a failed delivery is tried again.

Standard Webhooks' example schedule, tightened at the start: the first three retries come within a minute
(2 s, 8 s, 30 s: 40 s in all, 48 s at most with jitter), then 5 min, 30 min, 2 h, 5 h, 10 h and every 10 h
after that, until the retry period (``BATCHQ_WEBHOOK_RETRY_PERIOD_S``, 24 h) since the first attempt has passed.
"""

from __future__ import annotations

import random

#: Delay before retry n (1-based); past the end, the last one repeats.
RETRY_DELAYS_S: tuple[float, ...] = (2, 8, 30, 300, 1800, 7200, 18000, 36000)
#: Each delay is multiplied by a factor in [1 - JITTER, 1 + JITTER], so receivers are not hit in lockstep.
JITTER = 0.2
#: The longest Retry-After honoured (a receiver cannot park a delivery for days).
MAX_RETRY_AFTER_S = 3600.0


def retry_delay(failures: int, *, retry_after_s: float | None = None, rng: random.Random | None = None) -> float:
    """Seconds to wait after the ``failures``-th failed attempt (1-based), jittered; a Retry-After may lengthen it."""
    base = RETRY_DELAYS_S[min(max(failures, 1), len(RETRY_DELAYS_S)) - 1]
    delay = base * (rng or random).uniform(1 - JITTER, 1 + JITTER)
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, MAX_RETRY_AFTER_S))
    return delay
