"""The bench's scenarios (issue 10's set), their ideal times and the targets the summary checks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from batchq.config import Settings

#: Sides a scenario can measure: batchq through its HTTP API, the raw Celery chord, two asyncio baselines.
SIDES = ("batchq", "celery", "asyncio", "cookbook")
#: What each side is, for table titles.
SIDE_TITLES = {
    "batchq": "batchq through its HTTP API",
    "celery": "raw Celery chord of one-POST tasks, same concurrency and pool (threads where batchq runs gevent)",
    "asyncio": "asyncio, one httpx.AsyncClient per concurrent request",
    "cookbook": "asyncio + aiohttp, cookbook api_request_parallel_processor style",
}
#: batchq's own default for BATCHQ_MAX_IN_FLIGHT (what the ideal assumes when a scenario does not set it).
DEFAULT_MAX_IN_FLIGHT: int = Settings.model_fields["max_in_flight"].default


@dataclass(frozen=True)
class Target:
    """An acceptance figure from issue 10, checked in the summary."""

    label: str
    threshold: float
    value: Callable[[dict[str, float | None]], float | None]
    """Reads the scenario's headline figures (see ``headline`` in cli.py)."""


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    requests: int
    latency_ms: float
    rpm: int = 0
    max_in_flight: int | None = None
    """BATCHQ_MAX_IN_FLIGHT for the workers; None keeps batchq's default."""
    workers: int = 1
    sides: tuple[str, ...] = ("batchq",)
    baseline_concurrency: int = 64
    """Requests in flight for the asyncio baselines."""
    targets: tuple[Target, ...] = field(default=(), compare=False)

    @property
    def in_flight(self) -> int:
        return self.max_in_flight or DEFAULT_MAX_IN_FLIGHT

    def ideal_s(self, in_flight: int | None) -> float | None:
        """The shortest time the limits allow: N / rate limit, or N · latency / requests in flight."""
        parts = []
        if self.rpm:
            parts.append(self.requests / (self.rpm / 60))
        if self.latency_ms > 0 and in_flight:
            parts.append(self.requests * self.latency_ms / 1000 / in_flight)
        return max(parts) if parts else None

    def default_timeout_s(self) -> float:
        """Room for a working batchq (efficiency >= 0.8 needs 1.25 x ideal), bounded for a slow one: the figures are
        still taken when it runs out, so the before/after table costs minutes, not hours."""
        floor = self.requests / 100 if self.latency_ms == 0 else 0.0
        return 20.0 + 3 * max(self.ideal_s(self.in_flight) or 0.0, floor)


def _t(label: str, threshold: float, key: str) -> Target:
    return Target(label, threshold, lambda h: h.get(key))


SCENARIOS: dict[str, Scenario] = {
    s.key: s
    for s in (
        Scenario(
            "zero",
            "0 ms upstream, no rate limit, 1 worker process",
            3000,
            0.0,
            sides=("batchq", "celery", "asyncio"),
            targets=(_t("batchq/celery >= 0.6", 0.6, "x_celery"), _t("batchq/asyncio >= 0.3", 0.3, "x_asyncio")),
        ),
        Scenario(
            "inflight64",
            "200 ms upstream, BATCHQ_MAX_IN_FLIGHT=64, 1 worker process",
            2000,
            200.0,
            max_in_flight=64,
            sides=("batchq", "celery"),
            targets=(_t("batchq/celery >= 0.9", 0.9, "x_celery"), _t("efficiency >= 0.8", 0.8, "efficiency")),
        ),
        Scenario(
            "inflight256",
            "200 ms upstream, BATCHQ_MAX_IN_FLIGHT=256, 2 worker processes",
            4000,
            200.0,
            max_in_flight=256,
            workers=2,
            sides=("batchq", "cookbook"),
            baseline_concurrency=256,
            targets=(_t("batchq/cookbook >= 1.0", 1.0, "x_cookbook"),),
        ),
        Scenario(
            "long",
            "2 s upstream, BATCHQ_MAX_IN_FLIGHT=1000, 2 worker processes",
            3000,
            2000.0,
            max_in_flight=1000,
            workers=2,
            targets=(_t("efficiency >= 0.8", 0.8, "efficiency"),),
        ),
        Scenario(
            "ratelimit",
            "200 ms upstream, 6,000 RPM rate limit, 1 worker process",
            3000,
            200.0,
            rpm=6000,
            sides=("batchq", "cookbook"),
            targets=(_t("utilization >= 0.95", 0.95, "efficiency"),),
        ),
    )
}
#: Older names still accepted by --scenario.
ALIASES = {"1": "zero", "throughput": "zero", "2": "ratelimit", "64": "inflight64", "256": "inflight256"}


def select(names: str) -> list[Scenario]:
    """Scenarios named in a comma list (``all`` = every one, in the table's order).

    Raises:
        KeyError: an unknown name.
    """
    if names == "all":
        return list(SCENARIOS.values())
    out = []
    for raw in names.split(","):
        key = ALIASES.get(raw.strip(), raw.strip())
        if key not in SCENARIOS:
            raise KeyError(raw)
        out.append(SCENARIOS[key])
    return out


def override(
    s: Scenario,
    *,
    requests: int | None = None,
    latency_ms: float | None = None,
    rpm: int | None = None,
    max_in_flight: int | None = None,
    workers: int | None = None,
    baseline_concurrency: int | None = None,
    sides: tuple[str, ...] | None = None,
) -> Scenario:
    """``s`` with the command line's overrides (None = keep the scenario's)."""
    return replace(
        s,
        requests=requests or s.requests,
        latency_ms=s.latency_ms if latency_ms is None else latency_ms,
        rpm=s.rpm if rpm is None else rpm,
        max_in_flight=max_in_flight or s.max_in_flight,
        workers=workers or s.workers,
        baseline_concurrency=baseline_concurrency or s.baseline_concurrency,
        sides=s.sides if sides is None else sides,
    )
