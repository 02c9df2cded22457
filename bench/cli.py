"""Command line of the bench: scenarios, repeats, pools; prints one table per (pool, scenario) and a summary.

Every repeat runs on a fresh stack (new Redis, simulator, API and workers) and measures each side of the scenario
on it (batchq, the raw Celery chord, an asyncio baseline), rotating which goes first so that drift on a noisy
machine spreads evenly.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import asdict, fields
from pathlib import Path
from types import FrameType
from typing import Any

from bench.measure import BenchFailure, make_requests, measure_batchq
from bench.measure_ref import measure_baseline, measure_celery
from bench.procs import ProcGroup
from bench.report import Measurement, emit, median_of, summary, table
from bench.scenarios import SCENARIOS, SIDE_TITLES, SIDES, Scenario, override, select
from bench.stack import POOLS, Stack, StackSpec, start_stack


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    p.add_argument("--scenario", default="all", help=f"comma list of {', '.join(SCENARIOS)}, or all (the default)")
    p.add_argument("--requests", type=int, help="requests per batch (default: the scenario's)")
    p.add_argument("--workers", type=int, help="batchq worker processes (default: the scenario's)")
    p.add_argument(
        "--pool",
        help=f"{', '.join(POOLS)}; a comma list runs each in turn (default: the plain worker command's own pool)",
    )
    p.add_argument("--concurrency", type=int, help="worker concurrency (default: the plain worker command's own)")
    p.add_argument(
        "--no-pool-flags",
        action="store_true",
        help="pass --pool/--concurrency only as BATCHQ_WORKER_POOL/BATCHQ_WORKER_CONCURRENCY, not as -P/-c",
    )
    p.add_argument("--latency-ms", type=float, help="simulator latency (overrides the scenario's)")
    p.add_argument("--rpm", type=int, help="rate limit for batchq, the simulator and the baselines (0 = none)")
    p.add_argument("--max-in-flight", type=int, help="BATCHQ_MAX_IN_FLIGHT (overrides the scenario's)")
    p.add_argument("--repeat", type=int, default=3, help="runs per measurement; the tables show medians")
    p.add_argument("--baseline-concurrency", type=int, help="asyncio baselines' requests in flight")
    p.add_argument("--sides", help=f"comma list of {', '.join(SIDES)} (default: the scenario's; batchq always runs)")
    p.add_argument("--no-baseline", action="store_true", help="skip the asyncio baselines")
    p.add_argument("--no-celery", action="store_true", help="skip the raw Celery reference")
    p.add_argument(
        "--celery-concurrency", type=int, help="raw Celery worker's concurrency (default: the batchq worker's)"
    )
    p.add_argument("--timeout", type=float, help="seconds a batch may take (default: 20 + 3 x ideal)")
    p.add_argument("--log-dir", type=Path, help="logs of every process (default: a new temporary folder)")
    p.add_argument("--json", type=Path, help="also write every figure as JSON here")
    args = p.parse_args(argv)
    try:
        chosen = select(args.scenario)
    except KeyError as exc:
        p.error(f"--scenario: unknown {exc}; one of {', '.join(SCENARIOS)} or all")
    sides = None
    if args.sides:
        sides = tuple(["batchq"] + [x.strip() for x in args.sides.split(",") if x.strip() and x.strip() != "batchq"])
        if any(x not in SIDES for x in sides):
            p.error(f"--sides: one of {', '.join(SIDES)}")
    args.scenarios = [_with_args(sc, args, sides) for sc in chosen]
    args.pools = [x.strip() for x in args.pool.split(",") if x.strip()] if args.pool else [None]
    if any(x is not None and x not in POOLS for x in args.pools):
        p.error(f"--pool: one of {', '.join(POOLS)}")
    if args.repeat < 1 or (args.workers is not None and args.workers < 1) or (args.requests or 1) < 1:
        p.error("--repeat, --workers and --requests must be >= 1")
    return args


def _with_args(s: Scenario, args: argparse.Namespace, sides: tuple[str, ...] | None) -> Scenario:
    s = override(
        s,
        requests=args.requests,
        latency_ms=args.latency_ms,
        rpm=args.rpm,
        max_in_flight=args.max_in_flight,
        workers=args.workers,
        baseline_concurrency=args.baseline_concurrency,
        sides=sides,
    )
    drop = ({"asyncio", "cookbook"} if args.no_baseline else set()) | ({"celery"} if args.no_celery else set())
    return override(s, sides=tuple(x for x in s.sides if x not in drop))


def headline(sides: dict[str, Measurement]) -> dict[str, float | None]:
    """The figures the summary and the targets read."""
    b = sides["batchq"]
    out: dict[str, float | None] = {
        "req_s": b.rps,
        "efficiency": b.efficiency,
        "cpu_ms": b.cpu_ms_per_request,
        "redis_cmds": b.redis_commands_per_request,
        "rss_worker_mb": b.peak_rss_per_worker_mb,
        "rss_kb_per_in_flight": b.rss_per_in_flight_kb,
    }
    for name in SIDES[1:]:
        other = sides.get(name)
        out[f"x_{name}"] = b.rps / other.rps if other is not None and other.rps else None
    return out


def scenario_dict(s: Scenario) -> dict[str, Any]:
    return {f.name: getattr(s, f.name) for f in fields(s) if f.name != "targets"} | {
        "targets": [{"label": t.label, "threshold": t.threshold} for t in s.targets]
    }


class Bench:
    def __init__(self, args: argparse.Namespace, log_dir: Path) -> None:
        self.args = args
        self.log_dir = log_dir
        self.pids: list[int] = []
        self.results: list[dict[str, Any]] = []
        self.summary_rows: list[tuple[str, dict[str, float | None], list[tuple[str, float | None, float]], bool]] = []

    def run(self) -> bool:
        ok = True
        for pool in self.args.pools:
            for scenario in self.args.scenarios:
                ok = self.run_one(pool, scenario) and ok
        return ok

    def run_one(self, pool: str | None, s: Scenario) -> bool:
        """``--repeat`` runs of one scenario with one pool, each on a fresh stack; prints the medians' table."""
        a = self.args
        asked = f"{pool or 'default pool'}{f' -c {a.concurrency}' if a.concurrency else ''}"
        spec = StackSpec(
            workers=s.workers,
            pool=pool,
            concurrency=a.concurrency,
            latency_ms=s.latency_ms,
            rpm=s.rpm,
            max_in_flight=s.max_in_flight,
            max_requests=s.requests,
            pool_flags=not a.no_pool_flags,
        )
        payload = make_requests(s.requests)
        runs: dict[str, list[Measurement]] = {side: [] for side in s.sides}
        for k in range(a.repeat):
            run_dir = self.log_dir / f"{pool or 'default'}-{s.key}-{k + 1}"
            run_dir.mkdir(parents=True, exist_ok=True)
            emit(f"[{s.key} | {asked} x {s.workers} | run {k + 1}/{a.repeat}] logs in {run_dir}")
            order = list(s.sides[k % len(s.sides) :] + s.sides[: k % len(s.sides)])
            for m in self.repeat_once(spec, s, payload, run_dir, order, k + 1):
                runs[m.system].append(m)
            shutil.rmtree(run_dir / "store", ignore_errors=True)
        medians = {side: median_of(ms) for side, ms in runs.items() if ms}
        limit = f"{s.rpm} RPM" if s.rpm else "no rate limit"
        title = (
            f"Scenario {s.key}: {s.title}; {s.requests} requests, {s.latency_ms:g} ms, {limit},"
            f" BATCHQ_MAX_IN_FLIGHT={s.in_flight}; asked for {asked}; median of {a.repeat}\n"
            + "\n".join(f"  {side}: {SIDE_TITLES[side]}" for side in s.sides)
        )
        emit()
        emit(table(title, [medians[side] for side in s.sides if side in medians]))
        emit()
        ok = all(m.ok for m in medians.values())
        h = headline(medians)
        checks = [(t.label, t.value(h), t.threshold) for t in s.targets]
        self.summary_rows.append((f"{s.key} ({medians['batchq'].pool})", h, checks, ok))
        self.results.append(
            {
                "scenario": scenario_dict(s),
                "pool_asked": pool,
                "concurrency_asked": a.concurrency,
                "medians": {
                    side: asdict(m) | {"cpu_ms_per_request": m.cpu_ms_per_request} for side, m in medians.items()
                },
                "headline": h,
                "targets": [
                    {"label": lb, "value": v, "threshold": t, "met": v is not None and v >= t} for lb, v, t in checks
                ],
                "runs": {side: [asdict(m) for m in ms] for side, ms in runs.items()},
                "ok": ok,
            }
        )
        return ok

    def repeat_once(
        self, spec: StackSpec, s: Scenario, payload: bytes, run_dir: Path, sides: list[str], run: int
    ) -> list[Measurement]:
        """Start a stack, measure each side on it in the given order, stop the stack."""
        out: list[Measurement] = []
        with ProcGroup(run_dir) as group:
            try:
                stack = start_stack(spec, run_dir, group)
            except RuntimeError as exc:
                emit(f"  stack did not start: {exc}")
                return [Measurement(side, s.requests, ok=False, error=str(exc)[:300]) for side in sides]
            finally:
                self.pids.extend(p.pid for p in group.procs if p.popen is not None)
            emit(f"  batchq workers run {stack.pool_label()}")
            for side in sides:
                try:
                    m = self.measure(stack, s, payload, side, run)
                except BenchFailure as exc:
                    m = Measurement(side, s.requests, ok=False, error=str(exc).splitlines()[0][:300])
                    emit(f"  {side} FAILED: {exc}\n  log tails:\n{stack.logs()}")
                finally:
                    self.pids.extend(p.pid for p in group.procs if p.popen is not None)
                out.append(m)
                status = "" if m.ok else ("  TIMED OUT" if m.timed_out else "  FAILED")
                emit(
                    f"  {side:<8} {m.wall_s:7.2f} s  {m.rps:7.1f} req/s  completed {m.completed}/{m.requests}"
                    f"  CPU {m.cpu_ms_per_request:.2f} ms/req  {m.pool}{status}"
                )
        return out

    def measure(self, stack: Stack, s: Scenario, payload: bytes, side: str, run: int) -> Measurement:
        timeout = float(self.args.timeout or s.default_timeout_s())
        if side == "batchq":
            return measure_batchq(stack, s, payload, timeout)
        if side == "celery":
            return measure_celery(stack, s, timeout, run, self.args.celery_concurrency)
        return measure_baseline(stack, s, payload, side, timeout, run)


def revision() -> str:
    """The checkout's commit (read-only ``git rev-parse``), so figures can be tied to the code they measured."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() or "unknown"


def _raise_interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    """Run the bench; 0 when every measurement succeeded, 1 otherwise, 130 when interrupted."""
    args = parse_args(argv)
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="batchq-bench-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    # Stop the stack on SIGTERM as on Ctrl-C, and take Ctrl-C even if started with SIGINT ignored (`cmd &`).
    previous = signal.signal(signal.SIGTERM, _raise_interrupt), signal.signal(signal.SIGINT, _raise_interrupt)
    bench = Bench(args, log_dir)
    started = time.monotonic()
    rev = revision()
    emit(
        f"batchq bench at commit {rev}; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}; logs in {log_dir}"
    )
    try:
        ok = bench.run()
    except KeyboardInterrupt:
        emit("\ninterrupted: every process the bench started has been stopped")
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])
        if args.json:
            args.json.write_text(
                json.dumps(
                    {"results": bench.results, "pids": sorted(set(bench.pids)), "commit": rev, "log_dir": str(log_dir)},
                    indent=1,
                )
            )
    if bench.summary_rows:
        emit("Summary (medians; 'x celery' etc. = batchq requests/s / that side's requests/s)")
        emit(summary(bench.summary_rows))
    emit(f"\nlogs: {log_dir}   ({time.monotonic() - started:.0f} s in all)")
    return 0 if ok else 1
