"""The limiter's Lua scripts, read from the ``.lua`` files next to this module.

Each script file opens with its KEYS/ARGV contract; ``lib.lua`` (the shared key layout, common arguments and
helpers) is prepended to every one, so a script is one self-contained text for ``EVAL``/``EVALSHA``.
"""

from __future__ import annotations

from functools import cache

from batchq import lua

#: The scripts a :class:`~batchq.ratelimit.limiter.RateLimiter` registers, by file stem.
SCRIPT_NAMES = ("acquire", "wait", "release", "keep", "renew", "reap", "cooldown", "stats")


@cache
def script_text(name: str) -> str:
    """``lib.lua`` followed by ``<name>.lua``.

    Raises:
        ValueError: ``name`` is not one of :data:`SCRIPT_NAMES`.
    """
    if name not in SCRIPT_NAMES:
        raise ValueError(f"no limiter script named {name!r}")
    return lua.read("batchq.ratelimit", name, prelude="lib")
