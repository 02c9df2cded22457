"""Model routes: which upstream (URL, key, limits) serves each model.

The default route comes from ``BATCHQ_UPSTREAM_URL`` and friends. ``BATCHQ_ROUTES`` names a TOML or JSON file that
adds routes per model, or replaces the default with a ``"*"`` route::

    [[route]]
    model = "Llama-3.3-70B-Instruct"     # or models = ["a", "b"]; "*" is the default route
    url = "http://127.0.0.1:9000/v1"     # omitted: the default upstream (and its key)
    api_key = "sk-..."                   # or api_key_env = "UPSTREAM_KEY"; neither: no key
    rpm = 1200                           # omitted: 0, unlimited
    tpm = 0                              # omitted: 0, unlimited
    max_in_flight = 64                   # omitted: BATCHQ_MAX_IN_FLIGHT
    name = "vllm-a"                      # optional: models of this entry then share one limiter

The JSON form is ``{"route": [{...}, ...]}`` (``"routes"`` works too) or a bare list of entries. A route is one
upstream + model, and each route gets its own rate limiter: every model of an entry is a route of its own unless the
entry sets ``name``, and the default route (from the settings or a ``"*"`` entry) is one route shared by all the
models it serves.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from batchq.ratelimit import RouteLimits
from batchq.redact import register_secrets

#: The model name of the default route in a routes file.
DEFAULT_MODEL = "*"
#: Keys a routes-file entry may have; anything else is a typo worth an error.
ENTRY_KEYS = frozenset({"model", "models", "url", "api_key", "api_key_env", "rpm", "tpm", "max_in_flight", "name"})
#: Default ports, to spell every route name with an explicit port.
DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Route:
    """One upstream + model (or the default upstream for any model), with its limits."""

    name: str
    """Stable id, e.g. ``127.0.0.1:9000/Llama-3.3-70B-Instruct``; the limiter's Redis keys are built from it."""
    url: str
    """Base URL as the openai SDK takes it (``http://127.0.0.1:9000/v1``), no trailing slash."""
    api_key: str | None = field(repr=False)
    """Sent upstream as Bearer; kept out of ``repr``."""
    limits: RouteLimits


class RouteTable:
    """Routes by model, and the default route for the models no entry names.

    Args:
        routes: Model -> its route.
        default: The route of every other model, if any.
        default_models: The models the default route serves; None = any.
    """

    def __init__(
        self,
        routes: Mapping[str, Route] | None = None,
        default: Route | None = None,
        default_models: frozenset[str] | None = None,
    ) -> None:
        self._routes = dict(routes or {})
        self._default = default
        self._default_models = default_models

    @classmethod
    def from_settings(
        cls,
        *,
        upstream_url: str | None,
        upstream_api_key: str | None,
        rpm: int,
        tpm: int,
        max_in_flight: int,
        routes_path: str | None,
        served_models: frozenset[str] | None,
    ) -> RouteTable:
        """Build the table from settings (``BATCHQ_UPSTREAM_URL`` ... ``BATCHQ_ROUTES``, ``BATCHQ_SERVED_MODELS``).

        A ``"*"`` entry in the routes file takes the place of the default route from ``upstream_url``.
        ``served_models`` restricts whichever default route there is; models named by entries are served anyway.

        Raises:
            ValueError: On a bad URL or limit, or a routes file that cannot be read or parsed, or has a malformed
                entry (the message names the file and the entry's index), a duplicate model, or an
                ``api_key_env`` naming an unset variable.
        """
        base: Route | None = None
        if upstream_url:
            url = _base_url(upstream_url, "BATCHQ_UPSTREAM_URL")
            limits = RouteLimits(rpm, tpm, max_in_flight)
            _check_limits(limits, "BATCHQ_RATE_LIMIT_RPM/TPM, BATCHQ_MAX_IN_FLIGHT")
            base = Route(_route_name(url, DEFAULT_MODEL), url, upstream_api_key or None, limits)
        default, star_index = base, None
        routes: dict[str, Route] = {}
        if routes_path:
            names: dict[str, int] = {}
            for index, entry in enumerate(_load_entries(routes_path)):
                where = f"{routes_path}: route[{index}]"
                entry_routes = _parse_entry(entry, where, base, max_in_flight)
                for model, route in entry_routes.items():
                    if model == DEFAULT_MODEL:
                        if star_index is not None:
                            raise ValueError(f"{where}: a second '*' route (the first is route[{star_index}])")
                        default, star_index = route, index
                    elif model in routes:
                        raise ValueError(f"{where}: model {model!r} already has a route ({routes[model].name})")
                    else:
                        routes[model] = route
                for name in {route.name for route in entry_routes.values()}:
                    if name in names:
                        raise ValueError(f"{where}: route name {name!r} is already used by route[{names[name]}]")
                    names[name] = index
        # Wherever routes are loaded, their keys join the secrets every error line and log record is cleaned of.
        register_secrets(*(route.api_key for route in routes.values()), default.api_key if default else None)
        return cls(routes, default, served_models)

    def route_for(self, model: str | None) -> Route:
        """The route serving ``model``: its own route if an entry names it, else the default route if it serves it.

        Args:
            model: The batch's model (None: only an unrestricted default route serves it).

        Returns:
            The route.

        Raises:
            LookupError: When no route serves the model.
        """
        if model is not None and model in self._routes:
            return self._routes[model]
        if self._default is not None and (self._default_models is None or model in self._default_models):
            return self._default
        raise LookupError(f"no upstream serves model {model!r}")

    def served_models(self) -> frozenset[str] | None:
        """Every model some route serves; None when the default route serves any model."""
        if self._default is not None and self._default_models is None:
            return None
        extra = self._default_models if self._default is not None and self._default_models else frozenset()
        return frozenset(self._routes) | extra

    def routes(self) -> tuple[Route, ...]:
        """Every distinct route (the default one first), e.g. to report each limiter's stats."""
        seen = [self._default] if self._default is not None else []
        for route in self._routes.values():
            if route not in seen:
                seen.append(route)
        return tuple(seen)

    def total_in_flight(self) -> int:
        """The in-flight caps of every route added up (0 where a route has none: it counts as 64)."""
        return sum(route.limits.max_in_flight or 64 for route in self.routes())

    def url_for(self, route: Route, line_url: str) -> str:
        """The full upstream URL of an input line's ``url``.

        Args:
            route: The route the line goes to.
            line_url: The line's ``url``, e.g. ``/v1/chat/completions`` (a leading ``/v1`` is the base's own).

        Returns:
            E.g. ``http://127.0.0.1:9000/v1/chat/completions`` for the base ``http://127.0.0.1:9000/v1``.
        """
        path = line_url if line_url.startswith("/") else f"/{line_url}"
        if path == "/v1" or path.startswith("/v1/"):
            path = path[len("/v1") :]
        return f"{route.url}{path}"


def _load_entries(path: str) -> list[Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the routes file: {exc}") from exc
    suffix = Path(path).suffix.lower()
    as_json = suffix == ".json" or (suffix != ".toml" and text.lstrip().startswith(("{", "[")))
    data: Any
    try:
        data = json.loads(text) if as_json else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: not valid {'JSON' if as_json else 'TOML'}: {exc}") from exc
    if isinstance(data, dict):
        unknown = set(data) - {"route", "routes"}
        if unknown:
            raise ValueError(f"{path}: unknown top-level keys {sorted(unknown)}; expected [[route]] entries")
        data = data.get("route", data.get("routes"))
    if not isinstance(data, list) or not data:
        raise ValueError(f"{path}: expected a non-empty list of [[route]] entries")
    return data


def _parse_entry(entry: Any, where: str, base: Route | None, default_in_flight: int) -> dict[str, Route]:
    """Model -> route for one file entry; ``base`` is the default upstream from the settings, if any."""
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected a table/object, got {type(entry).__name__}")
    unknown = set(entry) - ENTRY_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)} (allowed: {sorted(ENTRY_KEYS)})")
    models = _models(entry, where)

    if "url" in entry:
        url = _base_url(_string(entry, "url", where), f"{where}: url")
        api_key = None
    elif base is not None:
        url, api_key = base.url, base.api_key
    else:
        raise ValueError(f"{where}: no url, and no default upstream (BATCHQ_UPSTREAM_URL) to inherit")
    if "api_key" in entry and "api_key_env" in entry:
        raise ValueError(f"{where}: set api_key or api_key_env, not both")
    if "api_key" in entry:
        api_key = _string(entry, "api_key", where)
    elif "api_key_env" in entry:
        var = _string(entry, "api_key_env", where)
        api_key = os.environ.get(var)
        if not api_key:
            raise ValueError(f"{where}: api_key_env names {var!r}, which is not set")

    limits = RouteLimits(
        rpm=_count(entry, "rpm", where, 0),
        tpm=_count(entry, "tpm", where, 0),
        max_in_flight=_count(entry, "max_in_flight", where, default_in_flight),
    )
    shared = _string(entry, "name", where) if "name" in entry else None
    if shared is not None:
        route = Route(_sanitize(shared), url, api_key, limits)
        return dict.fromkeys(models, route)
    return {model: Route(_route_name(url, model), url, api_key, limits) for model in models}


def _models(entry: Mapping[str, Any], where: str) -> list[str]:
    if ("model" in entry) == ("models" in entry):
        raise ValueError(f"{where}: set exactly one of model or models")
    if "model" in entry:
        return [_string(entry, "model", where)]
    models = entry["models"]
    if not isinstance(models, list) or not models or not all(isinstance(m, str) and m.strip() for m in models):
        raise ValueError(f"{where}: models must be a non-empty list of model names")
    if len(set(models)) != len(models):
        raise ValueError(f"{where}: models lists a model twice")
    return [m.strip() for m in models]


def _string(entry: Mapping[str, Any], key: str, where: str) -> str:
    value = entry[key]
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: {key} must be a non-empty string")
    return value.strip()


def _count(entry: Mapping[str, Any], key: str, where: str, default: int) -> int:
    value = entry.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{where}: {key} must be an integer >= 0 (0 = unlimited), got {value!r}")
    return value


def _check_limits(limits: RouteLimits, what: str) -> None:
    if min(limits.rpm, limits.tpm, limits.max_in_flight) < 0:
        raise ValueError(f"{what}: limits must be >= 0 (0 = unlimited), got {limits}")


def _base_url(raw: str, what: str) -> str:
    """``raw`` checked (http/https, a host, no query) and without its trailing slash."""
    url = raw.strip().rstrip("/")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ValueError(f"{what}: invalid URL {raw!r}: {exc}") from exc
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(f"{what}: expected an http(s) base URL such as http://127.0.0.1:9000/v1, got {raw!r}")
    return url


def _route_name(url: str, model: str) -> str:
    """``<host:port>[<path prefix>]/<model>``: stable across workers, and different for different upstreams."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = parts.port or DEFAULT_PORTS[parts.scheme]
    prefix = parts.path.rstrip("/").removesuffix("/v1")
    return _sanitize(f"{host}:{port}{prefix}/{model}")


def _sanitize(name: str) -> str:
    """Braces would break the Redis Cluster hash tag around the name; whitespace would just be confusing."""
    return "".join("_" if ch in "{}" or ch.isspace() else ch for ch in name)
