"""``RateLimiter``: one route's reservations (rpm, tpm, cooldown) and in-flight slots over Redis.

The design (reservations, the two window caps, the waiters' queue, leases) is in the package docstring and in
docs/ratelimit.md; the scripts' contracts are in the ``.lua`` files.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from batchq import keys, lua
from batchq.ratelimit.scripts import script_text
from batchq.ratelimit.tokens import clamp_tokens

#: Lease of an in-flight slot: a holder renews it while its call runs; a dead holder's slot returns after this.
DEFAULT_LEASE_S = 30.0
#: Requests that may go beyond the per-second share of the rpm limit in any one second (BATCHQ_RATE_LIMIT_BURST).
DEFAULT_BURST = 1
#: Longest cooldown accepted (a day): anything longer is a bug or a quota problem, not a rate limit.
MAX_COOLDOWN_S = 86_400.0
#: Oldest token-log entries one reservation looks at to find when enough tokens leave the window.
TOKEN_WALK = 64
#: A drain marker outlives the window it waits for by this share of the window, so the oversized request has time
#: to come back (a worker re-queueing it) before small requests may fill the window again.
DRAIN_GRACE_FRACTION = 0.1
#: Retry hint after waiting the whole ``max_wait_s`` for an in-flight slot (nobody knows when a call will end).
IN_FLIGHT_RETRY_S = 1.0
#: Longest single BLPOP of a waiter; it re-checks (and reclaims lapsed leases) at least this often. Well under
#: redis-py's default socket timeout (5 s), which a blocking read must not reach.
MAX_BLOCK_S = 4.0
#: Wake-ups one waiter handles at most before giving up (each is a BLPOP timeout; bounds the loop).
MAX_WAKEUPS = 1000
#: A sender that wakes this much after its reserved time takes a new reservation instead of sending late: the
#: 61 s cap's 1 s guard must cover how late a request arrives. Ordinary lateness (tens of ms under CPU load) never
#: triggers it: that lateness is mostly shared by every sender of a process, so re-reserving would only waste
#: slots and lengthen every thread's cycle (measured: 83 % instead of 91 % of the limit at 50 ms).
LATE_SEND_S = 0.5
#: New reservations one late sender takes at most before sending anyway (a starved process must not loop).
MAX_RESCHEDULES = 1
#: Times one caller joins the in-flight queue at most (again only when a handed-over slot lapsed before it came).
MAX_REQUEUES = 3


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
    """An in-flight slot held and a send time reserved; hand it back to :meth:`RateLimiter.release`."""

    route: str
    grant_id: str
    tokens: int
    """Tokens reserved in the token window (0 when the route has no tpm limit)."""
    granted_at_ms: int
    """Redis's clock (ms since the epoch) when the reservation was made."""
    send_at_ms: float
    """Redis's clock (ms since the epoch) of the reserved send time."""
    send_at: float
    """The same moment on this process's ``time.monotonic()`` clock."""

    @property
    def delay_s(self) -> float:
        """Seconds from now until the reserved send time (0 once it has come)."""
        return max(self.send_at - time.monotonic(), 0.0)

    def wait(self) -> None:
        """Sleep exactly until the reserved send time."""
        delay = self.send_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)


@dataclass(frozen=True)
class Denied:
    """No reservation: the wait would have been longer than allowed."""

    retry_after_s: float
    """Seconds until a reservation may fit (``in_flight``: a hint, nobody knows when calls end)."""
    reason: str
    """``"rpm"``, ``"tpm"``, ``"in_flight"``, ``"cooldown"`` or ``"too_large"``: the constraint that waits longest."""


class RateLimiter:
    """The global limiter of one route, over Redis.

    Every worker builds its own ``RateLimiter`` for the route; they share state through Redis only. All of them
    must use the same limits and windows for the guarantees to hold (``max_in_flight`` may change between
    deployments: slots are counted, never minted).

    Args:
        redis: The client (``decode_responses`` either way). Waiters block on it with BLPOP (at most
            :data:`MAX_BLOCK_S`, and under its socket timeout), so its pool needs a connection per waiting thread.
        route: The route's stable name; the keys live under ``keys.rate_limit(route)``.
        limits: rpm, tpm and max_in_flight (0 = unlimited).
        window_s: The upstream's window (60 s; tests shorten it).
        guard_s: Extra window length covering latency and clock skew between this limiter and the upstream.
        lease_s: An in-flight grant not renewed (:meth:`renew`) or released within this long frees its slot.
        burst: Requests beyond the per-second share ``rpm / window_s`` that may go in any one second
            (BATCHQ_RATE_LIMIT_BURST); also the GCRA tolerance, in requests, after an idle spell.

    Raises:
        ValueError: On a negative limit or burst, a non-positive window or lease, or a negative guard.
    """

    def __init__(
        self,
        redis: redis.Redis[Any],
        route: str,
        limits: RouteLimits,
        *,
        window_s: float = 60.0,
        guard_s: float = 1.0,
        lease_s: float = DEFAULT_LEASE_S,
        burst: int = DEFAULT_BURST,
    ) -> None:
        if min(limits.rpm, limits.tpm, limits.max_in_flight) < 0:
            raise ValueError(f"rate limits must be >= 0, got {limits}")
        if window_s <= 0 or guard_s < 0 or lease_s <= 0 or burst < 0:
            raise ValueError("window_s and lease_s must be > 0, guard_s and burst >= 0")
        self.redis = redis
        self.route = route
        self.limits = limits
        self.burst = burst
        self.window_ms = round((window_s + guard_s) * 1000)
        self.lease_ms = round(lease_s * 1000)
        self.per_second = max(1, math.floor(limits.rpm / window_s + burst + 1e-9)) if limits.rpm else 0
        """Requests allowed in any one second (the per-second share plus the burst)."""
        tau_ms = burst * self.window_ms / limits.rpm if limits.rpm else 0.0
        self._keys = keys.rate_limit_keys(route)
        self._waiters_key = self._keys[8]
        pool_kwargs = redis.connection_pool.connection_kwargs
        socket_timeout = pool_kwargs.get("socket_timeout") or pool_kwargs.get("orig_socket_timeout")
        self._max_block_s = min(MAX_BLOCK_S, 0.8 * socket_timeout) if socket_timeout else MAX_BLOCK_S
        self._common: list[int | float | str] = [
            limits.rpm,
            limits.tpm,
            limits.max_in_flight,
            self.window_ms,
            self.lease_ms,
            self.per_second,
            round(tau_ms, 3),
        ]
        self._gate = threading.Condition()
        self._ready: list[_Ready] = []
        """Callers of this process waiting in :meth:`_enter`, oldest first (a finished call may pass them its slot)."""
        self._held_here: dict[str, float] = {}
        """This process's grants on the route (in-flight routes only) -> when their lease lapses unless renewed
        (``time.monotonic()``, as in Redis): see :meth:`_enter`."""
        self._acquire = redis.register_script(script_text("acquire"))
        self._wait = redis.register_script(script_text("wait"))
        self._release = redis.register_script(script_text("release"))
        self._renew = redis.register_script(script_text("renew"))
        self._reap = redis.register_script(script_text("reap"))
        self._cooldown = redis.register_script(script_text("cooldown"))
        self._stats = redis.register_script(script_text("stats"))

    # --- reservations -------------------------------------------------------------------------------------------

    def acquire(self, estimated_tokens: int = 0, *, max_wait_s: float, sleep: bool = True) -> Grant | Denied:
        """Hold an in-flight slot and reserve a send time; by default return when that time has come.

        One round trip when a slot is free. While this process itself holds every slot of the cap, the caller
        first waits in the process for one of those calls to end (:meth:`_enter`). If Redis has no free slot, the
        caller joins a FIFO queue and blocks (BLPOP on its own key) until a release hands it a slot, then
        reserves its send time: no polling, and waiting costs no Redis commands. Reservations are FIFO too: each
        goes at or after the one reserved before it.

        Args:
            estimated_tokens: Tokens to reserve in the token window (prompt estimate + max completion tokens);
                clamped to [0, MAX_RESERVED_TOKENS].
            max_wait_s: Longest total wait (queue + reserved delay). A longer one reserves nothing.
            sleep: True sleeps until the reserved send time before returning; False returns at once and the
                caller sleeps (:meth:`Grant.wait`) or schedules the call for ``grant.send_at``.

        Returns:
            A :class:`Grant` (release it in every path), or a :class:`Denied` saying why and for how long.
        """
        started = time.monotonic()
        grant_id = uuid.uuid4().hex
        entered = self._enter(grant_id, started + max_wait_s)
        if isinstance(entered, Grant):
            return entered  # a call of this process passed its slot on (release_on): held, due now
        if not entered:
            return Denied(retry_after_s=IN_FLIGHT_RETRY_S, reason="in_flight")
        try:
            left_ms = max(0, round((started + max_wait_s - time.monotonic()) * 1000))
            answer = self._reserve(grant_id, clamp_tokens(estimated_tokens) or 0, left_ms)
            if sleep and isinstance(answer, Grant):
                answer = self.sleep_until_send(answer, deadline=started + max_wait_s)
        except BaseException:
            self._leave(grant_id)
            raise
        if isinstance(answer, Denied):
            self._leave(grant_id)
        return answer

    def sleep_until_send(self, grant: Grant, *, deadline: float) -> Grant | Denied:
        """Sleep until ``grant.send_at``; a sleeper that wakes more than :data:`LATE_SEND_S` late (and whose route
        paces requests or tokens) takes a new reservation, keeping its slot, and sleeps again.

        Args:
            grant: A grant from ``acquire(..., sleep=False)``.
            deadline: ``time.monotonic()`` limit of the whole wait; a new reservation past it is not taken.

        Returns:
            The grant to send with (maybe a new send time), or :class:`Denied` if the new reservation would end past
            ``deadline`` (the slot is freed then).
        """
        paced = self.limits.rpm > 0 or (self.limits.tpm > 0 and grant.tokens > 0)
        for _ in range(MAX_RESCHEDULES):
            grant.wait()
            if not paced or time.monotonic() - grant.send_at <= LATE_SEND_S:
                return grant
            left_ms = max(0, round((deadline - time.monotonic()) * 1000))
            args = (grant.grant_id, grant.tokens, left_ms, *self._acquire_extra(True))
            answer = self._settle(grant.grant_id, grant.tokens, self._call(self._acquire, *args), deadline)
            if isinstance(answer, Denied):
                self._leave(grant.grant_id)
                return answer
            grant = answer
        grant.wait()
        return grant

    def try_acquire(self, estimated_tokens: int = 0) -> Grant | Denied:
        """A grant only if the request may go right now (one round trip, never queues, never sleeps)."""
        return self.acquire(estimated_tokens, max_wait_s=0, sleep=False)

    def _enter(self, grant_id: str, deadline: float) -> Grant | bool:
        """Wait until this process holds fewer than ``max_in_flight`` grants of the route (True), or until one of
        its finished calls passes this caller its slot (that grant), or until ``deadline`` (False).

        Only then can Redis have a free slot for it, so a process never queues in Redis behind its own calls: with
        more slots than the cap (the worker's default) a claimed line waits here and its acquire finds the slot a
        call of this process just released (one round trip), instead of queueing, blocking and acquiring again
        (three). Slots freed by other processes still reach Redis's FIFO waiters first (release.lua).
        """
        cap = self.limits.max_in_flight
        if cap <= 0:
            return True
        with self._gate:
            while True:
                now = time.monotonic()
                if len(self._held_here) >= cap:  # only a full process looks for lapsed holds (the hot path)
                    for lapsed in [g for g, until in self._held_here.items() if until <= now]:
                        del self._held_here[lapsed]  # never released nor renewed: its holder is gone, as in Redis
                if len(self._held_here) < cap:
                    break
                if now >= deadline:
                    return False
                ready = _Ready()
                self._ready.append(ready)
                self._gate.wait(min(deadline, *self._held_here.values()) - now)
                if ready in self._ready:
                    self._ready.remove(ready)
                if ready.grant is not None:
                    return ready.grant
            self._held_here[grant_id] = self._local_lease_end()
        return True

    def _held_longer(self, grants: Iterable[Grant]) -> None:
        """A renewal of these grants is on its way: their local lease moves as Redis's does."""
        if self.limits.max_in_flight <= 0:
            return
        until = self._local_lease_end()
        with self._gate:
            for g in grants:
                if g.grant_id in self._held_here:
                    self._held_here[g.grant_id] = until

    def _local_lease_end(self) -> float:
        return time.monotonic() + self.lease_ms / 1000

    def _leave(self, grant_id: str) -> None:
        """The grant ended here (released, denied, or its call failed): a waiter of :meth:`_enter` may go on."""
        if self.limits.max_in_flight <= 0:
            return
        with self._gate:
            if self._held_here.pop(grant_id, None) is not None:
                self._gate.notify()

    def _reserve(self, grant_id: str, tokens: int, max_wait_ms: int) -> Grant | Denied:
        reply = self._call(self._acquire, grant_id, tokens, max_wait_ms, *self._acquire_extra(False))
        return self._settle(grant_id, tokens, reply, time.monotonic() + max_wait_ms / 1000)

    def _settle(self, grant_id: str, tokens: int, raw: Any, deadline: float) -> Grant | Denied:
        """Turn an acquire.lua reply into a Grant or Denied, waiting in the queue first when it says "queued"
        (again if a handed-over slot lapsed before this waiter took it; bounded)."""
        reply = _Acquired.decode(raw)
        for _ in range(MAX_REQUEUES):
            if reply.verdict != "queued":
                return self._answer(grant_id, tokens, reply)
            try:
                handed = self._wait_for_slot(grant_id, reply.deadline_ms, reply.wake_in_ms / 1000)
            except BaseException:  # Redis error, shutdown, time limit: leave the queue if Redis still answers
                with contextlib.suppress(redis.RedisError):
                    self._call(self._wait, grant_id, reply.deadline_ms, "1")
                raise
            if not handed:
                return Denied(retry_after_s=IN_FLIGHT_RETRY_S, reason="in_flight")
            left_ms = max(0, round((deadline - time.monotonic()) * 1000))
            reply = _Acquired.decode(self._call(self._acquire, grant_id, tokens, left_ms, *self._acquire_extra(True)))
        if reply.verdict == "queued":  # queued once more: leave the queue (and any slot) rather than loop on
            self._call(self._wait, grant_id, reply.deadline_ms, "1")
            return Denied(retry_after_s=IN_FLIGHT_RETRY_S, reason="in_flight")
        return self._answer(grant_id, tokens, reply)

    def _answer(self, grant_id: str, tokens: int, reply: _Acquired) -> Grant | Denied:
        if reply.verdict == "granted":
            reserved = tokens if self.limits.tpm > 0 else 0
            send_at = time.monotonic() + (reply.send_at_ms - reply.now_ms) / 1000
            return Grant(self.route, grant_id, reserved, reply.now_ms, reply.send_at_ms, send_at)
        return Denied(retry_after_s=reply.wait_ms / 1000, reason=reply.reason)

    def _acquire_extra(self, held: bool) -> tuple[int, int, str]:
        return round(self.window_ms * DRAIN_GRACE_FRACTION), TOKEN_WALK, "1" if held else "0"

    def _wait_for_slot(self, grant_id: str, deadline_ms: int, first_wait_s: float) -> bool:
        """Block until a release hands this waiter a slot (True) or its deadline passes (False)."""
        wake_key, wait_s = f"{self._waiters_key}:{grant_id}", first_wait_s
        for _ in range(MAX_WAKEUPS):
            if self.redis.blpop([wake_key], timeout=min(max(wait_s, 0.001), self._max_block_s)) is not None:
                return True
            reply = lua.fields(self._call(self._wait, grant_id, deadline_ms, "0"))
            verdict = lua.text(reply["verdict"])
            if verdict != "queued":
                return verdict == "held"
            wait_s = float(lua.text(reply["wake_in"])) / 1000
        return False

    # --- ending a call ------------------------------------------------------------------------------------------

    def release(self, grant: Grant, actual_tokens: object = None) -> bool:
        """Free the grant's in-flight slot and reconcile its tokens with the real usage. Idempotent, never raises
        for odd usage values.

        Args:
            grant: What :meth:`acquire` returned.
            actual_tokens: The response's ``usage.total_tokens``, untrusted: clamped to [0, MAX_RESERVED_TOKENS];
                None (or NaN, or junk) keeps the reservation as it is. The difference is refunded or charged only
                while the grant is still inside the token window: once it has left, the window it counted in is over.

        Returns:
            True if the slot was still held (False: released before, or its lease had lapsed).
        """
        try:
            return bool(self._call(self._release, *self._release_args(grant, actual_tokens)))
        finally:
            self._leave(grant.grant_id)

    def release_on(self, pipe: redis.client.Pipeline[Any], grant: Grant, actual_tokens: object = None) -> None:
        """Queue the end of the grant's call on ``pipe`` (a redis-py pipeline of this limiter's Redis), e.g. in the
        same round trip as the outcome's recording; hand its reply (the pipeline's last one when this was queued
        last) to :meth:`released` once the pipeline ran (a failed one: :meth:`release`, which is idempotent).

        That is :meth:`release`, except on a route limited by in-flight slots only while a caller of this process
        waits for a slot: then ``keep.lua`` keeps the slot for that caller (a fresh lease), unless somebody waits in
        Redis's queue or a cooldown runs. The caller then sends at once, with neither a release nor an acquire.

        Sent as EVAL of the script text: a pipeline's EVALSHA would need a SCRIPT EXISTS round trip per execute.
        """
        if self.limits.rpm == 0 and self.limits.tpm == 0 and self._ready:
            pipe.eval(script_text("keep"), len(self._keys), *self._keys, *self._common, grant.grant_id)
            return
        pipe.eval(
            script_text("release"),
            len(self._keys),
            *self._keys,
            *self._common,
            *self._release_args(grant, actual_tokens),
        )

    def released(self, grant: Grant, reply: object) -> None:
        """The pipeline of :meth:`release_on` ran (``reply``: its answer): the slot goes to the oldest caller of this
        process that waits for it if keep.lua kept it, else the grant no longer counts against this process."""
        kept = lua.fields(reply) if isinstance(reply, list) else {}
        if int(kept.get("kept", 0)) == 1:
            kept_at = int(kept["now"])
            with self._gate:
                if self._ready:
                    ready = self._ready.pop(0)
                    ready.grant = Grant(self.route, grant.grant_id, 0, kept_at, float(kept_at), time.monotonic())
                    self._held_here[grant.grant_id] = self._local_lease_end()
                    self._gate.notify_all()  # the one whose grant it is takes it; the others wait on
                    return
            self.release(grant, 0)  # its caller gave up meanwhile: free the slot after all
            return
        self._leave(grant.grant_id)

    def _release_args(self, grant: Grant, actual_tokens: object) -> list[int | str]:
        actual = clamp_tokens(actual_tokens)
        return [grant.grant_id, grant.tokens, -1 if actual is None else actual]

    def renew(self, grants: Sequence[Grant]) -> list[bool]:
        """Extend the leases of these grants to now + lease, in one round trip (a per-process heartbeat calls it
        every ~lease / 3 for every call in progress).

        Returns:
            One flag per grant: False if it is no longer held (released, or lapsed: its slot may be reused, so the
            holder should treat its call as unprotected by the in-flight cap).
        """
        if not grants:
            return []
        self._held_longer(grants)
        return [bool(flag) for flag in self._call(self._renew, *(g.grant_id for g in grants))]

    def renew_on(self, pipe: redis.client.Pipeline[Any], grants: Iterable[Grant]) -> None:
        """Queue :meth:`renew` on ``pipe``; its reply (a list of 0/1 flags) lands in ``pipe.execute()``'s list."""
        grants = list(grants)
        ids = [g.grant_id for g in grants]
        self._held_longer(grants)
        if ids:
            pipe.eval(script_text("renew"), len(self._keys), *self._keys, *self._common, *ids)

    def reap(self) -> int:
        """Reclaim lapsed leases (their holders died) and hand free slots to waiters; for the sweeper. Acquire,
        release and renew do the same on the way, so this only matters when a route is otherwise idle.

        Returns:
            The number of lapsed leases reclaimed.
        """
        return int(self._call(self._reap))

    # --- shared pause and inspection ----------------------------------------------------------------------------

    def cooldown(self, seconds: float) -> None:
        """Hold every worker off this route for ``seconds`` (after an upstream 429). Extends, never shortens.
        Reservations made from now on go after it; those already made keep their times.

        Args:
            seconds: Length of the cooldown from now, capped at :data:`MAX_COOLDOWN_S`; values <= 0 (or NaN) do
                nothing.
        """
        if seconds > 0:
            self._call(self._cooldown, math.ceil(min(seconds, MAX_COOLDOWN_S) * 1000))

    def stats(self) -> dict[str, float]:
        """Snapshot of the route's state, for metrics and tests.

        Returns:
            ``in_flight``, ``requests_in_window`` (reservations, future ones included) and ``tokens_in_window``
            (counted only for a limited rpm / tpm), ``cooldown_remaining_s``, ``waiters`` (queued for an in-flight
            slot) and ``reserved_ahead_s`` (how far ahead the latest reservation lies).
        """
        f = lua.fields(self._call(self._stats))
        return {
            "in_flight": float(f["in_flight"]),
            "requests_in_window": float(f["requests"]),
            "tokens_in_window": float(f["tokens"]),
            "cooldown_remaining_s": float(f["cooldown"]) / 1000,
            "waiters": float(f["waiters"]),
            "reserved_ahead_s": float(lua.text(f["ahead"])) / 1000,
        }

    def _call(self, script: Any, *args: int | float | str) -> Any:
        return script(keys=self._keys, args=[*self._common, *args])


@dataclass(frozen=True)
class _Acquired:
    """acquire.lua's answer: granted (now_ms, send_at_ms), queued (now_ms, wake_in_ms, deadline_ms) or denied
    (reason, wait_ms)."""

    verdict: str
    now_ms: int = 0
    send_at_ms: float = 0.0
    wake_in_ms: float = 0.0
    deadline_ms: int = 0
    reason: str = ""
    wait_ms: float = 0.0

    @classmethod
    def decode(cls, reply: Any) -> _Acquired:
        f = lua.fields(reply)
        return cls(
            verdict=lua.text(f["verdict"]),
            now_ms=int(f.get("now", 0)),
            send_at_ms=float(lua.text(f.get("send_at", 0))),
            wake_in_ms=float(lua.text(f.get("wake_in", 0))),
            deadline_ms=int(f.get("deadline", 0)),
            reason=lua.text(f.get("reason", "")),
            wait_ms=float(lua.text(f.get("wait", 0))),
        )


class _Ready:
    """A caller of this process waiting for a slot; a finished call of the process may leave its grant here."""

    __slots__ = ("grant",)

    def __init__(self) -> None:
        self.grant: Grant | None = None
