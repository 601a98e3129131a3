"""An LRU of runs' captures (internals.py) and what views derive from them, bounded in bytes.

A capture is one run's residual stream, O(L·T·d): tens to hundreds of MB. The server keeps the
recent ones so that a second view of a run, or of a run opened again, does not rerun the model.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

DEFAULT_CACHE_BYTES = 1 << 30


class CaptureCache:
    """LRU over captured runs (and recomputed attention), bounded by `max_bytes`.

    An entry larger than the whole budget is still kept (alone) so the view that asked for
    it does not recompute it on every request; everything else is evicted first.
    Thread-safe; `capture_lock` serialises captures so two requests never run the same
    forward twice.
    """

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES, spill_bytes: int = 0):
        self.max_bytes = int(max_bytes)
        self.spill_bytes = int(spill_bytes)  # disk for what the memory cannot hold (kept_attention.py)
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.bytes = 0
        self._entries: OrderedDict[Any, tuple[Any, int]] = OrderedDict()
        self._expendable: set[Any] = set()  # entries their own run's other entries may evict
        self._spilled: dict[Any, int] = {}  # entries whose data is on disk: their bytes there
        self._started: dict[Any, Any] = {}  # summaries left between two steps (started())
        self._lock = threading.Lock()
        self.capture_lock = threading.RLock()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Any) -> bool:
        return key in self._entries

    def get(self, key: Any) -> Any | None:
        with self._lock:
            item = self._entries.get(key)
            if item is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return item[0]

    def peek(self, key: Any) -> Any | None:
        """The entry if present, without counting a hit/miss or refreshing its recency."""
        with self._lock:
            item = self._entries.get(key)
            return None if item is None else item[0]

    def put(self, key: Any, value: Any, nbytes: int) -> None:
        with self._lock:
            self._drop(key)
            while self._entries and self.bytes + nbytes > self.max_bytes:
                self._drop(next(iter(self._entries)))
                self.evictions += 1
            self._entries[key] = (value, int(nbytes))
            self.bytes += int(nbytes)

    def could_hold(self, owner: Any, nbytes: int, expendable: bool = False) -> bool:
        """Whether `nbytes` more for run `owner` fit beside the run's own entries (other runs'
        entries can make room, and so can the run's expendable ones unless this is one too:
        put_for evicts them)."""
        with self._lock:
            return self._owned_bytes(owner, with_expendable=expendable) + nbytes <= self.max_bytes

    def put_for(self, owner: Any, key: Any, value: Any, nbytes: int, expendable: bool = False) -> bool:
        """Store an entry derived from run `owner` (its key, or a tuple starting with it), making
        room by evicting other runs' entries, least recently used first, then the run's own
        expendable ones (not for another expendable entry), never the rest of the run's own;
        False when they leave no room. The run being looked at comes first: an older run's
        summaries must not keep the new one's from the cache. Expendable: what is cheap to
        recompute, kept only while nothing the run needs more wants the room."""
        with self._lock:
            if key in self._entries:
                return True
            if self._owned_bytes(owner, with_expendable=expendable) + nbytes > self.max_bytes:
                return False
            others = [k for k in self._entries if not _owned(k, owner)]  # oldest first
            spare = [] if expendable else [k for k in self._entries if _owned(k, owner) and k in self._expendable]
            for other in others + spare:
                if self.bytes + nbytes <= self.max_bytes:
                    break
                self._drop(other)
                self.evictions += 1
            self._entries[key] = (value, int(nbytes))
            self.bytes += int(nbytes)
            if expendable:
                self._expendable.add(key)
            return True

    def _owned_bytes(self, owner: Any, with_expendable: bool = True) -> int:
        return sum(
            size
            for k, (_, size) in self._entries.items()
            if _owned(k, owner) and (with_expendable or k not in self._expendable)
        )

    def may_spill(self, owner: Any, nbytes: int) -> bool:
        """Whether `nbytes` more of run `owner` may go to disk, beside what the run has there:
        within `spill_bytes`, after other runs' spilled entries are dropped (their files go once
        no view reads them): one run on disk at a time, the one being looked at."""
        with self._lock:
            own = sum(size for k, size in self._spilled.items() if _owned(k, owner))
            if own + nbytes > self.spill_bytes:
                return False
            for other in [k for k in self._spilled if not _owned(k, owner)]:
                self._drop(other)
            return True

    def put_spilled(self, key: Any, value: Any, disk_bytes: int) -> None:
        """Store an entry whose data is on disk (no memory counted; `disk_bytes` there)."""
        with self._lock:
            self._drop(key)
            self._entries[key] = (value, 0)
            self._spilled[key] = int(disk_bytes)

    def started(self, key: Any) -> Any | None:
        """The partial state a summary computed ahead left between two of its steps, for `key`
        (the entry it is making): a view that needs the entry meanwhile goes on from there
        instead of starting again (the summary then finds the entry done)."""
        with self._lock:
            return self._started.get(key)

    def start(self, key: Any, state: Any) -> None:
        """Record a summary's partial state (one run's at a time: another run's are dropped; it
        is at most one layer's worth, not counted in the budget)."""
        with self._lock:
            for other in [k for k in self._started if k[0] != key[0]]:
                del self._started[other]
            self._started[key] = state

    def paused_part_way(self, key: Any, state: Any, pause: Callable[[], None]) -> Any | None:
        """Leave a summary's partial `state` for `key` (start), let a waiting view in (`pause()`);
        the entry if that view went on from the state and kept it meanwhile (the summary then
        stops), else None."""
        self.start(key, state)
        pause()
        return self.peek(key)

    def finish(self, key: Any) -> None:
        """The summary for `key` is done or given up: forget its partial state."""
        with self._lock:
            self._started.pop(key, None)

    def discard(self, key: Any) -> None:
        with self._lock:
            self._drop(key)

    def _drop(self, key: Any) -> None:
        old = self._entries.pop(key, None)
        self._expendable.discard(key)
        self._spilled.pop(key, None)
        if old is not None:
            self.bytes -= old[1]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._expendable.clear()
            self._spilled.clear()
            self._started.clear()
            self.bytes = 0

    def stats(self) -> dict[str, int]:
        return {
            "entries": len(self._entries),
            "bytes": self.bytes,
            "max_bytes": self.max_bytes,
            "spilled_bytes": sum(self._spilled.values()),
            "spill_bytes": self.spill_bytes,
            "hits": self.hits,
            "misses": self.misses,
            "evictions": self.evictions,
        }


def _owned(key: Any, owner: Any) -> bool:
    """A run's capture (its key) or an entry derived from it (a tuple starting with its key)."""
    return key == owner or (isinstance(key, tuple) and len(key) > 0 and key[0] == owner)
