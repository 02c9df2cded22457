"""One route's global rate limit (requests, tokens, in-flight, cooldown), shared by every worker through Redis.

A route is one upstream + model. Every worker on every machine asks the same Redis keys, through one Lua script
that reads Redis's own clock, so the limit holds no matter how many workers run or how their clocks drift.

Why two algorithms for one limit: upstreams count requests (and tokens) in a *sliding* 60-second window, and a
batch must neither trip that window nor arrive as a burst of ``rpm`` followed by a minute of silence.

* **Even pacing (GCRA).** Each grant moves a theoretical arrival time (TAT) forward by the emission interval
  ``(window_s + guard_s) / rpm``; a request may go when ``TAT <= now + burst``. Requests are spread evenly, a short
  burst (``burst_s``, about a second's worth by default) may go at once after an idle spell, and the steady rate is
  ``rpm`` per ``window_s + guard_s`` (98.4 % of the upstream's limit with the defaults).
* **Exact sliding-window cap.** A log (sorted set) of the grants of the last ``window_s + guard_s`` seconds: never
  more than ``rpm`` in it. The guard covers latency and clock skew between this limiter and the upstream: two grants
  further apart than ``window_s + guard_s`` reach an upstream that is at most ``guard_s`` later than us in different
  60-second windows, so no upstream window ever sees more than ``rpm``. The cap is what makes the burst safe.

Tokens are limited the same way, with ``estimated_tokens`` (see :func:`estimate_tokens`) reserved up front and
reconciled with the real usage on :meth:`RateLimiter.release`. Requests in flight are a sorted set of grant ids
scored by the expiry of their lease, so a worker killed mid-call frees its slot when the lease runs out. A shared
cooldown key, set after an upstream 429, holds every worker back together.

A request estimated at more than ``tpm`` tokens on its own could never fit the window: it is granted when the token
window is empty instead (the upstream sees one oversized request, never a deadlock), and while it waits for that,
a short-lived "drain" marker holds other token-consuming requests back so a steady stream of small ones cannot
starve it. Denials on its behalf carry the reason ``"too_large"``.
"""

from __future__ import annotations

import math
import random
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis

from batchq import keys

#: Seconds a request denied for ``in_flight`` waits before asking again (nobody knows when a call will end).
IN_FLIGHT_POLL_S = 0.05
#: Largest random extra sleep :meth:`RateLimiter.acquire` adds to a wait, so waiting workers do not wake together.
MAX_JITTER_S = 0.02
#: Share of a wait added as jitter at most (short waits get proportionally short jitter).
JITTER_FRACTION = 0.1
#: Longest cooldown accepted (a day): anything longer is a bug or a quota problem, not a rate limit.
MAX_COOLDOWN_S = 86_400.0
#: Oldest token-log entries inspected to compute a ``tpm`` retry time (keeps the script O(log n)).
TOKEN_WALK = 32
#: Expired token-log entries dropped per call at most (keeps one call short; the rest go on the next call).
PRUNE_BATCH = 512
#: A drain marker outlives the window it waits for by this share of the window, so the oversized request has time
#: to come back (a worker re-queueing it) before small requests may fill the window again.
DRAIN_GRACE_FRACTION = 0.1
#: Largest reservation (Lua prints larger numbers in exponent form, which would break the token-log members).
MAX_RESERVED_TOKENS = 10**12
#: Tokens in one chat message besides its text (role and separators), as in OpenAI's cookbook counting.
MESSAGE_OVERHEAD_TOKENS = 4
#: Tokens that prime every chat reply.
REPLY_PRIMING_TOKENS = 3
#: Characters per token of the rough estimate (English prose averages about four).
CHARS_PER_TOKEN = 4
#: Tokens counted for a non-text content part (image, audio, file): OpenAI's price of a 1024x1024 high-detail image.
MEDIA_PART_TOKENS = 765
#: Completion tokens assumed when a body sets neither ``max_completion_tokens`` nor ``max_tokens``.
DEFAULT_COMPLETION_TOKENS = 256
#: Content-part types counted as :data:`MEDIA_PART_TOKENS` instead of by their (base64) text.
MEDIA_PART_TYPES = frozenset({"image_url", "input_image", "image", "input_audio", "audio", "file", "input_file"})

# Shared Lua helpers, prepended to every script below.
_LUA_HELPERS = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function amount(member)
  return tonumber(string.match(member, '^(%d+):')) or 0
end

-- Tokens in the window after dropping entries scored at or before `cutoff` (at most PRUNE_BATCH of them).
local function prune_tokens(log_key, sum_key, cutoff, window)
  local old = redis.call('ZRANGEBYSCORE', log_key, '-inf', cutoff, 'LIMIT', 0, PRUNE_BATCH)
  local freed = 0
  for _, m in ipairs(old) do freed = freed + amount(m) end
  if #old > 0 then redis.call('ZREMRANGEBYRANK', log_key, 0, #old - 1) end
  if redis.call('ZCARD', log_key) == 0 then
    redis.call('DEL', sum_key)
    return 0
  end
  local raw = redis.call('GET', sum_key)
  if not raw then
    -- Only after the sum key was lost (eviction, manual delete): rebuild it from the log once.
    local sum = 0
    for _, m in ipairs(redis.call('ZRANGE', log_key, 0, -1)) do sum = sum + amount(m) end
    redis.call('SET', sum_key, sum, 'PX', window + 1000)
    return sum
  end
  if freed > 0 then return math.max(redis.call('DECRBY', sum_key, freed), 0) end
  return math.max(tonumber(raw), 0)
end
""".replace("PRUNE_BATCH", str(PRUNE_BATCH))

_KEYS_CONTRACT = """
-- KEYS (all under keys.rate_limit(route), one hash slot):
--   1 cooldown   string  "until" (ms, Redis clock), with a matching PX
--   2 inflight   zset    grant id -> lease expiry (ms)
--   3 req_log    zset    grant id -> grant time (ms); the sliding-window log of requests
--   4 req_tat    string  GCRA theoretical arrival time of requests (ms, fractional)
--   5 tok_log    zset    "<tokens>:<grant id>" -> grant time (ms); the sliding-window log of tokens
--   6 tok_sum    string  sum of the tokens in tok_log
--   7 tok_tat    string  GCRA theoretical arrival time of tokens (ms, fractional)
--   8 drain      string  set while an oversized request waits for an empty token window
"""

_ACQUIRE_LUA = (
    _KEYS_CONTRACT
    + """
-- ARGV: 1 grant id, 2 estimated tokens, 3 rpm, 4 tpm, 5 max in flight (0 = unlimited for 3-5),
--       6 window incl. guard (ms), 7 GCRA burst tolerance (ms), 8 lease (ms), 9 in-flight poll (ms),
--       10 drain grace (ms), 11 token walk
-- Returns {1, now_ms} when granted, else {0, reason, wait_ms as a string}; reason is the constraint that needs
-- the longest wait. Nothing is written on a denial except the drain marker.
"""
    + _LUA_HELPERS
    + """
local gid = ARGV[1]
local tokens = tonumber(ARGV[2])
local rpm, tpm, max_in_flight = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local window, tau, lease = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local poll, grace, walk = tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
local now = now_ms()

local until_ms = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ms > now then return {0, 'cooldown', tostring(until_ms - now)} end

local reason, wait = false, 0
local function deny(r, w)
  if not reason or w > wait then reason, wait = r, w end
end

redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if max_in_flight > 0 then
  local n = redis.call('ZCARD', KEYS[2])
  if n >= max_in_flight then
    local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
    deny('in_flight', math.min(tonumber(first[2]) - now, poll))
  end
end

local req_tat = 0
if rpm > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - window)
  local n = redis.call('ZCARD', KEYS[3])
  if n >= rpm then
    -- the grant that must leave the window before one more fits
    local e = redis.call('ZRANGE', KEYS[3], n - rpm, n - rpm, 'WITHSCORES')
    deny('rpm', tonumber(e[2]) + window - now)
  end
  req_tat = tonumber(redis.call('GET', KEYS[4]) or '0')
  if req_tat - tau > now then deny('rpm', req_tat - tau - now) end
end

local sum, tok_tat = 0, 0
local use_tokens = tpm > 0 and tokens > 0
if use_tokens then
  local tok_reason, tok_wait = false, 0
  sum = prune_tokens(KEYS[5], KEYS[6], now - window, window)
  if tokens > tpm then
    if sum > 0 then
      local last = redis.call('ZRANGE', KEYS[5], -1, -1, 'WITHSCORES')
      tok_reason, tok_wait = 'too_large', tonumber(last[2]) + window - now
    end
  else
    local drain = redis.call('PTTL', KEYS[8])
    if drain > 0 then
      tok_reason, tok_wait = 'tpm', math.min(drain, poll)
      if sum > 0 then
        local last = redis.call('ZRANGE', KEYS[5], -1, -1, 'WITHSCORES')
        tok_wait = math.max(tok_wait, math.min(drain, tonumber(last[2]) + window - now))
      end
    end
    if sum + tokens > tpm then
      local need, freed, at = sum + tokens - tpm, 0, now
      local olds = redis.call('ZRANGE', KEYS[5], 0, walk - 1, 'WITHSCORES')
      for i = 1, #olds, 2 do
        freed, at = freed + amount(olds[i]), tonumber(olds[i + 1])
        if freed >= need then break end
      end
      if not tok_reason or at + window - now > tok_wait then tok_reason, tok_wait = 'tpm', at + window - now end
    end
  end
  tok_tat = tonumber(redis.call('GET', KEYS[7]) or '0')
  if tok_tat - tau > now and (not tok_reason or tok_tat - tau - now > tok_wait) then
    tok_reason, tok_wait = (tokens > tpm) and 'too_large' or 'tpm', tok_tat - tau - now
  end
  if tok_reason then
    if tokens > tpm then redis.call('SET', KEYS[8], '1', 'PX', math.ceil(tok_wait + grace)) end
    deny(tok_reason, tok_wait)
  end
end

if reason then return {0, reason, string.format('%.3f', math.max(wait, 1))} end

redis.call('ZADD', KEYS[2], now + lease, gid)
redis.call('PEXPIRE', KEYS[2], lease + 1000)
if rpm > 0 then
  redis.call('ZADD', KEYS[3], now, gid)
  redis.call('PEXPIRE', KEYS[3], window + 1000)
  local tat = math.max(req_tat, now) + window / rpm
  redis.call('SET', KEYS[4], string.format('%.3f', tat), 'PX', math.ceil(tat - now + window))
end
if use_tokens then
  redis.call('ZADD', KEYS[5], now, tokens .. ':' .. gid)
  redis.call('PEXPIRE', KEYS[5], window + 1000)
  redis.call('SET', KEYS[6], sum + tokens, 'PX', window + 1000)
  -- an oversized request paces like a full window's worth, not more
  local tat = math.max(tok_tat, now) + math.min(tokens, tpm) * window / tpm
  redis.call('SET', KEYS[7], string.format('%.3f', tat), 'PX', math.ceil(tat - now + window))
  if tokens > tpm then redis.call('DEL', KEYS[8]) end
end
return {1, now}
"""
)

_RELEASE_LUA = (
    _KEYS_CONTRACT
    + """
-- ARGV: 1 grant id, 2 reserved tokens, 3 actual tokens (-1 = unknown), 4 tpm, 5 window incl. guard (ms)
-- Frees the in-flight slot; moves the grant's token-log entry (and the token TAT) by actual - reserved if the
-- entry is still in the window. Idempotent: a second release finds neither the slot nor the old entry.
"""
    + _LUA_HELPERS
    + """
redis.call('ZREM', KEYS[2], ARGV[1])
local reserved, actual = tonumber(ARGV[2]), tonumber(ARGV[3])
local tpm, window = tonumber(ARGV[4]), tonumber(ARGV[5])
if actual < 0 or tpm <= 0 or actual == reserved then return 0 end
local old = reserved .. ':' .. ARGV[1]
local score = redis.call('ZSCORE', KEYS[5], old)
if not score then return 0 end
-- add before removing, so the key never empties (an emptied key would lose its TTL)
redis.call('ZADD', KEYS[5], score, actual .. ':' .. ARGV[1])
redis.call('ZREM', KEYS[5], old)
if redis.call('EXISTS', KEYS[6]) == 1 then redis.call('INCRBY', KEYS[6], actual - reserved) end
local now = now_ms()
local diff = math.min(actual, tpm) - math.min(reserved, tpm)
local tat = tonumber(redis.call('GET', KEYS[7]) or '0')
if diff > 0 then
  tat = math.max(tat, now) + diff * window / tpm
elseif tat > now then
  tat = math.max(tat + diff * window / tpm, now)
else
  return 1
end
redis.call('SET', KEYS[7], string.format('%.3f', tat), 'PX', math.ceil(tat - now + window))
return 1
"""
)

_COOLDOWN_LUA = (
    _KEYS_CONTRACT
    + """
-- ARGV: 1 cooldown (ms). Extends KEYS[1] to now + ARGV[1] unless it already ends later; returns its end (ms).
"""
    + _LUA_HELPERS
    + """
local now = now_ms()
local want = now + tonumber(ARGV[1])
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if cur >= want then return cur end
redis.call('SET', KEYS[1], string.format('%d', want), 'PX', want - now)
return want
"""
)

_STATS_LUA = (
    _KEYS_CONTRACT
    + """
-- ARGV: 1 window incl. guard (ms). Returns {in flight, requests in window, tokens in window, cooldown left (ms)}.
"""
    + _LUA_HELPERS
    + """
local now, window = now_ms(), tonumber(ARGV[1])
local in_flight = redis.call('ZCOUNT', KEYS[2], '(' .. now, '+inf')
local requests = redis.call('ZCOUNT', KEYS[3], '(' .. (now - window), '+inf')
local tokens = prune_tokens(KEYS[5], KEYS[6], now - window, window)
local cooldown = math.max(tonumber(redis.call('GET', KEYS[1]) or '0') - now, 0)
return {in_flight, requests, tokens, cooldown}
"""
)


@dataclass(frozen=True)
class RouteLimits:
    """A route's limits; 0 means unlimited."""

    rpm: int = 0
    """Requests per window (``window_s``, 60 s in production)."""
    tpm: int = 0
    """Tokens per window (estimated up front, reconciled with the real usage)."""
    max_in_flight: int = 0
    """Requests sent and not yet answered, across all workers."""


@dataclass(frozen=True)
class Grant:
    """Permission to send one request; hand it back to :meth:`RateLimiter.release` when the call ends."""

    route: str
    grant_id: str
    tokens: int
    """Tokens reserved in the token window (0 when the route has no tpm limit)."""
    granted_at_ms: int
    """Redis's clock (ms since the epoch) at the grant."""


@dataclass(frozen=True)
class Denied:
    """No permission now."""

    retry_after_s: float
    """Seconds until asking again may succeed (``in_flight`` denials give a short poll interval)."""
    reason: str
    """``"rpm"``, ``"tpm"``, ``"in_flight"``, ``"cooldown"`` or ``"too_large"``: the constraint that waits longest."""


class RateLimiter:
    """The global limiter of one route, over Redis.

    Every worker builds its own ``RateLimiter`` for the route; they share state through Redis only. All of them
    must use the same limits and windows for the guarantees to hold.

    Args:
        redis: The client (``decode_responses`` either way).
        route: The route's stable name; the keys live under ``keys.rate_limit(route)``.
        limits: rpm, tpm and max_in_flight (0 = unlimited).
        window_s: The upstream's window (60 s; tests shorten it).
        guard_s: Extra window length covering latency and clock skew between this limiter and the upstream.
        lease_s: A grant not released within this long frees its in-flight slot (a worker died mid-call).
        burst_s: GCRA burst tolerance: this many seconds' worth of the limit may go at once after an idle spell.
            Defaults to 1/60 of the window (one second's worth at 60 s); 0 paces strictly.

    Raises:
        ValueError: On a negative limit, a non-positive window or lease, or a negative guard or burst.
    """

    def __init__(
        self,
        redis: redis.Redis[Any],
        route: str,
        limits: RouteLimits,
        *,
        window_s: float = 60.0,
        guard_s: float = 1.0,
        lease_s: float = 900.0,
        burst_s: float | None = None,
    ) -> None:
        if min(limits.rpm, limits.tpm, limits.max_in_flight) < 0:
            raise ValueError(f"rate limits must be >= 0, got {limits}")
        if window_s <= 0 or guard_s < 0 or lease_s <= 0 or (burst_s is not None and burst_s < 0):
            raise ValueError("window_s and lease_s must be > 0, guard_s and burst_s >= 0")
        self.redis = redis
        self.route = route
        self.limits = limits
        self.window_ms = round((window_s + guard_s) * 1000)
        self.burst_ms = round((window_s + guard_s) * 1000 / 60 if burst_s is None else burst_s * 1000)
        self.lease_ms = round(lease_s * 1000)
        prefix = keys.rate_limit(route)
        self._keys = [
            f"{prefix}:{name}"
            for name in ("cooldown", "inflight", "req:log", "req:tat", "tok:log", "tok:sum", "tok:tat", "tok:drain")
        ]
        self._acquire = redis.register_script(_ACQUIRE_LUA)
        self._release = redis.register_script(_RELEASE_LUA)
        self._cooldown = redis.register_script(_COOLDOWN_LUA)
        self._stats = redis.register_script(_STATS_LUA)
        self._rng = random.Random()

    def try_acquire(self, estimated_tokens: int = 0) -> Grant | Denied:
        """Ask once (one round trip).

        Args:
            estimated_tokens: Tokens to reserve in the token window (prompt estimate + max completion tokens).

        Returns:
            A :class:`Grant`, or a :class:`Denied` saying why and for how long.
        """
        tokens = min(max(int(estimated_tokens), 0), MAX_RESERVED_TOKENS)
        grant_id = uuid.uuid4().hex
        args = [
            grant_id,
            tokens,
            self.limits.rpm,
            self.limits.tpm,
            self.limits.max_in_flight,
            self.window_ms,
            self.burst_ms,
            self.lease_ms,
            round(IN_FLIGHT_POLL_S * 1000),
            round(self.window_ms * DRAIN_GRACE_FRACTION),
            TOKEN_WALK,
        ]
        reply = self._acquire(keys=self._keys, args=args)
        if int(reply[0]) == 1:
            reserved = tokens if self.limits.tpm > 0 else 0
            return Grant(route=self.route, grant_id=grant_id, tokens=reserved, granted_at_ms=int(reply[1]))
        return Denied(retry_after_s=float(_text(reply[2])) / 1000, reason=_text(reply[1]))

    def acquire(self, estimated_tokens: int = 0, *, max_wait_s: float) -> Grant | Denied:
        """Ask until granted, sleeping as told (plus a little jitter) between tries.

        Args:
            estimated_tokens: As for :meth:`try_acquire`.
            max_wait_s: Longest total wait. A wait that would end past it is not started.

        Returns:
            A :class:`Grant`, or the last :class:`Denied` (its ``retry_after_s`` counts from now) on giving up.
        """
        deadline = time.monotonic() + max_wait_s
        while True:
            answer = self.try_acquire(estimated_tokens)
            if isinstance(answer, Grant):
                return answer
            wait = answer.retry_after_s
            if time.monotonic() + wait > deadline:
                return answer
            jitter = self._rng.uniform(0, min(MAX_JITTER_S, wait * JITTER_FRACTION))
            time.sleep(min(wait + jitter, max(deadline - time.monotonic(), 0.0)))

    def release(self, grant: Grant, actual_tokens: int | None = None) -> None:
        """Free the grant's in-flight slot and reconcile its tokens with the real usage. Idempotent.

        Args:
            grant: What :meth:`try_acquire` or :meth:`acquire` returned.
            actual_tokens: The response's ``usage.total_tokens``; None keeps the reservation as it is. The
                difference is refunded or charged only while the grant is still inside the token window: once it
                has left, the window it counted in is over.
        """
        actual = -1 if actual_tokens is None else min(max(int(actual_tokens), 0), MAX_RESERVED_TOKENS)
        self._release(keys=self._keys, args=[grant.grant_id, grant.tokens, actual, self.limits.tpm, self.window_ms])

    def cooldown(self, seconds: float) -> None:
        """Hold every worker off this route for ``seconds`` (after an upstream 429). Extends, never shortens.

        Args:
            seconds: Length of the cooldown from now, capped at :data:`MAX_COOLDOWN_S`; values <= 0 do nothing.
        """
        if seconds > 0:
            self._cooldown(keys=self._keys, args=[math.ceil(min(seconds, MAX_COOLDOWN_S) * 1000)])

    def stats(self) -> dict[str, float]:
        """Snapshot of the route's state, for metrics and tests.

        Returns:
            ``in_flight``, ``requests_in_window`` and ``tokens_in_window`` (counted only for a limited rpm / tpm),
            and ``cooldown_remaining_s``.
        """
        in_flight, requests, tokens, cooldown_ms = self._stats(keys=self._keys, args=[self.window_ms])
        return {
            "in_flight": float(in_flight),
            "requests_in_window": float(requests),
            "tokens_in_window": float(tokens),
            "cooldown_remaining_s": float(cooldown_ms) / 1000,
        }


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def estimate_tokens(body: Mapping[str, Any]) -> int:
    """Rough upper-side estimate of the tokens a request will consume, for the token limit. Never raises.

    Prompt: about ``chars / 4`` over every text (chat message contents as strings or content-part lists, names,
    tool calls, ``tools`` / ``functions`` / ``response_format``, completions ``prompt``, embeddings ``input``;
    token-id arrays count one token an id), a fixed :data:`MEDIA_PART_TOKENS` a media part, and
    :data:`MESSAGE_OVERHEAD_TOKENS` a chat message. Completion: ``max_completion_tokens`` or ``max_tokens``
    (:data:`DEFAULT_COMPLETION_TOKENS` when absent), times ``n`` (or ``best_of``); none for embeddings.

    Args:
        body: The request body as sent upstream (anything at all is tolerated).

    Returns:
        Estimated prompt + completion tokens, >= 0.
    """
    if not isinstance(body, Mapping):
        return DEFAULT_COMPLETION_TOKENS
    chars, tokens = 0, 0
    messages = body.get("messages")
    if isinstance(messages, list):
        tokens += REPLY_PRIMING_TOKENS + MESSAGE_OVERHEAD_TOKENS * len(messages)
        for message in messages:
            if isinstance(message, Mapping):
                parts = [message.get(k) for k in ("content", "name", "tool_calls", "function_call", "refusal")]
                c, t = _walk(parts)
                chars, tokens = chars + c, tokens + t
    for key in ("tools", "functions", "response_format", "prompt", "input"):
        c, t = _walk(body.get(key))
        chars, tokens = chars + c, tokens + t
    prompt = tokens + math.ceil(chars / CHARS_PER_TOKEN)
    if "input" in body and "messages" not in body and "prompt" not in body:
        return prompt  # embeddings: no completion
    completion = (
        _positive_int(body.get("max_completion_tokens"))
        or _positive_int(body.get("max_tokens"))
        or DEFAULT_COMPLETION_TOKENS
    )
    choices = max(_positive_int(body.get("n")) or 1, _positive_int(body.get("best_of")) or 1)
    return prompt + completion * choices


def _walk(value: Any) -> tuple[int, int]:
    """(characters of text, tokens counted directly) in a JSON-like value; iterative, so depth and cycles are safe."""
    chars, tokens = 0, 0
    stack, seen = [value], set()
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            chars += len(item)
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int | float):
            tokens += 1  # a token id, or a number in a schema
        elif isinstance(item, Mapping | list | tuple):
            if id(item) in seen:
                continue
            seen.add(id(item))
            if isinstance(item, Mapping):
                kind = item.get("type")
                if isinstance(kind, str) and kind in MEDIA_PART_TYPES:
                    tokens += MEDIA_PART_TOKENS
                    continue
                stack.extend(item.values())
            else:
                stack.extend(item)
    return chars, tokens


def _positive_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        return None
    return int(value) if value > 0 else None
