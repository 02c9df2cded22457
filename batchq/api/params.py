"""Query-parameter checks shared by the list endpoints (FastAPI's own 422 is not OpenAI's error)."""

from __future__ import annotations

from batchq.errors import InvalidRequestError


def list_limit(raw: str | None, *, default: int, maximum: int) -> int:
    """``limit`` as an int in 1..maximum, else a 400 naming the parameter."""
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= maximum:
        raise InvalidRequestError(
            f"Invalid value for 'limit': {raw!r}. It must be an integer between 1 and {maximum}.",
            code="invalid_value",
            param="limit",
        )
    return value
