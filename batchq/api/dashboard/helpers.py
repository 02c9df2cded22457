"""``/dashboard/api``: the little the page needs beyond ``/v1``, with the same auth and isolation as ``/v1``.

The page reads batches, files and webhook endpoints from ``/v1`` itself. Here: who the caller is (and whether the
server runs in local mode, where no key is needed), and a batch's errors grouped by code, which the page could only
get otherwise by downloading the whole error file.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from batchq.api.dashboard.errors import ErrorSummary, line_numbers, summarize_errors
from batchq.api.deps import AccountDep, ServicesDep
from batchq.api.errors import NotFoundProblem
from batchq.pipeline.results import iter_lines, iter_results
from batchq.schemas import FINAL_STATUSES
from batchq.state import LineState

router = APIRouter(prefix="/dashboard/api", include_in_schema=False)

#: Example lines shown per error code, at most.
MAX_EXAMPLES = 10


@router.get("/session")
async def read_session(services: ServicesDep, account: AccountDep) -> dict[str, Any]:
    """The caller's account; ``local_mode`` true when the server needs no key (loopback clients only)."""
    return {"object": "dashboard.session", "account": account, "local_mode": services.keys.local_mode}


@router.get("/batches/{batch_id}/errors")
def read_error_summary(
    batch_id: str, services: ServicesDep, account: AccountDep, examples: int = Query(3, ge=0, le=MAX_EXAMPLES)
) -> dict[str, Any]:
    """The batch's failed lines by error code: how many, and the first few (custom_id, input line, message)."""
    batch = services.state.get(batch_id, account)
    if batch is None:  # another account's batch is unknown here too
        raise NotFoundProblem(f"No such Batch object: {batch_id}", code="batch_not_found", param="batch_id")
    final = batch.status in FINAL_STATUSES
    summary = ErrorSummary(examples)
    if final and batch.error_file_id:
        error_file = services.files.record(batch.error_file_id, account)
        if error_file is not None:
            summary = summarize_errors(iter_lines(services.store.iter_chunks(error_file["storage_key"])), examples)
    elif not final and batch.request_counts.failed:
        # While it runs: the outcomes recorded so far, successes skipped (the page asks only when `failed` moves).
        record = services.state.get_record(batch_id)
        if record is not None:
            lines = iter_results(services.store, services.files, LineState(services.state.redis), record)
            summary = summarize_errors(lines, examples)
    return summary.public(batch_id, line_numbers(batch_id, batch.request_counts.total, summary.example_ids()), final)
