"""Monitoring regions of one target, kept as parallel numpy arrays.

The kernel keeps a linked list of ``struct damon_region``; per-sample work on
1000 regions in a Python list would cost milliseconds, so here every field is
a column and the engine works on whole columns at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import einval
from .attrs import MIN_REGION

_FIELDS = ("start", "end", "nr_accesses", "nr_accesses_bp", "last_nr_accesses", "age")


def align_down(x: int, a: int = MIN_REGION) -> int:
    return x - x % a


def align_up(x: int, a: int = MIN_REGION) -> int:
    return -(-x // a) * a


@dataclass(frozen=True)
class AddrRange:
    """A half-open address range ``[start, end)``."""

    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class Region:
    """One region, as read back from a :class:`RegionArray` (a copy)."""

    start: int
    end: int
    nr_accesses: int
    age: int
    nr_accesses_bp: int = 0
    last_nr_accesses: int = 0

    @property
    def size(self) -> int:
        return self.end - self.start


class RegionArray:
    """Sorted, disjoint regions of a target with their access counters."""

    __slots__ = _FIELDS

    def __init__(self, n: int = 0):
        for name in _FIELDS:
            setattr(self, name, np.zeros(n, dtype=np.int64))

    # -- construction -------------------------------------------------------
    @classmethod
    def from_ranges(cls, ranges: Iterable[tuple[int, int] | AddrRange]) -> RegionArray:
        pairs = [(r.start, r.end) if isinstance(r, AddrRange) else tuple(r) for r in ranges]
        ra = cls(len(pairs))
        if pairs:
            arr = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
            ra.start[:] = arr[:, 0]
            ra.end[:] = arr[:, 1]
        return ra

    @classmethod
    def from_columns(cls, **cols: np.ndarray) -> RegionArray:
        n = len(cols["start"])
        ra = cls(0)
        for name in _FIELDS:
            col = cols.get(name)
            setattr(ra, name, np.zeros(n, np.int64) if col is None else np.asarray(col, np.int64))
        return ra

    def copy(self) -> RegionArray:
        ra = RegionArray.__new__(RegionArray)
        for name in _FIELDS:
            setattr(ra, name, getattr(self, name).copy())
        return ra

    def take(self, index: np.ndarray) -> RegionArray:
        ra = RegionArray.__new__(RegionArray)
        for name in _FIELDS:
            setattr(ra, name, getattr(self, name)[index])
        return ra

    @staticmethod
    def concat(parts: Sequence[RegionArray]) -> RegionArray:
        ra = RegionArray.__new__(RegionArray)
        for name in _FIELDS:
            cols = [getattr(p, name) for p in parts]
            setattr(ra, name, np.concatenate(cols) if cols else np.zeros(0, np.int64))
        return ra

    # -- queries ------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.start)

    @property
    def sizes(self) -> np.ndarray:
        return self.end - self.start

    @property
    def total_size(self) -> int:
        return int(self.sizes.sum())

    def __getitem__(self, i: int) -> Region:
        return Region(
            int(self.start[i]),
            int(self.end[i]),
            int(self.nr_accesses[i]),
            int(self.age[i]),
            int(self.nr_accesses_bp[i]),
            int(self.last_nr_accesses[i]),
        )

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def ranges(self) -> list[AddrRange]:
        return [AddrRange(int(s), int(e)) for s, e in zip(self.start, self.end, strict=True)]

    # -- edits ----------------------------------------------------------------
    def split_at(self, i: int, sz_left: int) -> None:
        """Split region ``i`` so that its left part is ``sz_left`` bytes.

        Both parts keep the counters, as the kernel's damon_split_region_at().
        """
        cut = int(self.start[i]) + sz_left
        for name in _FIELDS:
            col = getattr(self, name)
            setattr(self, name, np.insert(col, i + 1, col[i]))
        self.end[i] = cut
        self.start[i + 1] = cut

    def check_sorted_disjoint(self) -> None:
        """Raise EINVAL unless every region is non-empty-or-equal, sorted and disjoint."""
        if len(self) == 0:
            return
        if np.any(self.start > self.end):
            raise einval("a region's start is larger than its end")
        if np.any(self.end[:-1] > self.start[1:]):
            raise einval("regions overlap or are not sorted")


def validate_ranges(ranges: Sequence[AddrRange]) -> None:
    """The sysfs/core check on user regions: start <= end, sorted, no overlap."""
    prev_end = None
    for r in ranges:
        if r.start > r.end:
            raise einval(f"region start {r.start:#x} is larger than end {r.end:#x}")
        if prev_end is not None and prev_end > r.start:
            raise einval("regions overlap or are not sorted by address")
        prev_end = r.end


def set_regions(regions: RegionArray, ranges: Sequence[AddrRange]) -> RegionArray:
    """Fit ``regions`` to ``ranges`` (the kernel's damon_set_regions()).

    Regions touching no range are dropped; for each range, the first and last
    intersecting regions are stretched to the range's (aligned) bounds and the
    holes between them are filled with fresh regions; a range that no region
    touches becomes one fresh region. Kept regions keep their counters.
    """
    if len(regions):
        keep = np.zeros(len(regions), dtype=bool)
        for rng in ranges:
            keep |= (regions.start < rng.end) & (rng.start < regions.end)
        regions = regions.take(np.nonzero(keep)[0])
    pieces: list[RegionArray] = []
    cursor = 0
    n = len(regions)
    for rng in ranges:
        lo, hi = align_down(rng.start), align_up(rng.end)
        # regions before this range that intersect no later range were dropped
        # above; everything from cursor up to the first intersecting one stays
        first = cursor
        while first < n and not (regions.start[first] < rng.end and rng.start < regions.end[first]):
            if regions.start[first] >= rng.end:
                break
            first += 1
        last = first
        while last < n and regions.start[last] < rng.end and rng.start < regions.end[last]:
            last += 1
        if cursor < first:
            pieces.append(regions.take(np.arange(cursor, first)))
        if last == first:
            pieces.append(RegionArray.from_ranges([(lo, hi)]))
            cursor = first
            continue
        part = regions.take(np.arange(first, last))
        part.start[0] = lo
        part.end[-1] = hi
        pieces.append(_fill_holes(part))
        cursor = last
    if cursor < n:
        pieces.append(regions.take(np.arange(cursor, n)))
    return RegionArray.concat(pieces) if pieces else RegionArray(0)


def _fill_holes(part: RegionArray) -> RegionArray:
    gaps = np.nonzero(part.end[:-1] != part.start[1:])[0]
    if len(gaps) == 0:
        return part
    holes = RegionArray.from_ranges(
        [(int(part.end[g]), int(part.start[g + 1])) for g in gaps]
    )
    merged = RegionArray.concat([part, holes])
    return merged.take(np.argsort(merged.start, kind="stable"))


def split_evenly(start: int, end: int, nr_pieces: int) -> list[AddrRange]:
    """Split ``[start, end)`` into ``nr_pieces`` aligned pieces, the last taking the rest.

    As damon_va_evenly_split_region(): if the aligned piece size is zero the
    range is left whole.
    """
    if nr_pieces <= 1:
        return [AddrRange(start, end)]
    sz_piece = align_down((end - start) // nr_pieces)
    if sz_piece == 0:
        return [AddrRange(start, end)]
    out = []
    s = start
    for _ in range(nr_pieces - 1):
        out.append(AddrRange(s, s + sz_piece))
        s += sz_piece
    out.append(AddrRange(s, end))
    return out


def three_regions(mappings: Sequence[tuple[int, int]]) -> list[AddrRange] | None:
    """The vaddr "three regions" of an address space, from its sorted mappings.

    The two biggest gaps between consecutive mappings cut the space from the
    first mapping's start to the last mapping's end into three ranges; the
    huge unmapped areas (between heap and mmap area, and below the stack)
    are thus left out. None when there are fewer than two gaps.
    """
    if not mappings:
        return None
    first_gap = second_gap = AddrRange(0, 0)
    prev_end = None
    for start, end in mappings:
        if prev_end is not None:
            gap = AddrRange(prev_end, start)
            if gap.size > first_gap.size:
                second_gap, first_gap = first_gap, gap
            elif gap.size > second_gap.size:
                second_gap = gap
        prev_end = end
    if first_gap.size == 0 or second_gap.size == 0:
        return None
    g1, g2 = sorted((first_gap, second_gap), key=lambda g: g.start)
    lo, hi = mappings[0][0], mappings[-1][1]
    return [
        AddrRange(align_up(lo), align_up(g1.start)),
        AddrRange(align_up(g1.end), align_up(g2.start)),
        AddrRange(align_up(g2.end), align_up(hi)),
    ]


def init_regions_evenly(ranges: Sequence[AddrRange], min_nr_regions: int) -> RegionArray:
    """Initial regions of a vaddr target: each range split into pieces of total/min_nr."""
    total = sum(r.size for r in ranges)
    sz = max(MIN_REGION, total // min_nr_regions)
    out: list[AddrRange] = []
    for r in ranges:
        out.extend(split_evenly(r.start, r.end, r.size // sz))
    return RegionArray.from_ranges(out)
