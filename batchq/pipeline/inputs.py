"""Input lines read from the store through a bounded, per-process cache of aligned blocks.

Lines of a batch are fed in order, so the lines a worker runs sit close together in the file: one ranged read
of a block serves the lines around it, instead of a store round trip per line.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from batchq.state import IndexEntry
from batchq.storage import ObjectStore

#: Block size of the cache; a line longer than this is read on its own.
BLOCK = 256 * 1024


class InputReader:
    """Reads request lines by their index entry. Safe to share between threads."""

    def __init__(self, store: ObjectStore, max_bytes: int) -> None:
        self.store = store
        self.max_bytes = max_bytes
        self._blocks: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self._loading: dict[tuple[str, int], threading.Event] = {}

    def read(self, storage_key: str, entry: IndexEntry) -> bytes:
        first, last = entry.offset // BLOCK, (entry.offset + entry.length - 1) // BLOCK
        if self.max_bytes < 2 * BLOCK or last - first > 1 or entry.length <= 0:
            return self.store.read_range(storage_key, entry.offset, entry.length)
        data = b"".join(self._block(storage_key, n) for n in range(first, last + 1))
        start = entry.offset - first * BLOCK
        line = data[start : start + entry.length]
        if len(line) != entry.length:  # the object changed under us: read the line itself, never a torn one
            return self.store.read_range(storage_key, entry.offset, entry.length)
        return line

    def _block(self, storage_key: str, n: int) -> bytes:
        key = (storage_key, n)
        while True:
            with self._lock:
                block = self._blocks.get(key)
                if block is not None:
                    self._blocks.move_to_end(key)
                    return block
                waiting = self._loading.get(key)
                if waiting is None:
                    self._loading[key] = threading.Event()
                    break
            waiting.wait(30)  # one thread loads a block; the others wait for it instead of reading it too
        try:
            block = self.store.read_range(storage_key, n * BLOCK, BLOCK)
            with self._lock:
                self._blocks[key] = block
                self._size += len(block)
                while self._size > self.max_bytes and self._blocks:
                    _, old = self._blocks.popitem(last=False)
                    self._size -= len(old)
            return block
        finally:
            with self._lock:
                self._loading.pop(key).set()
