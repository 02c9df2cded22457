"""batchq's state in Redis: batch records and transitions (``batches``), lines (``lines``), typed records.

The Lua scripts beside this package (``scripts/*.lua``) each keep one invariant atomically; their headers give
their KEYS/ARGV contracts.
"""

from batchq.state.batches import BatchState
from batchq.state.lines import (
    Claim,
    IndexEntry,
    LineState,
    OutcomeRecorded,
    Usage,
    pack_index,
    placeholder_custom_id,
)
from batchq.state.records import BatchRecord, decode_record, to_batch

__all__ = [
    "BatchRecord",
    "BatchState",
    "Claim",
    "IndexEntry",
    "LineState",
    "OutcomeRecorded",
    "Usage",
    "decode_record",
    "pack_index",
    "placeholder_custom_id",
    "to_batch",
]
