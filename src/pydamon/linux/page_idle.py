"""The idle page bitmap (``/sys/kernel/mm/page_idle/bitmap``) and ``/proc/kpageflags``.

The bitmap holds one bit per page frame, in 64-bit words: writing a 1 bit
marks the frame's folio idle (clearing the accessed bits of its mappings),
reading tells which frames are still idle. Facts that shape this module:

* I/O must be 8-byte aligned and one call moves at most one page (4096
  bytes, 32768 frames);
* writing 0 bits does nothing, so one write may carry the zero words
  between sampled frames to save calls; but reading a word walks the
  reverse map of every idle frame in it, so reads cover only the words that
  hold sampled frames (consecutive such words share a read);
* only head pages of LRU folios count: a tail page of a huge page never
  reads idle (it would look accessed), nor does a frame off the LRU.
  ``/proc/kpageflags`` tells heads, tails and LRU frames apart.
"""

from __future__ import annotations

import os
from array import array

import numpy as np

from . import syscount
from .batching import group_runs

BITMAP_PATH = "/sys/kernel/mm/page_idle/bitmap"
KPAGEFLAGS_PATH = "/proc/kpageflags"

WORD_SIZE = 8
#: one sysfs call moves at most one page
MAX_CALL_BYTES = 4096
MAX_RUN_WORDS = MAX_CALL_BYTES // WORD_SIZE
#: zero words one bitmap write always carries to save a call: the kernel
#: steps over each frame of a written span, so a word of zeros costs 64
#: steps; measured under QEMU TCG, ~30 zero words cost as much as one call
DEFAULT_WRITE_MAX_GAP_WORDS = 32
#: at most this many bitmap writes per marked frame: wider gaps are carried
#: (largest gaps split first) until the writes fit, for few calls per sample
DEFAULT_WRITE_CALLS_PER_FRAME = 0.3
ENXIO = 6

# /proc/kpageflags bits (Documentation/admin-guide/mm/pagemap.rst)
KPF_LRU = 1 << 5
KPF_ACTIVE = 1 << 6
KPF_ANON = 1 << 12
KPF_COMPOUND_HEAD = 1 << 15
KPF_COMPOUND_TAIL = 1 << 16
KPF_HUGE = 1 << 17
KPF_NOPAGE = 1 << 20
KPF_THP = 1 << 22
KPF_ZERO_PAGE = 1 << 24
KPF_IDLE = 1 << 25
KPF_COMPOUND = KPF_COMPOUND_HEAD | KPF_COMPOUND_TAIL

#: the largest folio a head is searched for, in frames (a PMD-sized THP)
MAX_FOLIO_FRAMES = 512


def word_masks(pfns: list[int]) -> dict[int, int]:
    """Bitmap word -> bits of the given frames (negative frames are skipped)."""
    masks: dict[int, int] = {}
    get = masks.get
    for p in pfns:
        if p >= 0:
            w = p >> 6
            masks[w] = get(w, 0) | (1 << (p & 63))
    return masks


def gap_for_budget(words: list[int], min_gap: int, max_calls: int) -> int:
    """The smallest gap (>= ``min_gap``) to carry so that sorted ``words`` need at
    most ``max_calls`` writes, not counting the one-page limit of a call."""
    gaps = [b - a - 1 for a, b in zip(words, words[1:], strict=False)]
    if sum(g > min_gap for g in gaps) < max_calls:
        return min_gap
    gaps.sort(reverse=True)
    return max(min_gap, gaps[max_calls - 1])


def build_write_spans(pfns: list[int], max_gap_words: int = DEFAULT_WRITE_MAX_GAP_WORDS,
                      calls_per_frame: float | None = None) -> list[tuple[int, array]]:
    """Bitmap writes marking ``pfns`` idle: (byte offset, 64-bit words) per call.

    Words with at most ``max_gap_words`` zero words between them share a
    write; with ``calls_per_frame``, wider gaps are carried too until there
    are at most that many writes per frame (plus what the one-page limit adds).
    """
    masks = word_masks(pfns)
    words = sorted(masks)
    if calls_per_frame is not None and len(words) > 1:
        max_calls = max(1, int(len(words) * calls_per_frame))
        max_gap_words = gap_for_budget(words, max_gap_words, max_calls)
    out = []
    for first, count, i, j in group_runs(words, max_gap_words, MAX_RUN_WORDS):
        buf = array("Q", bytes(count * WORD_SIZE))
        for k in range(i, j):
            w = words[k]
            buf[w - first] = masks[w]
        out.append((first * WORD_SIZE, buf))
    return out


def idle_from_reads(pfns: list[int], words: list[int], runs, chunks: list[bytes]) -> list[bool]:
    """Whether each frame is idle, from the words each read run returned (-1 frames: False)."""
    value: dict[int, int] = {}
    for (first, _, i, j), data in zip(runs, chunks, strict=True):
        got = memoryview(data[:len(data) // WORD_SIZE * WORD_SIZE]).cast("Q")
        have = len(got)
        for k in range(i, j):
            off = words[k] - first
            value[words[k]] = got[off] if off < have else 0
    return [p >= 0 and bool((value[p >> 6] >> (p & 63)) & 1) for p in pfns]


class IdleBitmap:
    """Marks frames idle and reads them back, with as few calls as the layout allows."""

    def __init__(self, fd: int, write_max_gap_words: int = DEFAULT_WRITE_MAX_GAP_WORDS,
                 write_calls_per_frame: float | None = DEFAULT_WRITE_CALLS_PER_FRAME):
        self.fd = fd
        self.write_max_gap_words = write_max_gap_words
        self.write_calls_per_frame = write_calls_per_frame

    @classmethod
    def open(cls, path: str = BITMAP_PATH) -> IdleBitmap:
        return cls(os.open(path, os.O_RDWR | os.O_CLOEXEC))

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def mark_idle(self, pfns: list[int]) -> None:
        """Mark the folios of ``pfns`` idle (negative entries are skipped)."""
        spans = build_write_spans(pfns, self.write_max_gap_words, self.write_calls_per_frame)
        fd = self.fd
        for offset, words in spans:
            try:
                os.pwrite(fd, words, offset)
            except OSError as e:
                if e.errno != ENXIO:  # beyond the last frame: nothing there to mark
                    raise
        syscount.add("bitmap_write", len(spans))

    def read_idle(self, pfns: list[int]) -> list[bool]:
        """Whether each frame is still idle (negative, non-LRU and tail frames: False)."""
        words = sorted({p >> 6 for p in pfns if p >= 0})
        runs = group_runs(words, 0, MAX_RUN_WORDS)
        fd = self.fd
        chunks = []
        for first, count, _, _ in runs:
            try:
                chunks.append(os.pread(fd, count * WORD_SIZE, first * WORD_SIZE))
            except OSError as e:
                if e.errno != ENXIO:
                    raise
                chunks.append(b"")
        syscount.add("bitmap_read", len(runs))
        return idle_from_reads(pfns, words, runs, chunks)


def block_info_of(window_start: int, flags: list[int] | np.ndarray, pfn: int
                  ) -> tuple[int | None, bool]:
    """Head of the folio holding ``pfn`` and whether that folio is exactly the
    PMD-sized block ``window_start .. window_start+511``, from the block's flags."""
    f = np.asarray(flags, dtype=np.uint64)
    upto = min(pfn - window_start, len(f) - 1)
    heads = np.flatnonzero(f[:upto + 1] & np.uint64(KPF_COMPOUND_HEAD))
    if not len(heads):
        return None, False
    head = window_start + int(heads[-1])
    whole = (head == window_start and len(f) == MAX_FOLIO_FRAMES
             and bool(np.all(f[1:] & np.uint64(KPF_COMPOUND_TAIL))))
    return head, whole


class KPageFlags:
    """Reads ``/proc/kpageflags`` (64 flag bits per frame)."""

    def __init__(self, fd: int, max_gap: int = 7):
        self.fd = fd
        self.max_gap = max_gap

    @classmethod
    def open(cls, path: str = KPAGEFLAGS_PATH) -> KPageFlags:
        return cls(os.open(path, os.O_RDONLY | os.O_CLOEXEC))

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def read(self, pfns: list[int]) -> dict[int, int]:
        """Flags of each frame; frames the kernel returns nothing for read NOPAGE."""
        keys = sorted(set(pfns))
        runs = group_runs(keys, self.max_gap, MAX_FOLIO_FRAMES)
        out: dict[int, int] = {}
        fd = self.fd
        for first, count, i, j in runs:
            try:
                data = os.pread(fd, count * 8, first * 8)
            except OSError:
                data = b""
            got = memoryview(data[:len(data) // 8 * 8]).cast("Q")
            for k in range(i, j):
                off = keys[k] - first
                out[keys[k]] = got[off] if off < len(got) else KPF_NOPAGE
        syscount.add("kpageflags", len(runs))
        return out

    def block_info(self, pfn: int) -> tuple[int | None, bool]:
        """Head of the (at most PMD-sized) folio holding ``pfn``, and whether that
        folio is the whole naturally aligned PMD block: one read of 512 flags."""
        start = pfn & ~(MAX_FOLIO_FRAMES - 1)
        syscount.add("kpageflags")
        try:
            data = os.pread(self.fd, MAX_FOLIO_FRAMES * 8, start * 8)
        except OSError:
            return None, False
        flags = np.frombuffer(data, dtype=np.uint64, count=len(data) // 8)
        if len(flags) <= pfn - start:
            return None, False
        return block_info_of(start, flags, pfn)


class FrameChecker:
    """Idle-bitmap access checks of page frames, shared by vaddr and paddr.

    Owns the bitmap and kpageflags descriptors. ``resolve`` turns sampled
    frames into the frames whose idle bit tells their folio's state (the head
    of a huge page; none for a frame off the LRU, which the kernel counts as
    not accessed); ``mark`` and ``accessed`` are the two halves of a sample.
    """

    def __init__(self, bitmap: IdleBitmap, kpageflags: KPageFlags):
        self.bitmap = bitmap
        self.kpageflags = kpageflags
        #: frames of the zero page(s): what reads of untouched memory map; never on the LRU
        self.zero_pfns: set[int] = set()

    @classmethod
    def open(cls) -> FrameChecker:
        bitmap = IdleBitmap.open()
        try:
            return cls(bitmap, KPageFlags.open())
        except BaseException:
            bitmap.close()
            raise

    def close(self) -> None:
        self.bitmap.close()
        self.kpageflags.close()

    def resolve(self, pfns: list[int]) -> tuple[list[int], list[bool]]:
        """(frame to check or -1, frame is in a PMD-sized folio) for each frame (>= 0)."""
        flags = self.kpageflags.read(pfns)
        check: list[int] = []
        pmd: list[bool] = []
        for p in pfns:
            f = flags[p]
            if not f & KPF_LRU:
                if f & KPF_ZERO_PAGE:
                    self.zero_pfns.add(p)
                check.append(-1)
                pmd.append(False)
            elif f & KPF_COMPOUND:
                head, whole = self.kpageflags.block_info(p)
                check.append(-1 if head is None else head)
                pmd.append(whole)
            else:
                check.append(p)
                pmd.append(False)
        return check, pmd

    def mark(self, check_pfns: list[int]) -> None:
        self.bitmap.mark_idle(check_pfns)

    def accessed(self, check_pfns: list[int]) -> list[bool]:
        """Accessed since ``mark``: a checked frame that is no longer idle."""
        idle = self.bitmap.read_idle(check_pfns)
        return [p >= 0 and not i for p, i in zip(check_pfns, idle, strict=True)]
