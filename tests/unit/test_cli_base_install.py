"""The SDK and the CLI's client commands without the server extra (``pip install batchq``), simulated.

Each test runs a fresh interpreter in which the server's dependencies cannot be imported (a meta-path finder
refuses them, as if they were not installed): ``import batchq`` and its public names, and the client commands,
must not need them; ``batchq api`` and ``batchq sim`` must say which extra they need and exit 2.
tests/e2e/test_sdk_install.py does the same with a real ``pip install`` into a fresh virtualenv.
"""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from batchq import cli

#: Top-level modules of the server extra's distributions (and of their own dependencies that batchq imports).
SERVER_MODULES = (
    "celery",
    "kombu",
    "redis",
    "hiredis",
    "boto3",
    "botocore",
    "urllib3",
    "gevent",
    "aiohttp",
    "pydantic_settings",
    "fastapi",
    "starlette",
    "uvicorn",
    "uvloop",
    "multipart",
    "python_multipart",
    "flower",
)

_BASE_INSTALL = """
import importlib.abc, sys

SERVER = set(sys.argv[1].split(","))

class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in SERVER:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
"""


def run_base(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter without the server's modules; ``args`` follow in sys.argv[2:]."""
    return subprocess.run(
        [sys.executable, "-c", _BASE_INSTALL + code, ",".join(SERVER_MODULES), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def run_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return run_base("from batchq.cli import main\nsys.exit(main(sys.argv[2:]))", *argv)


def test_the_blocker_works() -> None:
    proc = run_base("import fastapi")
    assert proc.returncode == 1 and "ModuleNotFoundError: No module named 'fastapi'" in proc.stderr


def test_import_batchq_and_every_public_name_without_the_server() -> None:
    code = """
import batchq
for name in batchq.__all__:
    getattr(batchq, name)
import batchq.cli, batchq.client, batchq.schemas, batchq.retry, batchq.webhooks.signing
loaded = sorted({m.partition(".")[0] for m in sys.modules} & SERVER)
assert not loaded, loaded
print("ok")
"""
    proc = run_base(code)
    assert proc.returncode == 0 and proc.stdout == "ok\n", proc.stderr


@pytest.mark.parametrize("command", [["api"], ["api", "--port", "8123"], ["sim"], ["sim", "--port", "9123"]])
def test_server_commands_say_they_need_the_server_extra(command: list[str]) -> None:
    # When: a server command runs without the server extra
    proc = run_cli(*command)
    # Then: one line on stderr naming the extra and how to install it, exit 2 (usage), nothing on stdout
    assert proc.returncode == cli.EXIT_USAGE, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"batchq {command[0]} needs the server extra: pip install 'batchq[server]' (no module")


def test_client_commands_work_without_the_server_extra() -> None:
    # Given: a port nobody listens on
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    # When: client commands run without the server extra
    status = run_cli("status", "batch_x", "--url", url)
    helped = run_cli("--help")
    # Then: they run as usual (here: cannot connect, exit 7), and --help lists every command
    assert status.returncode == cli.EXIT_CONNECT, status.stderr
    assert status.stderr.startswith("cannot connect to the batchq server")
    assert helped.returncode == 0 and "api" in helped.stdout and "submit" in helped.stdout


def test_a_missing_batchq_module_is_not_blamed_on_the_extra() -> None:
    # A batchq module that does not import is a bug: raised as it is, not reported as a missing extra
    code = """
sys.modules["batchq.api.app"] = None  # the import of batchq.api.app fails with its own name
from batchq.cli import main
sys.exit(main(["api"]))
"""
    proc = run_base(code)
    assert proc.returncode == 1 and "ModuleNotFoundError" in proc.stderr and "server extra" not in proc.stderr
