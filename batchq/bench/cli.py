"""Command line of the bench: scenarios, repeats, pools; prints one table per (pool, scenario) and a summary.

Every repeat runs on a fresh stack (new Redis, simulator, API and workers), and runs both sides on it, the
baseline after batchq on even repeats and before it on odd ones, so that drift on a noisy machine spreads evenly.
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
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from batchq.bench.measure import BenchFailure, make_requests, measure_baseline, measure_batchq
from batchq.bench.procs import ProcGroup
from batchq.bench.report import Measurement, emit, median_of, summary, table
from batchq.bench.stack import DEFAULT_CONCURRENCY, Stack, StackSpec, start_stack


@dataclass(frozen=True)
class Scenario:
    key: str
    name: str
    requests: int
    latency_ms: float
    rpm: int


#: The issue's two scenarios: raw throughput, and utilization of a rate limit at a realistic latency.
SCENARIOS = {
    "1": Scenario("1", "throughput", 5000, 0.0, 0),
    "2": Scenario("2", "ratelimit", 3000, 200.0, 6000),
}
ALIASES = {"throughput": "1", "ratelimit": "2"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m batchq.bench", description=__doc__.split("\n")[0])
    p.add_argument(
        "--scenario",
        default="all",
        help="1 (or throughput: no latency, no limit), 2 (or ratelimit: 200 ms at 6000 RPM), or all",
    )
    p.add_argument("--requests", type=int, help="requests per batch (default: 5000 for 1, 3000 for 2)")
    p.add_argument("--workers", type=int, default=1, help="Celery worker processes (default 1)")
    p.add_argument(
        "--pool", default="threads", help="threads, gevent or prefork; a comma-separated list runs each in turn"
    )
    p.add_argument("--concurrency", type=int, help="worker -c (default: threads 64, gevent 256, prefork 8)")
    p.add_argument("--latency-ms", type=float, help="simulator latency (overrides the scenario's)")
    p.add_argument("--rpm", type=int, help="rate limit for batchq, the simulator and the baseline (0 = none)")
    p.add_argument("--repeat", type=int, default=3, help="runs per measurement; the table shows medians")
    p.add_argument("--baseline-concurrency", type=int, default=64, help="baseline's cap on requests in flight")
    p.add_argument("--max-in-flight", type=int, help="BATCHQ_MAX_IN_FLIGHT for the workers (default: batchq's)")
    p.add_argument("--no-baseline", action="store_true", help="measure batchq only")
    p.add_argument("--timeout", type=float, help="seconds a batch may take (default: from N and the limit)")
    p.add_argument("--log-dir", type=Path, help="logs of every process (default: a new temporary folder)")
    p.add_argument("--json", type=Path, help="also write every figure as JSON here")
    args = p.parse_args(argv)
    keys = list(SCENARIOS) if args.scenario == "all" else [ALIASES.get(k, k) for k in args.scenario.split(",")]
    if any(k not in SCENARIOS for k in keys):
        p.error(f"--scenario: unknown {args.scenario!r}")
    args.scenarios = [_override(SCENARIOS[k], args) for k in keys]
    args.pools = [x.strip() for x in args.pool.split(",") if x.strip()]
    if any(x not in DEFAULT_CONCURRENCY for x in args.pools):
        p.error(f"--pool: one of {', '.join(DEFAULT_CONCURRENCY)}")
    if args.repeat < 1 or args.workers < 1 or (args.requests is not None and args.requests < 1):
        p.error("--repeat, --workers and --requests must be >= 1")
    return args


def _override(s: Scenario, args: argparse.Namespace) -> Scenario:
    return Scenario(
        s.key,
        s.name,
        args.requests or s.requests,
        s.latency_ms if args.latency_ms is None else args.latency_ms,
        s.rpm if args.rpm is None else args.rpm,
    )


def _timeout(args: argparse.Namespace, s: Scenario) -> float:
    if args.timeout:
        return float(args.timeout)
    ideal = s.requests / (s.rpm / 60) if s.rpm else 0.0
    return 60.0 + 3 * max(ideal, s.requests / 50)  # 50 req/s is far below anything batchq does here


class Bench:
    def __init__(self, args: argparse.Namespace, log_dir: Path) -> None:
        self.args = args
        self.log_dir = log_dir
        self.pids: list[int] = []
        self.results: list[dict[str, Any]] = []
        self.summary_rows: list[tuple[str, str, Measurement, Measurement | None]] = []

    def run(self) -> bool:
        ok = True
        for pool in self.args.pools:
            for scenario in self.args.scenarios:
                ok = self.run_one(pool, scenario) and ok
        return ok

    def run_one(self, pool: str, s: Scenario) -> bool:
        """``--repeat`` runs of one scenario on one pool, each on a fresh stack; prints the medians' table."""
        a = self.args
        conc = a.concurrency or DEFAULT_CONCURRENCY[pool]
        config = f"{pool} -c {conc} x {a.workers}"
        spec = StackSpec(
            workers=a.workers,
            pool=pool,
            concurrency=conc,
            latency_ms=s.latency_ms,
            rpm=s.rpm,
            max_in_flight=a.max_in_flight,
            max_requests=s.requests,
        )
        payload = make_requests(s.requests)
        runs: dict[str, list[Measurement]] = {"batchq": [], "baseline": []}
        for k in range(a.repeat):
            run_dir = self.log_dir / f"{pool}-{s.name}-{k + 1}"
            run_dir.mkdir(parents=True, exist_ok=True)
            emit(f"[{config} | scenario {s.key} {s.name} | run {k + 1}/{a.repeat}] logs in {run_dir}")
            sides = ["batchq"] + ([] if a.no_baseline else ["baseline"])
            for m in self.repeat_once(spec, s, payload, run_dir, sides if k % 2 == 0 else sides[::-1], k + 1):
                runs[m.system].append(m)
            shutil.rmtree(run_dir / "store", ignore_errors=True)
        batchq = median_of(runs["batchq"])
        baseline = median_of(runs["baseline"]) if runs["baseline"] else None
        limit = f"limit {s.rpm} RPM" if s.rpm else "no limit"
        title = (
            f"Scenario {s.key} ({s.name}): {s.requests} requests, upstream latency {s.latency_ms:g} ms, {limit};"
            f" batchq workers: {config}; baseline: asyncio, {a.baseline_concurrency} in flight;"
            f" median of {a.repeat}"
        )
        emit()
        emit(table(title, batchq, baseline))
        emit()
        self.summary_rows.append((config, f"{s.key} {s.name}", batchq, baseline))
        self.results.append(
            {
                "pool": pool,
                "concurrency": conc,
                "workers": a.workers,
                "scenario": asdict(s),
                "batchq": asdict(batchq),
                "baseline": asdict(baseline) if baseline else None,
                "runs": {side: [asdict(m) for m in ms] for side, ms in runs.items()},
            }
        )
        return batchq.ok and (baseline is None or baseline.ok)

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
            for side in sides:
                try:
                    m = self.measure(stack, s, payload, side, run)
                except BenchFailure as exc:
                    m = Measurement(side, s.requests, ok=False, error=str(exc).splitlines()[0][:300])
                    emit(f"  {side} FAILED: {exc}\n  log tails:\n{stack.logs()}")
                finally:
                    self.pids.extend(p.pid for p in group.procs if p.popen is not None)
                out.append(m)
                emit(
                    f"  {side:<8} {m.wall_s:7.2f} s  {m.rps:7.1f} req/s  completed {m.completed}/{m.requests}"
                    f"  429s {m.http_429}  retries {m.retries}" + ("" if m.ok else "  FAILED")
                )
        return out

    def measure(self, stack: Stack, s: Scenario, payload: bytes, side: str, run: int) -> Measurement:
        a = self.args
        if side == "batchq":
            return measure_batchq(stack, payload, s.requests, s.rpm, _timeout(a, s))
        return measure_baseline(
            stack,
            payload,
            s.requests,
            rpm=s.rpm,
            tpm=0,
            concurrency=a.baseline_concurrency,
            timeout_s=_timeout(a, s),
            name=f"baseline-{run}",
        )


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
    if len(bench.summary_rows) > 1:
        emit("Summary (medians; 'x base' = batchq requests/s / baseline requests/s)")
        emit(summary(bench.summary_rows))
    emit(f"\nlogs: {log_dir}   ({time.monotonic() - started:.0f} s in all)")
    return 0 if ok else 1
