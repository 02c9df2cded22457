"""``batchq webhooks``: register URLs for batch events and read their delivery log.

    batchq webhooks create URL [--events batch.completed batch.failed ...] [--json]
    batchq webhooks list [--json]          batchq webhooks delete ID
    batchq webhooks deliveries ID [--limit N] [--json]

``create`` prints the endpoint's secret: it is shown this once (keep it to verify deliveries).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from batchq.client import Client
from batchq.client.display import print_json, stdout_console, when

#: The events an endpoint may subscribe to (the server refuses others).
EVENT_TYPES = ("batch.completed", "batch.failed", "batch.expired", "batch.cancelled")


def add_webhook_commands(parser: argparse.ArgumentParser, *parents: argparse.ArgumentParser) -> None:
    """The ``webhooks`` subcommands, under ``parser``; ``parents`` add the shared options (--url, --json)."""
    sub = parser.add_subparsers(dest="webhooks_command", required=True, metavar="WEBHOOKS_COMMAND")
    p = sub.add_parser("create", help="register a URL for batch events (prints its secret, once)", parents=parents)
    p.add_argument("url", metavar="URL")
    p.add_argument("--events", nargs="+", choices=EVENT_TYPES, metavar="EVENT", help="default: all four")
    sub.add_parser("list", help="list webhook endpoints", parents=parents)
    sub.add_parser("delete", help="delete a webhook endpoint", parents=parents).add_argument(
        "endpoint_id", metavar="ID"
    )
    p = sub.add_parser("deliveries", help="an endpoint's delivery log, newest first", parents=parents)
    p.add_argument("endpoint_id", metavar="ID")
    p.add_argument("--limit", type=int, default=20, help="how many (at most 100)")


def run_webhooks(client: Client, args: argparse.Namespace) -> int:
    """Run one ``webhooks`` subcommand; exit code 0 (errors raise, and the CLI maps them)."""
    command = args.webhooks_command
    as_json = getattr(args, "json", False)
    if command == "create":
        endpoint = client.webhooks.create(args.url, events=args.events)
        if as_json:
            print_json(endpoint.model_dump(mode="json"))
        else:
            print(f"{endpoint.id} {endpoint.url} ({', '.join(endpoint.events)})")
            print(f"secret: {endpoint.secret}")
            print(
                "keep the secret: it is not shown again (verify deliveries with batchq.verify_webhook)", file=sys.stderr
            )
        return 0
    if command == "delete":
        deleted = client.webhooks.delete(args.endpoint_id)
        if as_json:
            print_json(deleted.model_dump(mode="json"))
        else:
            print(f"deleted {deleted.id}")
        return 0
    if command == "list":
        page = client.webhooks.list()
        if as_json:
            print_json({"object": "list", "data": [e.model_dump(mode="json") for e in page.data]})
            return 0
        _table(
            ("id", "url", "events", "created"),
            [(e.id, e.url, ", ".join(e.events), when(e.created_at)) for e in page.data],
        )
        return 0
    page_d = client.webhooks.deliveries(args.endpoint_id, limit=args.limit)
    if as_json:
        print_json({"object": "list", "data": [d.model_dump(mode="json") for d in page_d.data]})
        return 0
    log = [
        (
            d.id,
            d.event_type,
            str((d.model_extra or {}).get("data", {}).get("id", "")),
            d.status,
            str(d.attempts),
            str(d.last_response_code or d.last_error or "-"),
            when(d.next_attempt_at) if d.status == "pending" else "-",
        )
        for d in page_d.data
    ]
    _table(("webhook-id", "event", "batch", "status", "attempts", "last answer", "next attempt"), log)
    return 0


def _table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    from rich.table import Table

    table = Table()
    for name in columns:
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(*row)
    stdout_console().print(table)
