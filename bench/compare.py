"""``python -m bench.compare BEFORE.json AFTER.json``: the before/after table of two bench runs, in Markdown.

Reads the ``--json`` files of two runs (any commits; scenarios matched by name) and prints one row per figure
with both values and the issue's targets, ready for docs/bench.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

#: Rows: label, where the value is (``headline`` key or ``side.field``), digits.
ROWS: tuple[tuple[str, str, int], ...] = (
    ("batchq requests/s", "headline.req_s", 1),
    ("efficiency (ideal / time)", "headline.efficiency", 2),
    ("batchq / raw Celery (requests/s)", "headline.x_celery", 2),
    ("batchq / asyncio httpx (requests/s)", "headline.x_asyncio", 2),
    ("batchq / cookbook (requests/s)", "headline.x_cookbook", 2),
    ("CPU per request, all batchq processes (ms)", "headline.cpu_ms", 2),
    ("Redis commands per request", "headline.redis_cmds", 1),
    ("peak RSS per worker process (MB)", "headline.rss_worker_mb", 1),
    ("RSS per in-flight request (KB)", "headline.rss_kb_per_in_flight", 1),
    ("requests in flight at upstream (peak)", "batchq.peak_in_flight", 0),
    ("upstream call p50 (ms)", "batchq.latency_p50_ms", 1),
    ("upstream call p99 (ms)", "batchq.latency_p99_ms", 1),
    ("raw Celery requests/s", "celery.rps", 1),
    ("raw Celery CPU per request (ms)", "celery.cpu_ms_per_request", 2),
    ("raw Celery Redis commands per request", "celery.redis_commands_per_request", 1),
)


def _value(result: dict[str, Any], where: str) -> Any:
    part, key = where.split(".", 1)
    source = result["headline"] if part == "headline" else result["medians"].get(part, {})
    return source.get(key)


def _cell(value: Any, digits: int) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def _by_scenario(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["scenario"]["key"]: r for r in report["results"]}


def compare(before: dict[str, Any], after: dict[str, Any]) -> str:
    """The Markdown tables: one per scenario found in both runs."""
    b_all, a_all = _by_scenario(before), _by_scenario(after)
    out = [f"Before: commit {before.get('commit', '?')}. After: commit {after.get('commit', '?')}. Medians."]
    for key in [k for k in a_all if k in b_all]:
        b, a = b_all[key], a_all[key]
        s = a["scenario"]
        limit = f"{s['rpm']:,} RPM" if s["rpm"] else "no rate limit"
        out += [
            "",
            f"**{key}**: {s['requests']:,} requests, {s['latency_ms']:g} ms upstream, {limit}, "
            f"BATCHQ_MAX_IN_FLIGHT={s['max_in_flight'] or 'default'}, {s['workers']} worker process(es)",
            "",
            "| figure | before | after |",
            "|---|---:|---:|",
            f"| pool the workers ran | {b['medians']['batchq']['pool']} | {a['medians']['batchq']['pool']} |",
            f"| completed / N | {_done(b)} | {_done(a)} |",
        ]
        for label, where, digits in ROWS:
            vb, va = _value(b, where), _value(a, where)
            if vb is None and va is None:
                continue
            out.append(f"| {label} | {_cell(vb, digits)} | {_cell(va, digits)} |")
        for tb, ta in zip(b["targets"], a["targets"], strict=False):
            out.append(f"| target: {ta['label']} | {_met(tb)} | {_met(ta)} |")
    return "\n".join(out)


def _done(result: dict[str, Any]) -> str:
    m = result["medians"]["batchq"]
    return f"{m['completed']:,}/{m['requests']:,}" + (" (timed out)" if m["timed_out"] else "")


def _met(target: dict[str, Any]) -> str:
    value = target["value"]
    return "–" if value is None else f"{value:.2f} {'met' if target['met'] else 'missed'}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__.split("\n")[0])
    p.add_argument("before", type=Path)
    p.add_argument("after", type=Path)
    args = p.parse_args(argv)
    print(compare(json.loads(args.before.read_text()), json.loads(args.after.read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
