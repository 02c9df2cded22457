"""A batch's error lines grouped by code, with the first few of each: what the page's "Errors" panel shows."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from batchq.keys import request_id

#: Characters of an error message shown in an example (the whole line is in the error file).
MAX_MESSAGE_CHARS = 300
#: Beyond this many lines, examples carry no input line number (finding one hashes every line id).
MAX_LINES_NUMBERED = 200_000


@dataclass
class CodeGroup:
    count: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)


class ErrorSummary:
    """Counts by code and the first ``per_code`` error lines of each code, in input order."""

    def __init__(self, per_code: int) -> None:
        self.per_code = per_code
        self.groups: dict[str, CodeGroup] = {}
        self.total = 0

    def add(self, raw: bytes) -> None:
        try:
            line = json.loads(raw)
        except ValueError:
            return
        if not isinstance(line, dict) or not isinstance(line.get("error"), dict):
            return  # a success (partial results mix both)
        error: dict[str, Any] = line["error"]
        code = str(error.get("code") or "unknown")
        group = self.groups.setdefault(code, CodeGroup())
        group.count += 1
        self.total += 1
        if len(group.examples) < self.per_code:
            response = line.get("response")
            group.examples.append(
                {
                    "id": str(line.get("id", "")),
                    "custom_id": str(line.get("custom_id", "")),
                    "message": str(error.get("message") or "")[:MAX_MESSAGE_CHARS],
                    "status_code": response.get("status_code") if isinstance(response, dict) else None,
                }
            )

    def example_ids(self) -> set[str]:
        return {e["id"] for g in self.groups.values() for e in g.examples}

    def public(self, batch_id: str, lines: dict[str, int], final: bool) -> dict[str, Any]:
        """The JSON answer; ``lines`` maps an example's ``batch_req_`` id to its 1-based input line."""
        codes = []
        for code, group in sorted(self.groups.items(), key=lambda item: (-item[1].count, item[0])):
            examples = [{**e, "line": lines.get(e["id"])} for e in group.examples]
            codes.append({"code": code, "count": group.count, "examples": examples})
        return {
            "object": "dashboard.error_summary",
            "batch_id": batch_id,
            "final": final,
            "total": self.total,
            "codes": codes,
        }


def summarize_errors(lines: Iterable[bytes], per_code: int) -> ErrorSummary:
    summary = ErrorSummary(per_code)
    for raw in lines:
        summary.add(raw)
    return summary


def line_numbers(batch_id: str, total: int, ids: set[str]) -> dict[str, int]:
    """The 1-based input line of each ``batch_req_`` id in ``ids`` (ids are a hash of the batch and the line)."""
    found: dict[str, int] = {}
    if not ids or total > MAX_LINES_NUMBERED:
        return found
    for line in range(total):
        rid = request_id(batch_id, line)
        if rid in ids:
            found[rid] = line + 1
            if len(found) == len(ids):
                break
    return found
