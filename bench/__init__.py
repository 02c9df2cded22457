"""``python -m bench`` (``make bench``): batchq end to end against a plain asyncio client, same simulator.

Modules:

* ``procs``: child processes (own session, log file, stopped with their whole group) and a sampler of their
  peak RSS and CPU time.
* ``stack``: the bench's stack on free loopback ports: redis-server, ``batchq sim``, ``batchq api``, N workers.
* ``worker``: the Celery worker entry the bench starts (``celery -A workers worker`` plus a timing probe).
* ``baseline``: a single-process asyncio/aiohttp client in the style of the OpenAI cookbook's
  ``api_request_parallel_processor`` (token buckets for RPM/TPM, a concurrency cap, retries on 429/5xx).
* ``measure``: one measurement of each side; ``report``: medians, ratios and the table; ``cli``: flags, scenarios.

Nothing here is imported by batchq itself, and this package imports nothing heavy at import time, because
``python -m bench.worker`` must let gevent monkey-patch before anything else is loaded.
"""
