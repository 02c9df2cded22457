"""Model routes: the default upstream, routes files (TOML and JSON), lookups and URL joining."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from batchq.ratelimit import RouteLimits
from batchq.redact import redact
from batchq.upstream.routing import Route, RouteTable

DEFAULTS: dict[str, Any] = {
    "upstream_url": "http://127.0.0.1:9000/v1/",
    "upstream_api_key": "sk-default",
    "rpm": 600,
    "tpm": 100_000,
    "max_in_flight": 64,
    "routes_path": None,
    "served_models": None,
}

TOML = """
[[route]]
model = "Llama-3.3-70B-Instruct"
url = "http://10.0.0.5:8000/v1"
api_key = "sk-llama"
rpm = 1200
max_in_flight = 32

[[route]]
models = ["embed-a", "embed-b"]
url = "https://embed.example.com/openai/v1"
api_key_env = "EMBED_KEY"
tpm = 5000

[[route]]
model = "small"
rpm = 60
"""


def table(tmp_path: Path, text: str | None = None, name: str = "routes.toml", **overrides: Any) -> RouteTable:
    kwargs = {**DEFAULTS, **overrides}
    if text is not None:
        path = tmp_path / name
        path.write_text(text)
        kwargs["routes_path"] = str(path)
    return RouteTable.from_settings(**kwargs)


def test_default_route_from_settings(tmp_path: Path) -> None:
    # Given only the default upstream
    routes = table(tmp_path)

    # When any model is looked up
    route = routes.route_for("whatever")

    # Then it is the default route, with a stable name, a clean URL and the settings' limits
    assert route == Route("127.0.0.1:9000/*", "http://127.0.0.1:9000/v1", "sk-default", RouteLimits(600, 100_000, 64))
    assert routes.route_for(None) is route
    assert routes.served_models() is None


def test_served_models_restrict_the_default_route(tmp_path: Path) -> None:
    routes = table(tmp_path, served_models=frozenset({"a", "b"}))
    assert routes.route_for("a").name == "127.0.0.1:9000/*"
    assert routes.served_models() == frozenset({"a", "b"})
    with pytest.raises(LookupError):
        routes.route_for("c")
    with pytest.raises(LookupError):
        routes.route_for(None)


def test_no_upstream_serves_nothing(tmp_path: Path) -> None:
    routes = table(tmp_path, upstream_url=None)
    assert routes.served_models() == frozenset()
    with pytest.raises(LookupError, match="no upstream serves model 'm'"):
        routes.route_for("m")


def test_toml_routes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a routes file with a model route, a two-model route keyed from the environment, and a route that only
    # sets limits on the default upstream
    monkeypatch.setenv("EMBED_KEY", "sk-embed")
    routes = table(tmp_path, TOML, served_models=frozenset({"other"}))

    # When the models are looked up
    llama, embed_a, embed_b, small = (
        routes.route_for(m) for m in ("Llama-3.3-70B-Instruct", "embed-a", "embed-b", "small")
    )

    # Then each gets its own upstream, key, limits and limiter name
    assert llama == Route(
        "10.0.0.5:8000/Llama-3.3-70B-Instruct", "http://10.0.0.5:8000/v1", "sk-llama", RouteLimits(1200, 0, 32)
    )
    assert embed_a.url == "https://embed.example.com/openai/v1" and embed_a.api_key == "sk-embed"
    assert embed_a.limits == RouteLimits(0, 5000, 64), "an omitted max_in_flight is the settings' one"
    assert (embed_a.name, embed_b.name) == (
        "embed.example.com:443/openai/embed-a",
        "embed.example.com:443/openai/embed-b",
    )
    assert small == Route("127.0.0.1:9000/small", "http://127.0.0.1:9000/v1", "sk-default", RouteLimits(60, 0, 64))
    # And the default route still serves its own models
    assert routes.route_for("other").name == "127.0.0.1:9000/*"
    assert routes.served_models() == frozenset({"Llama-3.3-70B-Instruct", "embed-a", "embed-b", "small", "other"})
    assert len(routes.routes()) == 5


def test_json_routes_with_a_default_and_a_shared_name(tmp_path: Path) -> None:
    # Given a JSON routes file whose "*" route replaces the settings' default, and an entry whose models share a limiter
    doc = {
        "route": [
            {"model": "*", "url": "http://gpu:8000/v1", "rpm": 100},
            {"models": ["lora-a", "lora-b"], "url": "http://gpu:8001/v1", "name": "gpu-8001", "rpm": 50},
        ]
    }
    routes = table(tmp_path, json.dumps(doc), name="routes.json")

    # Then the "*" route serves every other model, and the two adapters share one route
    assert routes.route_for("anything") == Route("gpu:8000/*", "http://gpu:8000/v1", None, RouteLimits(100, 0, 64))
    assert routes.route_for("lora-a") is routes.route_for("lora-b")
    assert routes.route_for("lora-a").name == "gpu-8001"
    assert routes.served_models() is None


def test_bare_json_list_without_suffix(tmp_path: Path) -> None:
    routes = table(tmp_path, json.dumps([{"model": "m", "url": "http://h:1/v1"}]), name="routes.conf")
    assert routes.route_for("m").name == "h:1/m"


def test_keys_of_a_routes_file_are_redacted_everywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a routes file naming one key inline and one through api_key_env (neither looks like a token)
    monkeypatch.setenv("ROUTE_KEY_FROM_ENV", "env-route-key-5678")
    doc = [
        {"model": "a", "url": "http://h:1/v1", "api_key": "inline-route-key-1234"},
        {"model": "b", "url": "http://h:2/v1", "api_key_env": "ROUTE_KEY_FROM_ENV"},
    ]
    # When the table is loaded (as the workers do at start)
    table(tmp_path, json.dumps(doc), name="routes.json")
    # Then both keys are blanked by redact(), which error lines and every log record go through
    text = redact("upstream said: bad key inline-route-key-1234, also env-route-key-5678")
    assert "inline-route-key-1234" not in text and "env-route-key-5678" not in text


def test_key_is_not_in_repr(tmp_path: Path) -> None:
    route = table(tmp_path).route_for("m")
    assert "sk-default" not in repr(route)
    assert "sk-default" not in repr(table(tmp_path))


@pytest.mark.parametrize(
    ("line_url", "expected"),
    [
        ("/v1/chat/completions", "http://127.0.0.1:9000/v1/chat/completions"),
        ("/v1/embeddings", "http://127.0.0.1:9000/v1/embeddings"),
        ("/chat/completions", "http://127.0.0.1:9000/v1/chat/completions"),
        ("v1/completions", "http://127.0.0.1:9000/v1/completions"),
        ("/v10/x", "http://127.0.0.1:9000/v1/v10/x"),
    ],
)
def test_url_for(tmp_path: Path, line_url: str, expected: str) -> None:
    routes = table(tmp_path)
    assert routes.url_for(routes.route_for("m"), line_url) == expected


def test_url_for_keeps_a_path_prefix(tmp_path: Path) -> None:
    routes = table(tmp_path, upstream_url="https://api.example.com/openai/v1")
    route = routes.route_for("m")
    assert route.name == "api.example.com:443/openai/*"
    assert routes.url_for(route, "/v1/chat/completions") == "https://api.example.com/openai/v1/chat/completions"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[route]]\nmodel = 'm'\nurl = 'http://h/v1'\nrmp = 5\n", r"route\[0\]: unknown keys \['rmp'\]"),
        ("[[route]]\nurl = 'http://h/v1'\n", r"route\[0\]: set exactly one of model or models"),
        ("[[route]]\nmodel = 'm'\nmodels = ['n']\n", r"route\[0\]: set exactly one"),
        ("[[route]]\nmodels = []\n", r"route\[0\]: models must be a non-empty list"),
        ("[[route]]\nmodels = ['a', 'a']\n", r"route\[0\]: models lists a model twice"),
        ("[[route]]\nmodel = 'm'\nrpm = -1\n", r"route\[0\]: rpm must be an integer >= 0"),
        ("[[route]]\nmodel = 'm'\ntpm = 1.5\n", r"route\[0\]: tpm must be an integer"),
        ("[[route]]\nmodel = 'm'\nmax_in_flight = true\n", r"route\[0\]: max_in_flight must be an integer"),
        ("[[route]]\nmodel = 'm'\nurl = 'ftp://h/v1'\n", r"route\[0\]: url: expected an http\(s\) base URL"),
        ("[[route]]\nmodel = 'm'\nurl = 'http://h:99999/v1'\n", r"route\[0\]: url: invalid URL"),
        ("[[route]]\nmodel = 'm'\napi_key = 'a'\napi_key_env = 'B'\n", r"route\[0\]: set api_key or api_key_env"),
        (
            "[[route]]\nmodel = 'm'\napi_key_env = 'BATCHQ_TEST_UNSET_VAR'\n",
            r"'BATCHQ_TEST_UNSET_VAR', which is not set",
        ),
        ("[[route]]\nmodel = 'm'\n[[route]]\nmodel = 'm'\n", r"route\[1\]: model 'm' already has a route"),
        (
            "[[route]]\nmodel = '*'\n[[route]]\nmodel = '*'\n",
            r"route\[1\]: a second '\*' route \(the first is route\[0\]\)",
        ),
        ("[[route]]\nmodel = 'a'\nname = 'x'\n[[route]]\nmodel = 'b'\nname = 'x'\n", r"route\[1\]: route name 'x'"),
        ("route = 5\n", r"expected a non-empty list of \[\[route\]\] entries"),
        ("[[routez]]\nmodel = 'm'\n", r"unknown top-level keys \['routez'\]"),
        ("[[route]\n", r"not valid TOML"),
        ("route = [1]\n", r"route\[0\]: expected a table/object, got int"),
    ],
)
def test_malformed_files_name_the_file_and_entry(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        table(tmp_path, text)
    assert str(tmp_path / "routes.toml") in str(info.value)


def test_malformed_json_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="routes.json: not valid JSON"):
        table(tmp_path, "{", name="routes.json")
    with pytest.raises(ValueError, match="cannot read the routes file"):
        table(tmp_path, routes_path=str(tmp_path / "missing.toml"))


def test_entry_without_url_needs_a_default_upstream(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"route\[0\]: no url, and no default upstream"):
        table(tmp_path, "[[route]]\nmodel = 'm'\n", upstream_url=None)


def test_bad_default_settings(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="BATCHQ_UPSTREAM_URL"):
        table(tmp_path, upstream_url="127.0.0.1:9000")
    with pytest.raises(ValueError, match="limits must be >= 0"):
        table(tmp_path, rpm=-5)


def test_braces_cannot_break_the_redis_hash_tag(tmp_path: Path) -> None:
    routes = table(tmp_path, "[[route]]\nmodel = 'we{ird} model'\n")
    assert routes.route_for("we{ird} model").name == "127.0.0.1:9000/we_ird__model"
