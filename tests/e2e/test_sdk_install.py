"""The SDK installs alone: ``pip install batchq`` (no extras) in a fresh virtualenv is enough for the client.

A virtualenv is made in a temporary folder and the repository is installed into it the way a user installs the
package (``pip install <repo>``: not editable, no extras, this machine's pip configuration). Then, with that
virtualenv's interpreter and console script only: none of the server's distributions is there, the source
document's client code runs against a whole stack (started from the test's environment, which has the server),
``batchq status`` works, and ``batchq api`` / ``batchq sim`` say they need the server extra and exit 2.

Marked ``packaging`` (``pytest -m packaging``); about 30-60 s, most of it pip.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import StackFactory
from tests.stack import Stack

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parents[2]

#: Distributions of the server extra (and their modules) that must not come with ``pip install batchq``.
SERVER_DISTRIBUTIONS = {
    "celery": "celery",
    "kombu": "kombu",
    "gevent": "gevent",
    "boto3": "boto3",
    "fastapi": "fastapi",
    "flower": "flower",
    "redis": "redis",
    "uvicorn": "uvicorn",
    "aiohttp": "aiohttp",
    "hiredis": "hiredis",
    "pydantic-settings": "pydantic_settings",
    "python-multipart": "python_multipart",
}

#: Run with the fresh virtualenv's interpreter: what is (not) installed there, and where batchq comes from.
INSPECT = """
import importlib.metadata, importlib.util, json, sys
server = json.loads(sys.argv[1])
import batchq
print(json.dumps({
    "modules": [m for m in server.values() if importlib.util.find_spec(m) is not None],
    "distributions": sorted(d.metadata["Name"] for d in importlib.metadata.distributions()),
    "batchq": batchq.__file__,
    "client": batchq.Client.__module__,
    "loaded": sorted({m.partition(".")[0] for m in sys.modules} & set(server.values())),
}))
"""

#: The source document's client code (Steps 2-4, "import batchq" for "import regolo"), polling faster.
SEED_CLIENT = """
import time

import batchq

# Step 2: create the batch job
with open("requests.jsonl", "r") as f:
    batch_data = f.read()
batch = batchq.submit_batch(requests=batch_data, model="Llama-3.3-70B-Instruct")
print(f"Batch ID: {batch.id}")
print(f"Status: {batch.status}")

# Step 3: monitor progress
deadline = time.monotonic() + 120
while True:
    batch = batchq.get_batch(batch.id)
    if batch.status == "completed" or time.monotonic() > deadline:
        break
    time.sleep(0.3)
print(f"Status: {batch.status}")
print(f"Progress: {batch.request_counts.completed}/{batch.request_counts.total}")

# Step 4: retrieve results
for result in batchq.get_batch_results(batch.id):
    if result["error"] is None:
        content = result["response"]["body"]["choices"][0]["message"]["content"]
        print(f"{result['custom_id']}: {content}")
    else:
        print(f"{result['custom_id']}: Error - {result['error']}")
"""

#: Step 1 of the source document, then lines in its ``params`` form without a model (submit_batch's model fills it).
SEED_LINES = [
    {"messages": [{"role": "user", "content": "What is AI?"}], "model": "Llama-3.3-70B-Instruct"},
    {"messages": [{"role": "user", "content": "Define machine learning"}], "model": "Llama-3.3-70B-Instruct"},
    {"messages": [{"role": "user", "content": "Explain neural networks"}], "model": "Llama-3.3-70B-Instruct"},
    *(
        {
            "custom_id": f"q-{i}",
            "params": {"messages": [{"role": "user", "content": f"Question {i}"}], "max_tokens": 20},
        }
        for i in range(20)
    ),
]


@dataclass(frozen=True)
class Venv:
    """A virtualenv with ``pip install <repo>`` done in it."""

    path: Path

    @property
    def python(self) -> str:
        return str(self.path / "bin" / "python")

    @property
    def batchq(self) -> str:
        return str(self.path / "bin" / "batchq")

    def run(self, argv: list[str], cwd: Path, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, cwd=cwd, env=user_env(**env), capture_output=True, text=True, timeout=timeout)


def user_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: this machine's pip configuration (PIP_*), nothing of the test's Python."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env = {k: v for k, v in env.items() if not k.startswith("BATCHQ_")}
    return {**env, "PIP_DISABLE_PIP_VERSION_CHECK": "1", **extra}


@pytest.fixture(scope="module")
def sdk_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Venv]:
    """A fresh virtualenv with ``pip install <repo>``: not editable, no extras, the machine's pip configuration."""
    path = tmp_path_factory.mktemp("sdk") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=120, env=user_env())
    venv = Venv(path)
    install = venv.run([venv.python, "-m", "pip", "install", "--quiet", str(ROOT)], cwd=path.parent, timeout=600)
    assert install.returncode == 0, install.stdout + install.stderr
    yield venv


def test_pip_install_batchq_brings_none_of_the_server(sdk_venv: Venv) -> None:
    # When: the fresh virtualenv's interpreter imports batchq and looks at what is installed
    proc = sdk_venv.run([sdk_venv.python, "-c", INSPECT, json.dumps(SERVER_DISTRIBUTIONS)], cwd=sdk_venv.path)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    # Then: batchq is the installed copy (not the repository's sources), and no server distribution came with it
    assert Path(found["batchq"]).is_relative_to(sdk_venv.path), found["batchq"]
    assert found["client"] == "batchq.client.sync_client"
    installed = {re.sub(r"[-_.]+", "-", name).lower() for name in found["distributions"]}
    assert not installed & set(SERVER_DISTRIBUTIONS), f"server distributions installed: {sorted(installed)}"
    assert found["modules"] == [] and found["loaded"] == []
    assert {"batchq", "httpx", "pydantic", "rich"} <= installed


@pytest.mark.parametrize("command", ["api", "sim"])
def test_server_commands_need_the_server_extra(sdk_venv: Venv, command: str) -> None:
    # When: the base install's console script is asked to run a server
    proc = sdk_venv.run([sdk_venv.batchq, command], cwd=sdk_venv.path)
    # Then: one line saying which extra, exit 2 (usage)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith(f"batchq {command} needs the server extra: pip install 'batchq[server]'")
    assert len(proc.stderr.splitlines()) == 1 and proc.stdout == ""


@pytest.fixture
def stack(make_stack: StackFactory) -> Stack:
    """The server, run from the test's own environment (which has the server extra)."""
    stack = make_stack()
    stack.start_api()
    stack.start_worker("w1", concurrency=16)
    return stack


def test_the_seed_client_code_runs_with_the_base_install(sdk_venv: Venv, stack: Stack, tmp_path: Path) -> None:
    # Given: the source document's requests and client code, in a folder of their own
    (tmp_path / "requests.jsonl").write_text("".join(json.dumps(line) + "\n" for line in SEED_LINES))
    (tmp_path / "client.py").write_text(SEED_CLIENT)
    # When: the fresh virtualenv's interpreter runs it against the stack
    proc = sdk_venv.run([sdk_venv.python, "client.py"], cwd=tmp_path, timeout=180, BATCHQ_URL=stack.api_url)
    # Then: the batch completes and every request's answer is printed, in input order
    assert proc.returncode == 0, proc.stderr + stack.logs()
    out = proc.stdout.splitlines()
    assert out[0].startswith("Batch ID: batch_") and out[1] in ("Status: validating", "Status: in_progress")
    assert out[2:4] == ["Status: completed", f"Progress: {len(SEED_LINES)}/{len(SEED_LINES)}"], proc.stdout
    assert out[4:] == [
        "request-1: Echo: What is AI?",
        "request-2: Echo: Define machine learning",
        "request-3: Echo: Explain neural networks",
        *(f"q-{i}: Echo: Question {i}" for i in range(20)),
    ]
    batch_id = out[0].removeprefix("Batch ID: ")
    # and the base install's console script shows the batch
    status = sdk_venv.run([sdk_venv.batchq, "status", batch_id], cwd=tmp_path, BATCHQ_URL=stack.api_url)
    assert status.returncode == 0, status.stderr
    assert batch_id in status.stdout and "completed" in status.stdout
    as_json = sdk_venv.run([sdk_venv.batchq, "status", batch_id, "--json"], cwd=tmp_path, BATCHQ_URL=stack.api_url)
    assert as_json.returncode == 0, as_json.stderr
    batch = json.loads(as_json.stdout)
    assert batch["status"] == "completed" and batch["request_counts"]["completed"] == len(SEED_LINES)
