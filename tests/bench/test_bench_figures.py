"""The bench's arithmetic without a stack: ideal times, medians, ratios, targets, and the command line."""

from __future__ import annotations

import pytest

from bench.cli import headline, parse_args
from bench.report import Measurement, median_of, summary, table
from bench.scenarios import DEFAULT_MAX_IN_FLIGHT, SCENARIOS, select


def test_ideal_is_the_longer_of_latency_over_in_flight_and_rate_limit() -> None:
    # Given the scenarios, then their ideal times are n * latency / in-flight or n / limit
    assert SCENARIOS["inflight64"].ideal_s(64) == pytest.approx(2000 * 0.2 / 64)
    assert SCENARIOS["long"].ideal_s(1000) == pytest.approx(6.0)
    assert SCENARIOS["ratelimit"].ideal_s(SCENARIOS["ratelimit"].in_flight) == pytest.approx(30.0)
    assert SCENARIOS["zero"].ideal_s(64) is None
    assert SCENARIOS["zero"].in_flight == DEFAULT_MAX_IN_FLIGHT


def test_default_timeout_leaves_room_for_the_target_and_stays_bounded() -> None:
    for s in SCENARIOS.values():
        ideal = s.ideal_s(s.in_flight) or s.requests / 100
        assert ideal / 0.8 < s.default_timeout_s() <= 20 + 3 * ideal + 1e-9


def test_median_is_field_by_field_and_a_timeout_marks_it() -> None:
    runs = [Measurement("batchq", 10, completed=10, wall_s=w, rps=10 / w, cpu_s=c) for w, c in ((1.0, 3.0), (2.0, 1.0))]
    runs.append(Measurement("batchq", 10, completed=4, wall_s=9.0, rps=0.4, timed_out=True, ok=False))
    m = median_of(runs)
    assert m.wall_s == 1.5 and m.cpu_s == 2.0  # the failed run is left out of the medians
    assert m.timed_out and not m.ok


def test_cpu_per_request_counts_only_what_was_done_after_a_timeout() -> None:
    assert Measurement("batchq", 100, completed=100, cpu_s=1.0).cpu_ms_per_request == 10.0
    assert Measurement("batchq", 100, completed=20, failed=5, cpu_s=1.0, timed_out=True).cpu_ms_per_request == 40.0


def test_headline_ratios_and_targets() -> None:
    sides = {
        "batchq": Measurement("batchq", 100, completed=100, rps=300.0, efficiency=0.85),
        "celery": Measurement("celery", 100, completed=100, rps=400.0),
        "asyncio": Measurement("asyncio", 100, completed=100, rps=1000.0),
    }
    h = headline(sides)
    assert h["x_celery"] == 0.75 and h["x_asyncio"] == 0.3 and h["x_cookbook"] is None
    checks = [(t.label, t.value(h), t.threshold) for t in SCENARIOS["zero"].targets]
    assert checks == [("batchq/celery >= 0.6", 0.75, 0.6), ("batchq/asyncio >= 0.3", 0.3, 0.3)]
    text = summary([("zero", h, checks, True)])
    assert "batchq/celery >= 0.6: 0.75 ok" in text and "batchq/asyncio >= 0.3: 0.30 ok" in text
    shown = table("t", list(sides.values()))
    assert "bq/celery" in shown and "bq/asyncio" in shown


def test_command_line_defaults_to_the_plain_worker_command() -> None:
    args = parse_args([])
    assert args.pools == [None] and args.concurrency is None  # no -P / -c unless asked
    assert [s.key for s in args.scenarios] == list(SCENARIOS)
    args = parse_args(["--scenario", "1,inflight64", "--no-celery", "--requests", "50", "--pool", "threads,gevent"])
    assert [s.key for s in args.scenarios] == ["zero", "inflight64"]
    assert all("celery" not in s.sides and s.requests == 50 for s in args.scenarios)
    assert args.pools == ["threads", "gevent"]
    with pytest.raises(KeyError):
        select("nope")
    with pytest.raises(SystemExit):
        parse_args(["--pool", "fibers"])


def test_compare_prints_before_and_after_per_scenario() -> None:
    from dataclasses import asdict

    from bench.cli import scenario_dict
    from bench.compare import compare

    def report(commit: str, rps: float, timed_out: bool) -> dict[str, object]:
        m = Measurement("batchq", 2000, completed=2000, rps=rps, pool="threads -c 64 x 1", timed_out=timed_out)
        h = headline({"batchq": m})
        return {
            "commit": commit,
            "results": [
                {
                    "scenario": scenario_dict(SCENARIOS["inflight64"]),
                    "medians": {"batchq": asdict(m)},
                    "headline": h,
                    "targets": [{"label": "efficiency >= 0.8", "value": 0.5, "threshold": 0.8, "met": False}],
                }
            ],
        }

    text = compare(report("aaa", 9.6, True), report("bbb", 280.0, False))
    assert "Before: commit aaa. After: commit bbb." in text
    assert "| batchq requests/s | 9.6 | 280.0 |" in text
    assert "(timed out)" in text and "| target: efficiency >= 0.8 | 0.50 missed | 0.50 missed |" in text
