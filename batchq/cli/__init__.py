"""The ``batchq`` command: submit batches and follow them, fetch results, start the API or the simulator.

    batchq [--url URL] [--api-key KEY] submit FILE [--model M] [--endpoint E] [--metadata k=v ...] [--wait] [--json]
    batchq status ID [--json]          batchq list [--limit N] [--after ID] [--json]
    batchq results ID [--output F] [--partial]
    batchq cancel ID                   batchq retry-failed ID [--wait]
    batchq delete ID                   batchq wait ID [--timeout S]
    batchq api [--host H] [--port P]   batchq sim [simulator options ...]
    batchq webhooks create URL [--events E ...] | list | delete ID | deliveries ID   (see batchq.cli.webhooks)

``--url`` / ``--api-key`` default to ``BATCHQ_URL`` / ``BATCHQ_API_KEY``. While waiting, progress goes to stderr: a
live bar on a terminal, a line every few seconds otherwise. ``--json`` prints machine-readable JSON on stdout.

The client commands need only the base install (``pip install batchq``); ``api`` and ``sim`` import the server
when they start and, without the server extra, say so and exit 2.

Exit codes:
    0  success (for wait and --wait: the batch completed)
    1  any other error (including wait --timeout running out)
    2  usage error (bad arguments, FILE not found, api or sim without the server extra)
    3  the batch ended failed (its input file did not validate)
    4  the batch ended expired or cancelled
    5  not found (no such batch or file for this key)
    6  authentication error (missing or wrong API key)
    7  cannot connect to the server
    130 interrupted (Ctrl-C)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path

from batchq.cli.webhooks import add_webhook_commands, run_webhooks
from batchq.client import Client
from batchq.client.display import ProgressDisplay, emit_batch, print_json, stdout_console, when
from batchq.client.exceptions import APIConnectionError, APIError, AuthenticationError, NotFoundError

#: Exit codes, documented in the module docstring and in --help.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_BATCH_FAILED = 3
EXIT_BATCH_EXPIRED_OR_CANCELLED = 4
EXIT_NOT_FOUND = 5
EXIT_AUTH = 6
EXIT_CONNECT = 7
EXIT_INTERRUPTED = 130

#: Exit code of a wait that ended at each final status.
STATUS_EXIT: dict[str, int] = {
    "completed": EXIT_OK,
    "failed": EXIT_BATCH_FAILED,
    "expired": EXIT_BATCH_EXPIRED_OR_CANCELLED,
    "cancelled": EXIT_BATCH_EXPIRED_OR_CANCELLED,
}

_EPILOG = """exit codes:
  0 success (wait/--wait: batch completed)   1 other error   2 usage error
  3 batch ended failed   4 batch ended expired or cancelled
  5 not found   6 authentication error   7 cannot connect   130 interrupted

environment: BATCHQ_URL (server root, default http://127.0.0.1:8000), BATCHQ_API_KEY"""


class UsageError(Exception):
    """A bad argument found after parsing (exit code 2)."""


# --- commands --------------------------------------------------------------------------------------------------


def _metadata(items: Sequence[Sequence[str]] | None) -> dict[str, str] | None:
    if not items:
        return None
    metadata: dict[str, str] = {}
    for item in (value for group in items for value in group):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--metadata expects key=value, got {item!r}")
        metadata[key] = value
    return metadata


def _wait(client: Client, batch_id: str, args: argparse.Namespace) -> int:
    """Wait with progress on stderr; print the final batch; exit code by final status."""
    with ProgressDisplay() as display:
        batch = client.batches.wait(
            batch_id, poll_interval=args.poll_interval, timeout=args.timeout, on_update=display.update
        )
    counts = batch.request_counts
    headline = f"{batch.id} {batch.status}: {counts.completed} completed, {counts.failed} failed of {counts.total}"
    emit_batch(batch, args.json, headline)
    if batch.status == "failed" and not args.json:
        for error in batch.errors.data[:10] if batch.errors else []:
            print(f"  line {error.line}: {error.code}: {error.message}", file=sys.stderr)
    return STATUS_EXIT.get(batch.status, EXIT_ERROR)


def _cmd_submit(client: Client, args: argparse.Namespace) -> int:
    source: str | bytes | Path
    if args.file == "-":
        source = sys.stdin.buffer.read()
    elif Path(args.file).is_file():
        source = Path(args.file)
    else:
        raise UsageError(f"no such file: {args.file}")
    batch = client.batches.submit(
        source,
        model=args.model,
        endpoint=args.endpoint,
        metadata=_metadata(args.metadata),
        timeout_minutes=args.timeout_minutes,
    )
    if args.wait:
        print(f"submitted {batch.id}", file=sys.stderr)
        return _wait(client, batch.id, args)
    emit_batch(batch, args.json, batch.id)
    return EXIT_OK


def _cmd_status(client: Client, args: argparse.Namespace) -> int:
    emit_batch(client.batches.retrieve(args.batch_id), args.json)
    return EXIT_OK


def _cmd_list(client: Client, args: argparse.Namespace) -> int:
    page = client.batches.list(after=args.after, limit=args.limit)
    if args.json:
        data = [batch.model_dump(mode="json") for batch in page.data]
        print_json({"object": "list", "data": data, "has_more": page.has_more, "last_id": page.last_id})
        return EXIT_OK
    from rich.table import Table

    table = Table()
    table.add_column("id", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("model", overflow="fold")
    for name in ("completed", "failed", "total"):
        table.add_column(name, justify="right", no_wrap=True, min_width=len(name))
    table.add_column("created", no_wrap=True)
    for batch in page.data:
        counts = batch.request_counts
        table.add_row(
            batch.id,
            batch.status,
            batch.model or "-",
            str(counts.completed),
            str(counts.failed),
            str(counts.total),
            when(batch.created_at),
        )
    stdout_console().print(table)
    if page.has_more and page.data:
        print(f"more: batchq list --after {page.last_id or page.data[-1].id}", file=sys.stderr)
    return EXIT_OK


def _cmd_results(client: Client, args: argparse.Namespace) -> int:
    count = 0
    with ExitStack() as stack:
        results = stack.enter_context(client.batches.results(args.batch_id, partial=args.partial))
        out = stack.enter_context(open(args.output, "w", encoding="utf-8")) if args.output else sys.stdout
        for result in results:
            out.write(json.dumps(result, ensure_ascii=False) + "\n")
            count += 1
    if args.output:
        print(f"wrote {count} results to {args.output}", file=sys.stderr)
    return EXIT_OK


def _cmd_cancel(client: Client, args: argparse.Namespace) -> int:
    batch = client.batches.cancel(args.batch_id)
    emit_batch(batch, args.json, f"{batch.id} {batch.status}")
    return EXIT_OK


def _cmd_retry_failed(client: Client, args: argparse.Namespace) -> int:
    try:
        batch = client.batches.retry_failed(args.batch_id)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if args.wait:
        print(f"submitted {batch.id} (retry of {args.batch_id})", file=sys.stderr)
        return _wait(client, batch.id, args)
    emit_batch(batch, args.json, batch.id)
    return EXIT_OK


def _cmd_delete(client: Client, args: argparse.Namespace) -> int:
    deleted = client.batches.delete(args.batch_id)
    if args.json:
        print_json(deleted.model_dump(mode="json"))
    else:
        print(f"deleted {deleted.id}")
    return EXIT_OK


def _cmd_wait(client: Client, args: argparse.Namespace) -> int:
    return _wait(client, args.batch_id, args)


#: The extra that the server commands (api, sim) need beyond ``pip install batchq``.
SERVER_EXTRA = "pip install 'batchq[server]'"


def _without_server_extra(command: str, exc: ModuleNotFoundError) -> bool:
    """Whether ``exc`` is a server command's import failing for want of the server extra; if so, say it on stderr.

    A third-party module is missing (fastapi, aiohttp, redis, celery ...): the base install. A batchq module missing
    is something else, and is raised as it is.
    """
    missing = (exc.name or "").partition(".")[0]
    if not missing or missing in ("batchq", "workers"):
        return False
    print(f"batchq {command} needs the server extra: {SERVER_EXTRA} (no module named {missing!r})", file=sys.stderr)
    return True


def _cmd_api(args: argparse.Namespace) -> int:
    # imported here, not at the top: the client commands must not load the server (nor need its dependencies)
    try:
        from batchq.api.app import serve
        from batchq.config import get_settings
    except ModuleNotFoundError as exc:
        if _without_server_extra("api", exc):
            return EXIT_USAGE
        raise

    settings = get_settings()
    serve(args.host or settings.api_host, args.port or settings.api_port)
    return EXIT_OK


def _run_sim(argv: list[str]) -> int:
    try:
        from batchq.sim import main as sim_main  # imported here, like the API
    except ModuleNotFoundError as exc:
        if _without_server_extra("sim", exc):
            return EXIT_USAGE
        raise

    code = sim_main(argv)
    return int(code or 0)


# --- parser ----------------------------------------------------------------------------------------------------

_COMMANDS: dict[str, Callable[[Client, argparse.Namespace], int]] = {
    "submit": _cmd_submit,
    "status": _cmd_status,
    "list": _cmd_list,
    "results": _cmd_results,
    "cancel": _cmd_cancel,
    "retry-failed": _cmd_retry_failed,
    "delete": _cmd_delete,
    "wait": _cmd_wait,
    "webhooks": run_webhooks,
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; ``--url`` and ``--api-key`` are accepted before or after the command."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=argparse.SUPPRESS, help="server root (env BATCHQ_URL)")
    common.add_argument("--api-key", default=argparse.SUPPRESS, help="API key (env BATCHQ_API_KEY)")
    json_flag = argparse.ArgumentParser(add_help=False)
    json_flag.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")
    waiting = argparse.ArgumentParser(add_help=False)
    waiting.add_argument("--poll-interval", type=float, default=2.0, metavar="S", help="seconds between polls")
    waiting.add_argument("--timeout", type=float, default=None, metavar="S", help="stop waiting after S seconds")

    parser = argparse.ArgumentParser(
        prog="batchq",
        description="Submit and follow LLM batch jobs on a batchq server; run the API or the upstream simulator.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--url", default=None, help="server root (env BATCHQ_URL, default http://127.0.0.1:8000)")
    parser.add_argument("--api-key", default=None, help="API key (env BATCHQ_API_KEY; none in local mode)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help: str, *parents: argparse.ArgumentParser) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=help,
            parents=[common, *parents],
            epilog=_EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    p = add("submit", "upload a JSONL file and create a batch", json_flag, waiting)
    p.add_argument("file", metavar="FILE", help="JSONL requests ('-' for stdin)")
    p.add_argument("--model", help="model for lines that lack one")
    p.add_argument("--endpoint", default="/v1/chat/completions", help="endpoint of every line")
    p.add_argument("--metadata", nargs="+", action="append", metavar="KEY=VALUE", help="metadata kept on the batch")
    p.add_argument("--timeout-minutes", type=int, help="completion window shorter than 24 h")
    p.add_argument("--wait", action="store_true", help="wait for the batch to end (exit code by its status)")
    add("status", "show a batch", json_flag).add_argument("batch_id", metavar="ID")
    p = add("list", "list batches, newest first", json_flag)
    p.add_argument("--limit", type=int, help="page size")
    p.add_argument("--after", metavar="ID", help="list batches older than this one")
    p = add("results", "write a batch's result lines (JSONL)")
    p.add_argument("batch_id", metavar="ID")
    p.add_argument("--output", "-o", metavar="F", help="file to write (default stdout)")
    p.add_argument("--partial", action="store_true", help="the lines recorded so far, before the batch ends")
    add("cancel", "cancel a batch", json_flag).add_argument("batch_id", metavar="ID")
    p = add("retry-failed", "resubmit a batch's failed lines as a new batch", json_flag, waiting)
    p.add_argument("batch_id", metavar="ID")
    p.add_argument("--wait", action="store_true", help="wait for the new batch to end")
    add("delete", "delete an ended batch and its files", json_flag).add_argument("batch_id", metavar="ID")
    add("wait", "wait for a batch to end (exit code by its status)", json_flag, waiting).add_argument(
        "batch_id", metavar="ID"
    )
    add_webhook_commands(add("webhooks", "manage webhook endpoints (batch events pushed to a URL)"), common, json_flag)
    p = sub.add_parser("api", help="run the HTTP API")
    p.add_argument("--host", default=None, help="interface (default BATCHQ_API_HOST or 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default BATCHQ_API_PORT or 8000)")
    sub.add_parser("sim", help="run the upstream simulator (options: batchq sim --help)", add_help=False)
    return parser


def _sim_argv(argv: list[str]) -> list[str] | None:
    """What follows ``sim`` when it is the command (after any global options), else None."""
    index = 0
    while index < len(argv):
        token = argv[index]
        if token in ("--url", "--api-key"):
            index += 2
        elif token.startswith(("--url=", "--api-key=")):
            index += 1
        else:
            return argv[index + 1 :] if token == "sim" else None
    return None


def main(argv: list[str] | None = None, *, client: Client | None = None) -> int:
    """Run the command line; returns the exit code (see the module docstring).

    Args:
        argv: Arguments without the program name (default ``sys.argv[1:]``).
        client: Client to use instead of one built from ``--url`` / ``--api-key`` / the environment.
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    sim_args = _sim_argv(args_list)
    if sim_args is not None:
        return _run_sim(sim_args)
    parser = build_parser()
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exc:  # --help exits 0, a usage error 2
        return int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_USAGE
    try:
        if args.command == "api":
            return _cmd_api(args)
        own_client = client is None
        client = client or Client(base_url=args.url, api_key=args.api_key)
        try:
            return _COMMANDS[args.command](client, args)
        finally:
            if own_client:
                client.close()
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        print(f"batchq: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except NotFoundError as exc:
        print(f"not found: {exc}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except AuthenticationError as exc:
        print(f"authentication failed: {exc}", file=sys.stderr)
        return EXIT_AUTH
    except APIConnectionError as exc:
        print(f"cannot connect to the batchq server: {exc}", file=sys.stderr)
        return EXIT_CONNECT
    except APIError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `batchq results ID | head`: the reader has what it wanted
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush does not fail again
        return EXIT_OK
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
