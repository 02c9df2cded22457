"""batchq's Lua scripts: how they are read, run and answered.

A room keeps its scripts as ``.lua`` files with an optional shared prelude (``lib.lua``) prepended to each, so one
text goes to ``EVAL``/``EVALSHA``. A script that answers more than one value answers name/value pairs
(``{'verdict', 'claimed', 'attempt', 3, ...}``), read by :func:`fields` in the one place that decodes that script's
reply; nothing reads a reply by position.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import redis


def read(package: str, name: str, prelude: str | None = None) -> str:
    """The text of ``<name>.lua`` in ``package`` (``prelude``'s file first, when given)."""
    folder = resources.files(package)
    text = folder.joinpath(f"{name}.lua").read_text("utf-8")
    if prelude is None:
        return text
    return folder.joinpath(f"{prelude}.lua").read_text("utf-8") + "\n" + text


def run(
    client: redis.Redis[Any], pipe: redis.client.Pipeline[Any] | None, code: Any, keys: list[str], args: list[Any]
) -> Any:
    """Run ``code`` (a registered Script) now, or queue it on ``pipe`` as a bare EVALSHA.

    A Script object on a pipeline makes redis-py send SCRIPT EXISTS on every execute (one more round trip per
    request); the caller of a pipeline catches NoScriptError (Redis restarted) with :func:`load`.
    """
    if pipe is None:
        return code(keys=keys, args=args, client=client)
    return pipe.evalsha(code.sha, len(keys), *keys, *args)


def load(client: redis.Redis[Any], *codes: Any) -> None:
    """SCRIPT LOAD each of ``codes`` (redis-py Script objects; the stubs lag behind redis-py 8, hence Any)."""
    for code in codes:
        client.script_load(code.script)  # type: ignore[no-untyped-call]


def fields(reply: Any) -> dict[str, Any]:
    """A reply of name/value pairs as a dict (names decoded; values as Redis gave them)."""
    items = list(reply or [])
    return {text(items[i]): items[i + 1] for i in range(0, len(items) - 1, 2)}


def text(value: Any) -> str:
    """A reply value as text (bytes decoded; numbers formatted)."""
    return value.decode() if isinstance(value, bytes) else str(value)
