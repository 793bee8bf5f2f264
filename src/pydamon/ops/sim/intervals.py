"""Sorted disjoint address intervals, kept as two int64 arrays.

The simulator tracks paged-out and never-touched memory as interval sets, not
as per-page bitmaps, so that a 1 TiB target costs what a 1 GiB one does:
every operation here is O(number of intervals), never O(number of pages).
"""

from __future__ import annotations

import numpy as np

_EMPTY = np.zeros(0, dtype=np.int64)


def merge_pieces(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge sorted, disjoint, non-empty pieces whose ends touch the next start."""
    if len(starts) == 0:
        return _EMPTY.copy(), _EMPTY.copy()
    new_run = np.ones(len(starts), dtype=bool)
    new_run[1:] = starts[1:] != ends[:-1]
    run_starts = starts[new_run]
    last_of_run = np.append(np.nonzero(new_run)[0][1:] - 1, len(starts) - 1)
    return run_starts.astype(np.int64), ends[last_of_run].astype(np.int64)


def elementary_segments(*boundaries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cut the address line at every given boundary: returns (starts, ends) of the pieces."""
    points = np.unique(np.concatenate([np.asarray(b, dtype=np.int64) for b in boundaries]))
    return points[:-1], points[1:]


class IntervalSet:
    """A set of addresses as sorted, disjoint, non-touching ``[start, end)`` intervals."""

    __slots__ = ("starts", "ends")

    def __init__(self, starts: np.ndarray | None = None, ends: np.ndarray | None = None):
        self.starts = _EMPTY.copy() if starts is None else np.asarray(starts, dtype=np.int64)
        self.ends = _EMPTY.copy() if ends is None else np.asarray(ends, dtype=np.int64)

    @classmethod
    def from_ranges(cls, ranges: list[tuple[int, int]]) -> IntervalSet:
        """Build from any ranges (unsorted, overlapping or empty ones allowed)."""
        out = cls()
        for start, end in sorted(ranges):
            out.add(start, end)
        return out

    def copy(self) -> IntervalSet:
        return IntervalSet(self.starts.copy(), self.ends.copy())

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def total_bytes(self) -> int:
        return int((self.ends - self.starts).sum())

    def ranges(self) -> list[tuple[int, int]]:
        return list(zip(self.starts.tolist(), self.ends.tolist(), strict=True))

    # -- queries ---------------------------------------------------------------
    def contains(self, addrs: np.ndarray) -> np.ndarray:
        """Whether each address lies in the set."""
        addrs = np.asarray(addrs, dtype=np.int64)
        idx = np.searchsorted(self.starts, addrs, side="right") - 1
        safe = np.clip(idx, 0, None)
        return (idx >= 0) & (addrs < self.ends[safe]) if len(self) else np.zeros(len(addrs), bool)

    def bytes_below(self, addrs: np.ndarray) -> np.ndarray:
        """For each address, how many bytes of the set lie below it."""
        addrs = np.asarray(addrs, dtype=np.int64)
        if not len(self):
            return np.zeros(len(addrs), dtype=np.int64)
        cumulative = np.concatenate(([0], np.cumsum(self.ends - self.starts)))
        idx = np.searchsorted(self.starts, addrs, side="right") - 1
        safe = np.clip(idx, 0, None)
        inside = np.minimum(addrs, self.ends[safe]) - self.starts[safe]
        below = cumulative[safe] + np.maximum(inside, 0)
        return np.where(idx >= 0, below, 0)

    def overlap(self, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """Bytes of the set inside each ``[starts[i], ends[i])`` (vectorized)."""
        return self.bytes_below(ends) - self.bytes_below(starts)

    def overlap_bytes(self, start: int, end: int) -> int:
        return int(self.overlap(np.array([start]), np.array([end]))[0])

    def intersection(self, start: int, end: int) -> IntervalSet:
        """The part of the set inside ``[start, end)``."""
        lo = int(np.searchsorted(self.ends, start, side="right"))
        hi = int(np.searchsorted(self.starts, end, side="left"))
        starts = np.maximum(self.starts[lo:hi], start)
        ends = np.minimum(self.ends[lo:hi], end)
        keep = starts < ends
        return IntervalSet(starts[keep], ends[keep])

    # -- edits -------------------------------------------------------------------
    def add(self, start: int, end: int) -> int:
        """Add ``[start, end)``; returns the bytes that were not in the set before."""
        if end <= start:
            return 0
        # intervals that overlap or touch [start, end) are merged into one
        lo = int(np.searchsorted(self.ends, start, side="left"))
        hi = int(np.searchsorted(self.starts, end, side="right"))
        already = 0
        new_start, new_end = start, end
        if lo < hi:
            s, e = self.starts[lo:hi], self.ends[lo:hi]
            already = int(np.maximum(np.minimum(e, end) - np.maximum(s, start), 0).sum())
            new_start = min(start, int(s[0]))
            new_end = max(end, int(e[-1]))
        self.starts = np.concatenate((self.starts[:lo], [new_start], self.starts[hi:])).astype(np.int64)
        self.ends = np.concatenate((self.ends[:lo], [new_end], self.ends[hi:])).astype(np.int64)
        return (end - start) - already

    def remove(self, start: int, end: int) -> int:
        """Remove ``[start, end)``; returns the bytes that were removed."""
        if end <= start:
            return 0
        lo = int(np.searchsorted(self.ends, start, side="right"))
        hi = int(np.searchsorted(self.starts, end, side="left"))
        if lo >= hi:
            return 0
        s, e = self.starts[lo:hi], self.ends[lo:hi]
        removed = int((np.minimum(e, end) - np.maximum(s, start)).sum())
        keep_s: list[int] = []
        keep_e: list[int] = []
        if s[0] < start:
            keep_s.append(int(s[0]))
            keep_e.append(start)
        if e[-1] > end:
            keep_s.append(end)
            keep_e.append(int(e[-1]))
        self.starts = np.concatenate((self.starts[:lo], keep_s, self.starts[hi:])).astype(np.int64)
        self.ends = np.concatenate((self.ends[:lo], keep_e, self.ends[hi:])).astype(np.int64)
        return removed

    def remove_pieces(self, starts: np.ndarray, ends: np.ndarray) -> int:
        """Remove many sorted, disjoint ranges at once; returns the bytes removed."""
        if not len(self) or not len(starts):
            return 0
        seg_s, seg_e = elementary_segments(self.starts, self.ends, starts, ends)
        if not len(seg_s):
            return 0
        removing = IntervalSet(np.asarray(starts, np.int64), np.asarray(ends, np.int64))
        in_self = self.contains(seg_s)
        in_removed = removing.contains(seg_s)
        keep = in_self & ~in_removed
        gone = in_self & in_removed
        self.starts, self.ends = merge_pieces(seg_s[keep], seg_e[keep])
        return int((seg_e[gone] - seg_s[gone]).sum())
