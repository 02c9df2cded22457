"""The lock is what is installed: requirements.lock pins every distribution that `make install` installs.

`make install` installs the lock in pip's hash-checking mode, then batchq itself without dependencies. These
tests fail when the running environment drifted from the lock (an old venv, a hand-installed upgrade, a
`make install` that did not re-run), when the lock no longer satisfies pyproject.toml's ranges (a range raised
without `make lock`), or when the server's lock (the image's) and the full lock disagree.
"""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"
SERVER_LOCK = ROOT / "requirements-server.lock"

#: ``name==version`` at the start of a line (pip-compile's format; the --hash lines follow, indented).
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.MULTILINE)
_HASH = re.compile(r"^\s+--hash=sha256:[0-9a-f]{64}\b", re.MULTILINE)


def read_lock(path: Path) -> dict[str, str]:
    """The pins of a lock file: canonical distribution name -> exact version."""
    pins: dict[str, str] = {}
    for name, pinned in _PIN.findall(path.read_text()):
        assert canonicalize_name(name) not in pins, f"{path.name} pins {name} twice"
        pins[canonicalize_name(name)] = pinned
    return pins


def test_every_locked_distribution_is_installed_at_its_version() -> None:
    # Given: the lock that make install installs
    pins = read_lock(LOCK)
    assert len(pins) > 50, f"{LOCK.name} looks truncated: {len(pins)} pins"
    # When: each pinned distribution is looked up in the running environment
    drift: dict[str, str] = {}
    for name, pinned in sorted(pins.items()):
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = "not installed"
        if installed != pinned:
            drift[name] = f"locked {pinned}, installed {installed}"
    # Then: every one is there at exactly the locked version
    assert not drift, f"the environment is not {LOCK.name} (run make install): {drift}"


def _pyproject_requirements() -> list[tuple[str, Requirement]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups = {"dependencies": project["dependencies"], **project["optional-dependencies"]}
    return [(group, Requirement(line)) for group, lines in groups.items() for line in lines]


def test_the_lock_satisfies_pyproject_ranges() -> None:
    # Given: every requirement of pyproject.toml (base, server, dev) and the lock
    pins = read_lock(LOCK)
    requirements = _pyproject_requirements()
    assert {group for group, _ in requirements} == {"dependencies", "server", "dev"}
    # Then: the lock pins each of them, inside its range (else: make lock)
    outside = {
        f"{group}: {req}": pins.get(canonicalize_name(req.name), "not locked")
        for group, req in requirements
        if not req.specifier.contains(pins.get(canonicalize_name(req.name), "0.dev0"), prereleases=True)
        or canonicalize_name(req.name) not in pins
    }
    assert not outside, f"{LOCK.name} is stale against pyproject.toml (run make lock): {outside}"


def test_the_server_lock_is_the_server_part_of_the_lock() -> None:
    # Given: the image's lock and the full lock
    server, full = read_lock(SERVER_LOCK), read_lock(LOCK)
    # Then: the same versions, the server's requirements and none of the dev tools
    assert {name: pinned for name, pinned in server.items() if full.get(name) != pinned} == {}
    missing = [
        str(req)
        for group, req in _pyproject_requirements()
        if group != "dev" and canonicalize_name(req.name) not in server
    ]
    assert not missing, f"{SERVER_LOCK.name} lacks {missing} (run make lock)"
    for tool in ("pytest", "mypy", "ruff", "moto", "hypothesis", "import-linter"):
        assert tool not in server


@pytest.mark.parametrize("path", [LOCK, SERVER_LOCK], ids=lambda p: p.name)
def test_every_pin_carries_hashes(path: Path) -> None:
    # pip's hash-checking mode refuses a lock with one unhashed line; say which, before make install does
    text = path.read_text()
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text[_PIN.search(text).start() :])  # type: ignore[union-attr]
    unhashed = [block.split()[0] for block in blocks if _PIN.match(block) and not _HASH.search(block)]
    assert not unhashed, f"{path.name}: pins without --hash: {unhashed}"
