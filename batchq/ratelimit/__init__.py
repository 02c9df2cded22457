"""One route's global rate limit (requests, tokens, in-flight, cooldown), shared by every worker through Redis.

A route is one upstream + model. Every worker on every machine runs the same Lua scripts (``*.lua`` next to this
file, each opening with its KEYS/ARGV contract) on the same keys, with Redis's own clock, so the limit holds no
matter how many workers run or how their clocks drift.

**Reservations, not polling.** :meth:`RateLimiter.acquire` makes one round trip that reserves the caller's send
time and returns it (:attr:`Grant.send_at`); the caller sleeps exactly until then and never asks again.
Reservations are served in call order (FIFO). A wait longer than ``max_wait_s`` reserves nothing and returns
:class:`Denied` (``retry_after_s``, ``reason``). The send time is the latest of:

* **Even pacing (GCRA).** A theoretical arrival time (TAT) moves by the emission interval
  ``(window_s + guard_s) / rpm`` per request; a request may go at ``TAT - burst * interval``. The steady rate is
  ``rpm`` per ``window_s + guard_s`` (98.4 % of the upstream's limit with the defaults). Tokens are paced the same
  way, strictly (one request's tokens are the only burst).
* **Exact sliding-window caps.** A log of reserved send times: the ``rpm``-th latest lies at least
  ``window_s + guard_s`` before (never more than ``rpm`` in any such window, so an upstream at most ``guard_s``
  later than us never sees more than ``rpm`` in its 60 s), and the ``per_second``-th latest at least one second
  before, ``per_second = floor(rpm / window_s + burst)``: an upstream that enforces its limit per second (1,200 RPM
  as 20-25 a second) is not tripped. Tokens of any window fit ``tpm`` the same way.
* **The cooldown** after an upstream 429 (:meth:`RateLimiter.cooldown`), and the previous reservation (FIFO).

**In-flight slots without a storm.** Requests in flight are a sorted set of grant ids scored by lease expiry. A
caller that finds no free slot joins a FIFO queue and BLPOPs its own key; a release hands the freed slot straight
to the oldest live waiter (a fresh lease) and LPUSHes its key, so exactly one waiter wakes and nobody races. A
process that itself holds the whole cap keeps its further callers in the process until one of its calls ends (one
round trip then, not three: a worker has more slots than the cap, see batchq.broker.worker_concurrency).
Leases are short (``lease_s``, 30 s by default): the holder renews them while its call runs (:meth:`renew`, one
round trip for many grants; the worker's per-process heartbeat, batchq.pipeline.leases, does it), and a lapsed lease
(its holder died) gives its slot back on the next acquire, release, renew or :meth:`reap`. Slots are counted
against ``max_in_flight``, never minted, so changing the cap between deployments cannot leak or create slots.

A request estimated at more than ``tpm`` tokens on its own could never fit the window: it is granted when the token
window is empty instead, and while it waits for that a short-lived "drain" marker holds other token-consuming
requests back so small ones cannot starve it (reason ``"too_large"``). Usage reported by the upstream is untrusted
and clamped (:func:`clamp_tokens`). Design and measurements: docs/ratelimit.md.
"""

from batchq.ratelimit.limiter import (
    DEFAULT_BURST,
    DEFAULT_LEASE_S,
    MAX_COOLDOWN_S,
    Denied,
    Grant,
    RateLimiter,
    RouteLimits,
)
from batchq.ratelimit.tokens import (
    DEFAULT_COMPLETION_TOKENS,
    MAX_RESERVED_TOKENS,
    MEDIA_PART_TOKENS,
    clamp_tokens,
    estimate_tokens,
)

__all__ = [
    "DEFAULT_BURST",
    "DEFAULT_COMPLETION_TOKENS",
    "DEFAULT_LEASE_S",
    "MAX_COOLDOWN_S",
    "MAX_RESERVED_TOKENS",
    "MEDIA_PART_TOKENS",
    "Denied",
    "Grant",
    "RateLimiter",
    "RouteLimits",
    "clamp_tokens",
    "estimate_tokens",
]
