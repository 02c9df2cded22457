#!/bin/sh
# Entry point of the batchq image: wait until Redis answers, then exec the command.
#
# `exec` replaces this shell, so the command (celery, batchq api, ...) becomes PID 1 and receives SIGTERM itself:
# Celery then does its warm shutdown (finish running tasks, put reserved messages back) and uvicorn drains its
# connections. A shell left in between would swallow the signal, and the process would be SIGKILLed at the end
# of the grace period with its tasks cut off.
#
# WAIT_FOR_REDIS_S: how long to wait for Redis before giving up (default 60; 0 skips the wait, e.g. for
# `batchq sim` or the CLI). Celery itself retries the broker forever, so this mostly spares the API from starting
# into 503s and makes a wrong URL or password fail fast and visibly instead of looping in the logs.
set -eu

if [ "$#" -eq 0 ]; then
    set -- batchq api --host 0.0.0.0 --port 8000
fi

if [ "${WAIT_FOR_REDIS_S:-60}" != "0" ]; then
    python - "${WAIT_FOR_REDIS_S:-60}" <<'PY'
import os
import sys
import time

import redis

timeout_s = float(sys.argv[1])
url = os.environ.get("BATCHQ_REDIS_URL", "redis://127.0.0.1:6379/0")  # the default of batchq.config
deadline = time.monotonic() + timeout_s
delay_s = 0.5
while True:
    try:
        redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3).ping()
        break
    except redis.exceptions.AuthenticationError:
        # Waiting will not fix a wrong password. The URL is never printed: it holds the password.
        sys.exit("entrypoint: Redis refused the credentials in BATCHQ_REDIS_URL")
    except redis.exceptions.BusyLoadingError:
        reason = "Redis is loading its data (AOF replay)"
    except redis.exceptions.RedisError as exc:
        reason = type(exc).__name__
    if time.monotonic() >= deadline:
        sys.exit(f"entrypoint: Redis not ready after {timeout_s:.0f}s ({reason}); check BATCHQ_REDIS_URL")
    print(f"entrypoint: waiting for Redis ({reason})", file=sys.stderr, flush=True)
    time.sleep(delay_s)
    delay_s = min(delay_s * 2, 5.0)
PY
fi

exec "$@"
