"""A batch's lines in Redis: the index of where each one sits in the input, leases, attempts and outcomes.

The invariant kept here: a line's outcome is recorded once (first write wins) and the counters, the metrics and
the feeding window move with it, in one Lua script, so no crash or race can split them. A line is called only
under a lease: short, renewed by the holder's heartbeat while its call runs, so a dead worker's lines come back
within ``lease_s`` whatever the upstream's timeouts.
"""

from __future__ import annotations

import json
import math
import struct
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import redis

from batchq import keys, lua

#: One index entry: offset (8 bytes), length (4), 1-based physical line number (4).
INDEX_ENTRY = struct.Struct(">QII")
#: Token counts above this are not believable from one request (an upstream answering 2**70 is lying).
MAX_USAGE_TOKENS = 100_000_000
#: Owner of a lease held for a line waiting in a countdown re-queue: the retry (or any copy) may claim it.
REQUEUE_OWNER = "-"


def script(name: str) -> str:
    """A batch script's text, the shared ``lib.lua`` first."""
    return lua.read("batchq.state.scripts", name.removesuffix(".lua"), prelude="lib")


def pack_index(entries: Iterable[tuple[int, int, int]]) -> bytes:
    """Pack (line_no, offset, length) entries, as FileValidator reports them."""
    return b"".join(INDEX_ENTRY.pack(offset, length, line_no) for line_no, offset, length in entries)


@dataclass(frozen=True)
class IndexEntry:
    offset: int
    length: int
    line_no: int
    """1-based physical line in the input file."""


def unpack_index_entry(raw: bytes) -> IndexEntry | None:
    if len(raw) != INDEX_ENTRY.size:
        return None
    offset, length, line_no = INDEX_ENTRY.unpack(raw)
    return IndexEntry(int(offset), int(length), int(line_no))


def placeholder_custom_id(line_no: int) -> str:
    """The custom_id of a line whose own cannot be read (``line_no`` is 1-based)."""
    return f"line-{line_no}"


@dataclass(frozen=True)
class Claim:
    """What :meth:`LineState.claim` found. ``verdict`` is claimed, done, held, skip or gone."""

    verdict: str
    status: str = ""
    stop_code: str = ""
    """What the line becomes instead of being sent (the stop rule, state/scripts/lib.lua), '' when it is sent."""
    endpoint: str = ""
    input_storage_key: str = ""
    entry: IndexEntry | None = None
    attempt: int = 0
    """The attempt number this claim is (0 when the batch stopped and the line will not be sent)."""
    now: float = 0.0
    """Redis's clock at the claim (unix seconds)."""
    account: str = ""

    @classmethod
    def decode(cls, reply: Any) -> Claim:
        """The claim script's reply (name/value pairs)."""
        f = lua.fields(reply)
        verdict = lua.text(f["verdict"])
        if verdict != "claimed":
            return cls(verdict, status=lua.text(f.get("status", "")))
        return cls(
            "claimed",
            status=lua.text(f["status"]),
            stop_code=lua.text(f["stop_code"]),
            endpoint=lua.text(f["endpoint"]),
            input_storage_key=lua.text(f["input_storage_key"]),
            entry=unpack_index_entry(bytes(f["entry"])),
            attempt=int(f["attempt"]),
            now=int(f["now_ms"]) / 1000,
            account=lua.text(f["account"]),
        )


@dataclass(frozen=True)
class OutcomeRecorded:
    recorded: bool
    """True when this call's outcome is the one that stands (first write wins)."""
    done: int
    total: int

    @property
    def batch_done(self) -> bool:
        return self.total > 0 and self.done >= self.total


def _tokens(value: Any) -> int:
    """A token count from an untrusted body: finite, non-negative, believable, else 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    if isinstance(value, float) and not math.isfinite(value):
        return 0
    return int(value) if 0 <= value <= MAX_USAGE_TOKENS else 0


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    @classmethod
    def from_body(cls, body: Any) -> Usage:
        """Token counts from an upstream response body; zeros where absent or absurd (never raises)."""
        usage = body.get("usage") if isinstance(body, dict) else None
        if not isinstance(usage, dict):
            return cls()
        prompt = _tokens(usage.get("prompt_tokens", usage.get("input_tokens")))
        completion = _tokens(usage.get("completion_tokens", usage.get("output_tokens")))
        total = _tokens(usage.get("total_tokens")) or prompt + completion
        details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details")
        out_details = usage.get("completion_tokens_details") or usage.get("output_tokens_details")
        cached = _tokens(details.get("cached_tokens")) if isinstance(details, dict) else 0
        reasoning = _tokens(out_details.get("reasoning_tokens")) if isinstance(out_details, dict) else 0
        return cls(prompt, completion, total, cached, reasoning)


class LineState:
    """Per-line reads and writes. One instance per process; safe to share between threads."""

    def __init__(self, client: redis.Redis[bytes]) -> None:
        self.redis = client
        self._claim = client.register_script(script("claim.lua"))
        self._renew = client.register_script(script("renew.lua"))
        self._record = client.register_script(script("record.lua"))

    def claim(self, batch_id: str, line: int, owner: str, lease_s: float) -> Claim:
        """Take the lease of ``line`` and read what its call needs, in one round trip."""
        reply = self._claim(
            keys=[
                keys.batch_record(batch_id),
                keys.batch_outcomes(batch_id),
                keys.batch_leases(batch_id),
                keys.batch_index(batch_id),
                keys.batch_open(batch_id),
                keys.batch_attempts(batch_id),
            ],
            args=[line, owner, int(lease_s * 1000), INDEX_ENTRY.size],
        )
        return Claim.decode(reply)

    def renew_on(
        self, pipe: redis.client.Pipeline[bytes], batch_id: str, owner: str, lines: Iterable[int], lease_s: float
    ) -> None:
        """Queue the heartbeat of ``owner``'s leases on ``lines`` of one batch onto ``pipe``."""
        lua.run(
            self.redis,
            pipe,
            self._renew,
            [keys.batch_leases(batch_id), keys.batch_open(batch_id)],
            [owner, int(lease_s * 1000), *lines],
        )

    def hold_for_requeue(
        self, batch_id: str, line: int, back_in_s: float, lease_s: float, *, refund_attempt: bool = False
    ) -> None:
        """Keep the line leased while it waits in a countdown, so it is re-sent only if that wait is lost.

        ``refund_attempt``: the claim counted an attempt that was never made (the rate limit said wait).
        """
        expiry_ms = int((time.time() + back_in_s + lease_s) * 1000)
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(keys.batch_leases(batch_id), str(line), f"{expiry_ms}:{REQUEUE_OWNER}")
            pipe.zadd(keys.batch_open(batch_id), {str(line): expiry_ms}, xx=True)
            if refund_attempt:
                pipe.hincrby(keys.batch_attempts(batch_id), str(line), -1)
            pipe.execute()

    def release(self, batch_id: str, line: int) -> None:
        self.redis.hdel(keys.batch_leases(batch_id), str(line))

    def add_attempt(self, batch_id: str, line: int) -> int:
        return int(self.redis.hincrby(keys.batch_attempts(batch_id), str(line), 1))

    def record_on(
        self,
        pipe: redis.client.Pipeline[bytes] | None,
        batch_id: str,
        account: str,
        line: int,
        outcome: dict[str, Any],
        *,
        success: bool,
        metric: str,
        extra_counter: str = "",
        usage: Usage | None = None,
    ) -> Any:
        """Record the outcome of ``line`` once (queued on ``pipe``, or run now when it is None)."""
        u = usage or Usage()
        return lua.run(
            self.redis,
            pipe,
            self._record,
            [
                keys.batch_outcomes(batch_id),
                keys.batch_counts(batch_id),
                keys.batch_leases(batch_id),
                keys.batch_record(batch_id),
                keys.batch_open(batch_id),
                keys.metrics_totals(),
                keys.sched_queued(),
                keys.sched_account_queued(account),
                keys.metrics_account(account),
                keys.metrics_accounts(),
            ],
            [
                line,
                outcome_json(outcome),
                "completed" if success else "failed",
                extra_counter,
                metric,
                u.input_tokens,
                u.output_tokens,
                u.total_tokens,
                u.cached_tokens,
                u.reasoning_tokens,
                account,
            ],
        )

    def load_scripts(self) -> None:
        """Load the scripts that pipelines run by sha (at start, and after Redis lost them)."""
        lua.load(self.redis, self._claim, self._renew, self._record)

    @staticmethod
    def recorded(reply: Any) -> OutcomeRecorded:
        """The record script's reply (name/value pairs)."""
        f = lua.fields(reply)
        return OutcomeRecorded(bool(int(f["recorded"])), int(f["done"]), int(f["total"]))

    def index_entry(self, batch_id: str, line: int) -> IndexEntry | None:
        """Where request ``line`` (0-based) sits in the input; None when the index is gone."""
        start = line * INDEX_ENTRY.size
        raw = self.redis.getrange(keys.batch_index(batch_id), start, start + INDEX_ENTRY.size - 1)  # type: ignore[no-untyped-call]
        return unpack_index_entry(bytes(raw))

    def has_index(self, batch_id: str) -> bool:
        return bool(self.redis.exists(keys.batch_index(batch_id)))

    def iter_outcomes(self, batch_id: str, total: int, page: int = 500) -> Iterator[tuple[int, bytes | None]]:
        """(line, outcome JSON or None) for every line in input order, fetched a page at a time."""
        okey = keys.batch_outcomes(batch_id)
        for start in range(0, total, page):
            lines = list(range(start, min(start + page, total)))
            yield from zip(lines, self.redis.hmget(okey, [str(n) for n in lines]), strict=True)

    def missing_lines(self, batch_id: str, total: int) -> list[int]:
        """Lines with no outcome and no live lease (a countdown's hold counts as live)."""
        now_ms = int(time.time() * 1000)
        leases = {int(k): lease_expiry(v) for k, v in self.redis.hgetall(keys.batch_leases(batch_id)).items()}
        return [
            line
            for line, value in self.iter_outcomes(batch_id, total)
            if value is None and leases.get(line, 0) <= now_ms
        ]

    def outcome_count(self, batch_id: str) -> int:
        return int(self.redis.hlen(keys.batch_outcomes(batch_id)))


def outcome_json(outcome: dict[str, Any]) -> str:
    """The output line as strict JSON: an upstream's NaN or Infinity becomes null (it is not JSON)."""
    try:
        return json.dumps(outcome, separators=(",", ":"), allow_nan=False)
    except ValueError:
        return json.dumps(_finite(outcome), separators=(",", ":"), allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def lease_expiry(value: bytes | str) -> int:
    """The expiry (ms, Redis clock) of a stored lease ``<expiry>:<owner>``."""
    text = value.decode() if isinstance(value, bytes) else value
    head = text.split(":", 1)[0]
    return int(head) if head.isdigit() else 0
