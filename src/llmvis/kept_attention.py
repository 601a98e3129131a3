"""A layer's head-mean attention Ā, kept for the rollouts: its causal lower part only, in blocks
of query rows, in memory, or spilled to a file when the memory budget cannot hold it.

Ā is [T, T], but a causal query row has no weight past itself: blocks [a:b, :b] of `rows` rows
hold the lower part in about half the square (the bundled model's 30 layers at T = 8,000: 3.9 GB
instead of 7.7). A rollout reads it block by block, so a spilled Ā is read through a buffer of
one block, not mapped whole: the process's memory stays within its budget, and the operating
system's file cache, which it may reclaim at will, keeps the file's pages warm between targets.
Spilled files live in a private temporary directory, removed with the process; one file per
layer, removed as soon as nothing refers to it.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
import weakref

import numpy as np
import torch

DISK_MARGIN = 2 << 30  # a spill leaves at least this much of the disk free


class SpillFile:
    """An append-only file of fp32 blocks, read back block by block; deleted with the object."""

    def __init__(self) -> None:
        fd, self.path = tempfile.mkstemp(prefix="attention-", suffix=".f32", dir=_spill_dir())
        self.fd = fd
        self.size = 0
        weakref.finalize(self, _close_and_remove, fd, self.path)

    def append(self, block: torch.Tensor) -> int:
        """Write `block` (fp32) at the end; its offset in the file."""
        data = np.ascontiguousarray(block.numpy(), dtype=np.float32).data.cast("B")
        offset = self.size
        while data:
            written = os.pwrite(self.fd, data, self.size)
            data, self.size = data[written:], self.size + written
        return offset

    def read(self, offset: int, shape: tuple[int, int]) -> torch.Tensor:
        out = np.empty(shape, dtype=np.float32)
        view, at = out.data.cast("B"), offset
        while view:
            got = os.preadv(self.fd, [view], at)
            if got <= 0:
                raise OSError(f"{self.path}: short read at {at}")
            view, at = view[got:], at + got
        return torch.from_numpy(out)


class Staircase:
    """One layer's Ā [T, T] as row blocks [a:b, :b] of `rows` rows each, in memory or in a
    SpillFile; filled in order with `append`."""

    def __init__(self, t: int, rows: int, spill: SpillFile | None = None) -> None:
        self.t, self.rows, self.spill = t, rows, spill
        self._blocks: list[torch.Tensor] = []
        self._offsets: list[int] = []

    @staticmethod
    def nbytes(t: int, rows: int) -> int:
        return sum((min(t, a + rows) - a) * min(t, a + rows) * 4 for a in range(0, t, rows))

    def _span(self, i: int) -> tuple[int, int]:
        a = i * self.rows
        return a, min(self.t, a + self.rows)

    def append(self, block: torch.Tensor) -> None:
        """The next block: [b − a, b] fp32."""
        a, b = self._span(len(self._blocks) + len(self._offsets))
        if tuple(block.shape) != (b - a, b):
            raise ValueError(f"block {a}:{b} must be [{b - a}, {b}], not {list(block.shape)}")
        if self.spill is None:
            self._blocks.append(block.float().contiguous())
        else:
            self._offsets.append(self.spill.append(block.float()))

    @property
    def filled(self) -> int:
        """Rows appended so far."""
        return self._span(len(self._blocks) + len(self._offsets))[0]

    def cut_to(self, t: int) -> None:
        """Make it a staircase of `t` rows (a run that ended before the length it was started
        for), keeping the blocks appended so far, which must all be whole and within `t`."""
        if self.filled % self.rows or self.filled > t:
            raise ValueError(f"{self.filled} rows filled do not fit whole blocks of a staircase of {t}")
        self.t = t

    @property
    def complete(self) -> bool:
        return self.next_rows()[0] >= self.t

    def next_rows(self) -> tuple[int, int]:
        """(a, b): the query rows of the block `append` takes next."""
        return self._span(len(self._blocks) + len(self._offsets))

    def block(self, i: int) -> torch.Tensor:
        if self.spill is None:
            return self._blocks[i]
        a, b = self._span(i)
        return self.spill.read(self._offsets[i], (b - a, b))

    def rows_of(self, rows: list[int], end: int) -> torch.Tensor:
        """[len(rows), end] these query rows (sorted or not; keys past a row are 0). Consecutive
        rows of one block in memory are a view, not a copy."""
        first, last = rows[0] // self.rows, rows[-1] // self.rows
        if first == last and rows == list(range(rows[0], rows[0] + len(rows))):
            a = first * self.rows
            return self.block(first)[rows[0] - a : rows[0] - a + len(rows), :end]
        out = torch.zeros(len(rows), end)
        index = torch.tensor(rows)
        for i in sorted({q // self.rows for q in rows}):
            a, b = self._span(i)
            mine = torch.nonzero((index >= a) & (index < b)).flatten()
            width = min(b, end)
            out[mine, :width] = self.block(i)[index[mine] - a, :width]
        return out


def disk_has_room(nbytes: int) -> bool:
    """Whether the spill directory's disk keeps DISK_MARGIN free after `nbytes` more."""
    return shutil.disk_usage(_spill_dir()).free >= nbytes + DISK_MARGIN


_dir: str | None = None
_dir_lock = threading.Lock()


def _spill_dir() -> str:
    global _dir
    with _dir_lock:
        if _dir is None:
            _dir = tempfile.mkdtemp(prefix="llmvis-spill-")
            atexit.register(shutil.rmtree, _dir, True)
        return _dir


def _close_and_remove(fd: int, path: str) -> None:
    try:
        os.close(fd)
    finally:
        if os.path.exists(path):
            os.remove(path)
