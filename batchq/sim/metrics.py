"""``GET /metrics`` of the simulator: the engine's gauges under the names a real inference server uses.

``--metrics-flavor`` picks the server: vLLM (``vllm:num_requests_running`` / ``vllm:num_requests_waiting``, label
``model_name``), SGLang (``sglang:num_running_reqs`` / ``sglang:num_queue_reqs``, label ``model_name``) or TGI
(``tgi_batch_current_size`` / ``tgi_queue_size``, no labels). Whatever the flavor, the simulator adds its own
counter ``batchq_sim_requests_shed_total{class}`` (no real server has it; it never goes back on ``/sim/reset``).
Prometheus text exposition format 0.0.4.
"""

from __future__ import annotations

from collections.abc import Mapping

#: Content type of the Prometheus text format.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Per flavor: (running gauge, its help), (waiting gauge, its help), whether the series carry ``model_name``.
FLAVORS: dict[str, tuple[tuple[str, str], tuple[str, str], bool]] = {
    "vllm": (
        ("vllm:num_requests_running", "Number of requests in model execution batches."),
        ("vllm:num_requests_waiting", "Number of requests waiting to be processed."),
        True,
    ),
    "sglang": (
        ("sglang:num_running_reqs", "The number of running requests."),
        ("sglang:num_queue_reqs", "The number of requests in the waiting queue."),
        True,
    ),
    "tgi": (
        ("tgi_batch_current_size", "Current batch size."),
        ("tgi_queue_size", "Current queue size."),
        False,
    ),
}
#: The simulator's own counter of shed answers (sim-only: no inference server exports it).
SHED_COUNTER = "batchq_sim_requests_shed_total"


def render(flavor: str, model: str, running: int, waiting: int, shed: Mapping[str, int]) -> str:
    """The ``/metrics`` body: the flavor's two gauges, then the sim-only shed counter per request class."""
    (running_name, running_help), (waiting_name, waiting_help), labelled = FLAVORS[flavor]
    labels = '{model_name="' + _escape(model) + '"}' if labelled else ""
    lines: list[str] = []
    for name, help_, value in ((running_name, running_help, running), (waiting_name, waiting_help, waiting)):
        lines += [f"# HELP {name} {help_}", f"# TYPE {name} gauge", f"{name}{labels} {float(value)}"]
    lines += [f"# HELP {SHED_COUNTER} Requests shed because the queue was full (batchq sim only).",
              f"# TYPE {SHED_COUNTER} counter"]  # fmt: skip
    lines += [f'{SHED_COUNTER}{{class="{cls}"}} {float(n)}' for cls, n in sorted(shed.items())]
    return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
