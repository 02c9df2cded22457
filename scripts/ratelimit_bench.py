"""Redis commands (and client CPU) per request of the rate limiter, with many waiting threads.

N threads share one route: each takes a grant (``acquire``), holds it for ``--hold-ms`` (the upstream call) and
releases it, until ``--requests`` grants were taken. Commands are counted with ``INFO commandstats`` on the given
redis-server (commands inside Lua scripts included), so use a server nothing else talks to. ``--module`` picks the
limiter implementation (a module path or a ``.py`` file, e.g. the pre-reservation one from git history), so the
same harness measures before and after:

    git show 1e68ab6:batchq/ratelimit.py > /tmp/old_ratelimit.py
    redis-server --port 16399 --save '' --appendonly no --daemonize yes
    python scripts/ratelimit_bench.py --redis-url redis://127.0.0.1:16399/0 --threads 64,256
    python scripts/ratelimit_bench.py --redis-url redis://127.0.0.1:16399/0 --threads 64,256 \\
        --module /tmp/old_ratelimit.py
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import threading
import time
from types import ModuleType
from typing import Any

import redis


def load(module: str) -> ModuleType:
    if not module.endswith(".py"):
        return importlib.import_module(module)
    spec = importlib.util.spec_from_file_location("limiter_under_test", module)
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = loaded  # dataclasses look their module up there
    spec.loader.exec_module(loaded)
    return loaded


def command_calls(client: redis.Redis[Any]) -> int:
    stats: dict[str, Any] = client.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k not in ("cmdstat_info", "cmdstat_flushdb"))


def run(mod: ModuleType, url: str, threads: int, requests: int, rpm: int, cap: int, hold_s: float) -> dict[str, Any]:
    admin = redis.Redis.from_url(url)
    admin.flushdb()
    limits = mod.RouteLimits(rpm=rpm, max_in_flight=cap)
    lock = threading.Lock()
    todo = iter(range(requests))
    held, most, denied = 0, 0, 0
    clients = [redis.Redis.from_url(url) for _ in range(threads)]
    limiters = [mod.RateLimiter(c, "bench/route", limits, lease_s=30) for c in clients]
    for limiter in limiters[:1]:  # load the scripts once, outside the count
        limiter.release(limiter.acquire(max_wait_s=5))
    admin.flushdb()

    def work(limiter: Any) -> None:
        nonlocal held, most, denied
        while True:
            with lock:
                if next(todo, None) is None:
                    return
            grant = limiter.acquire(max_wait_s=120)
            if not isinstance(grant, mod.Grant):
                with lock:
                    denied += 1
                continue
            with lock:
                held += 1
                most = max(most, held)
            time.sleep(hold_s)
            with lock:
                held -= 1
            limiter.release(grant, 0)

    before, cpu, started = command_calls(admin), time.process_time(), time.monotonic()
    workers = [threading.Thread(target=work, args=(limiter,)) for limiter in limiters]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    elapsed, cpu = time.monotonic() - started, time.process_time() - cpu
    calls = command_calls(admin) - before
    for c in [admin, *clients]:
        c.close()
    return {
        "threads": threads,
        "seconds": elapsed,
        "req_per_s": requests / elapsed,
        "commands_per_request": calls / requests,
        "client_cpu_ms_per_request": cpu * 1000 / requests,
        "max_in_flight_seen": most,
        "denied": denied,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--redis-url", required=True)
    p.add_argument("--module", default="batchq.ratelimit")
    p.add_argument("--threads", default="64,256", help="comma list")
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--rpm", type=int, default=6000)
    p.add_argument("--max-in-flight", type=int, default=16)
    p.add_argument("--hold-ms", type=float, default=100.0)
    args = p.parse_args()
    mod = load(args.module)
    print(f"module {args.module}: rpm {args.rpm}, max_in_flight {args.max_in_flight}, hold {args.hold_ms} ms")
    for n in (int(x) for x in args.threads.split(",")):
        r = run(mod, args.redis_url, n, args.requests, args.rpm, args.max_in_flight, args.hold_ms / 1000)
        print(
            f"threads {r['threads']:4d}: {r['seconds']:6.2f}s {r['req_per_s']:7.1f} req/s  "
            f"{r['commands_per_request']:6.1f} commands/request  {r['client_cpu_ms_per_request']:5.2f} ms CPU/request  "
            f"max in flight {r['max_in_flight_seen']}  denied {r['denied']}"
        )


if __name__ == "__main__":
    main()
