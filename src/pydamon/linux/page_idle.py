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
* reading an idle frame walks its folio's mappings as a write does and
  leaves it idle only if none was accessed, the state a mark leaves: so a
  mark of a frame still idle from before can be a read, which through
  io_uring costs less than a write (:meth:`FrameChecker.mark`);
* only head pages of LRU folios count: a tail page of a huge page never
  reads idle (it would look accessed), nor does a frame off the LRU.
  ``/proc/kpageflags`` tells heads, tails and LRU frames apart.
"""

from __future__ import annotations

import os

import numpy as np

from . import batching
from .batching import PAST_THE_END, read_entries, read_scattered, run_arrays, write_words
from .uring import IORING_OP_READ, Uring

BITMAP_PATH = "/sys/kernel/mm/page_idle/bitmap"
KPAGEFLAGS_PATH = "/proc/kpageflags"

WORD_SIZE = 8
#: one sysfs call moves at most one page
MAX_CALL_BYTES = 4096
MAX_RUN_WORDS = MAX_CALL_BYTES // WORD_SIZE
#: zero words one bitmap write always carries to save a call: the kernel
#: steps over each frame of a written span, so a word of zeros costs 64
#: steps; measured under QEMU TCG a zero word costs ~2.5 us and a call
#: ~250 us, so gaps up to ~100 words cost no more carried than split
DEFAULT_WRITE_MAX_GAP_WORDS = 96
#: through io_uring a write is no system call of its own: measured under TCG
#: (THP, 1000 regions of a 4 GiB target, heads ~16 words apart), a write
#: costs ~32 us against ~2.5 us per zero word carried, so gaps of more than
#: ~12 words cost more carried (gap 48 read 124 ms per sample, 16 113, 8 109)
URING_WRITE_MAX_GAP_WORDS = 8
#: marks read the frames believed idle first (:meth:`FrameChecker.mark`)
#: only when their writes would share few calls: at least this many writes
#: per frame. Under TCG a write costs ~40 us plus ~17 us of walk per frame,
#: a read with its walk ~32 us plus ~6 us of planning, so the read wins above
#: ~0.5. Measured (THP, 1000 regions, per sample): at 4 GiB 0.76 writes a
#: frame, reading first took 90-95 ms instead of 104-117; at 1 GiB 0.04,
#: 82-88 ms instead of 74-83
PROBE_MIN_WRITES_PER_FRAME = 0.5
#: ... and only when at least this many frames are believed idle: their reads
#: are a batch of its own, ~5-13 ms per sample of planning and submission
#: under TCG, and each frame that reads idle saves only a write's ~30 us more
#: than its read. Measured (one boot, per sample, reading first against not):
#: THP, 100 regions (<= 100 believed): 79-89 against 71-76 ms at 1 GiB and
#: 105-118 against 101-112 at 4 GiB; 4 KiB pages, whose samples seldom land
#: on a frame checked before (~45 believed of 1000): 126-131 against 116-119
#: at 1 GiB, 188 against 154 at 4 GiB; THP, 1000 regions of 4 GiB (~840
#: believed): 90-95 against 104-117
PROBE_MIN_FRAMES = 256
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
#: adjacent PMD-sized windows of kpageflags read by one call (32 KiB)
WINDOWS_PER_READ = 8


U64 = np.uint64


def word_masks(pfns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted bitmap words, bits of the given frames in each); negative frames skipped."""
    p = np.sort(np.asarray(pfns, dtype=np.int64))
    p = p[p.searchsorted(0):]
    words = p >> 6
    # int64 shifts: bit 63 comes out negative, the same 64 bits as unsigned
    bits = 1 << (p & 63)
    if len(words) < 2:
        return words, bits.view(U64)
    firsts = np.flatnonzero(words[1:] != words[:-1]) + 1
    if len(firsts) == len(words) - 1:  # no word holds two frames (the common case)
        return words, bits.view(U64)
    firsts = np.concatenate(([0], firsts))
    return words[firsts], np.bitwise_or.reduceat(bits, firsts).view(U64)


def gap_for_budget(words: np.ndarray, min_gap: int, max_calls: int) -> int:
    """The smallest gap (>= ``min_gap``) to carry so that sorted ``words`` need at
    most ``max_calls`` writes, not counting the one-page limit of a call."""
    words = np.asarray(words, dtype=np.int64)
    gaps = words[1:] - words[:-1] - 1
    if int((gaps > min_gap).sum()) < max_calls:
        return min_gap
    # splitting only at gaps wider than the max_calls-th widest leaves < max_calls breaks
    return max(min_gap, int(np.partition(gaps, len(gaps) - max_calls)[len(gaps) - max_calls]))


def build_write_spans(pfns, max_gap_words: int = DEFAULT_WRITE_MAX_GAP_WORDS,
                      calls_per_frame: float | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bitmap writes marking ``pfns`` idle: (byte offset of each write, its
    number of words, all writes' words one after the other).

    Words with at most ``max_gap_words`` zero words between them share a
    write; with ``calls_per_frame``, wider gaps are carried too until there
    are at most that many writes per frame (plus what the one-page limit adds).
    """
    if calls_per_frame is None and len(pfns) < batching.PY_KEYS:
        return _write_spans_listed(pfns if isinstance(pfns, list) else np.asarray(pfns).tolist(),
                                   max_gap_words)
    words, masks = word_masks(pfns)
    if calls_per_frame is not None and len(words) > 1:
        max_calls = max(1, int(len(words) * calls_per_frame))
        max_gap_words = gap_for_budget(words, max_gap_words, max_calls)
    firsts, counts, starts, ends = run_arrays(words, max_gap_words, MAX_RUN_WORDS)
    if not len(words):
        return firsts, counts, np.zeros(0, U64)
    ends_in_out = counts.cumsum()
    out = np.zeros(int(ends_in_out[-1]), dtype=U64)
    base = ends_in_out - counts - firsts  # word w of run r goes to w + base[r]
    out[words + base.repeat(ends - starts)] = masks
    return firsts * WORD_SIZE, counts, out


def _write_spans_listed(pfns: list[int], max_gap_words: int
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`build_write_spans` of a few frames, in plain Python (see
    :data:`.batching.PY_KEYS`): the same writes, three numpy calls."""
    words: list[int] = []
    masks: list[int] = []
    for p in sorted(pfns):
        if p < 0:
            continue
        w = p >> 6
        if words and words[-1] == w:
            masks[-1] |= 1 << (p & 63)
        else:
            words.append(w)
            masks.append(1 << (p & 63))
    offsets: list[int] = []
    counts: list[int] = []
    out: list[int] = []
    for first, count, i, j in batching.group_runs(words, max_gap_words, MAX_RUN_WORDS):
        base = len(out) - first
        out.extend([0] * count)
        for m in range(i, j):
            out[base + words[m]] = masks[m]
        offsets.append(first * WORD_SIZE)
        counts.append(count)
    return (np.array(offsets, np.int64), np.array(counts, np.int64), np.array(out, U64))


class IdleBitmap:
    """Marks frames idle and reads them back, with as few calls as the layout allows."""

    def __init__(self, fd: int, write_max_gap_words: int = DEFAULT_WRITE_MAX_GAP_WORDS,
                 write_calls_per_frame: float | None = DEFAULT_WRITE_CALLS_PER_FRAME,
                 io: Uring | None = None):
        self.fd = fd
        self.write_max_gap_words = write_max_gap_words
        self.write_calls_per_frame = write_calls_per_frame
        self.io = io

    @classmethod
    def open(cls, path: str = BITMAP_PATH) -> IdleBitmap:
        return cls(os.open(path, os.O_RDWR | os.O_CLOEXEC))

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def mark_idle(self, pfns) -> None:
        """Mark the folios of ``pfns`` idle (negative entries are skipped)."""
        if self.io is None:
            spans = build_write_spans(pfns, self.write_max_gap_words, self.write_calls_per_frame)
        else:  # calls are not the cost: carry only what is cheaper than another write
            spans = build_write_spans(pfns, URING_WRITE_MAX_GAP_WORDS)
        offsets, sizes, words = spans
        # ENXIO: beyond the last frame, nothing there to mark
        write_words(self.fd, offsets, sizes, words, "bitmap_write", frozenset({ENXIO}), self.io)

    def read_idle(self, pfns) -> np.ndarray:
        """Whether each frame is still idle (negative, non-LRU and tail frames: False)."""
        p = np.asarray(pfns, dtype=np.int64)
        idle = np.zeros(len(p), dtype=bool)
        valid = np.flatnonzero(p >= 0)
        if len(valid):
            pv = p[valid]
            # only the words holding these frames: each idle frame in a word read
            # costs the kernel a reverse-map walk
            got = read_scattered(self.fd, pv >> 6, 0, MAX_RUN_WORDS, "bitmap_read",
                                 PAST_THE_END, self.io)
            idle[valid] = (got.view(np.int64) >> (pv & 63)) & 1
        return idle


def _without(pfns, drop: np.ndarray):
    """``pfns`` less those in ``drop`` (a list for a few, as the writes' planner
    takes them in plain Python then)."""
    if not len(drop):
        return pfns
    if len(pfns) < batching.PY_KEYS:
        gone = set(drop.tolist())
        return [p for p in np.asarray(pfns).tolist() if p not in gone]
    p = np.asarray(pfns, dtype=np.int64)
    # not np.isin: for frames spread over gigabytes it builds a table of the
    # whole span, ~7x slower than a sorted lookup
    s = np.sort(drop)
    return p[s[np.minimum(s.searchsorted(p), len(s) - 1)] != p]


def folio_heads(starts: np.ndarray, rows: np.ndarray, pfns: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """For each frame ``pfns[i]`` of the window that starts at ``starts[i]`` and
    whose flags are ``rows[i]``: the head of its folio (-1: no head at or before
    it in the window) and whether that folio is exactly the PMD-sized window."""
    rows = np.asarray(rows, dtype=U64)
    k, width = rows.shape
    if not width:
        return np.full(k, -1, np.int64), np.zeros(k, bool)
    # the index of the last head at or before each frame of each window
    is_head = (rows & U64(KPF_COMPOUND_HEAD)) != 0
    last = np.maximum.accumulate(np.where(is_head, np.arange(width), -1), axis=1)
    h = last[np.arange(k), np.minimum(pfns - starts, width - 1)]
    heads = np.where(h >= 0, starts + h, -1)
    whole = ((h == 0) & (width == MAX_FOLIO_FRAMES)
             & ((rows[:, 1:] & U64(KPF_COMPOUND_TAIL)) != 0).all(axis=1))
    return heads, whole


def block_info_of(window_start: int, flags, pfn: int) -> tuple[int | None, bool]:
    """:func:`folio_heads` of one frame: (head or None, whole PMD-sized folio)."""
    heads, whole = folio_heads(np.array([window_start]), np.asarray(flags, U64)[None, :],
                               np.array([pfn]))
    return (None if heads[0] < 0 else int(heads[0])), bool(whole[0])


class KPageFlags:
    """Reads ``/proc/kpageflags`` (64 flag bits per frame)."""

    def __init__(self, fd: int, max_gap: int = 7, io: Uring | None = None):
        self.fd = fd
        self.max_gap = max_gap
        self.io = io

    @classmethod
    def open(cls, path: str = KPAGEFLAGS_PATH) -> KPageFlags:
        return cls(os.open(path, os.O_RDONLY | os.O_CLOEXEC))

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def read(self, pfns) -> np.ndarray:
        """Flags of each frame (uint64); frames the kernel returns nothing for read 0."""
        return read_scattered(self.fd, pfns, self.max_gap, MAX_FOLIO_FRAMES, "kpageflags",
                              io=self.io)

    def windows(self, starts) -> np.ndarray:
        """Flags of the PMD-sized frame windows at ``starts`` (one row each):
        one call per window, or per run of adjacent windows."""
        s = np.asarray(starts, dtype=np.int64)
        keys = (s[:, None] + np.arange(MAX_FOLIO_FRAMES)).ravel()
        runs = run_arrays(keys, 0, MAX_FOLIO_FRAMES * WINDOWS_PER_READ)
        got = read_entries(self.fd, keys, runs, "kpageflags", io=self.io)
        return got.reshape(len(s), MAX_FOLIO_FRAMES)


class FrameBits:
    """One bit per page frame, grown as higher frames come (1 TiB of memory
    takes 32 MiB of bits: the frames a monitor samples may be anywhere).

    Kept in int64 words, whose shifts need no casts: each numpy call costs
    tens of microseconds under an emulator, and these run on every sample.
    """

    def __init__(self) -> None:
        self.words = np.zeros(0, dtype=np.int64)

    def get(self, pfns: np.ndarray) -> np.ndarray:
        """The bit of each frame (>= 0); frames never set read False."""
        n = len(self.words)
        if not n or not len(pfns):
            return np.zeros(len(pfns), dtype=bool)
        w = pfns >> 6
        got = (self.words[np.minimum(w, n - 1)] >> (pfns & 63)) & 1
        return (got != 0) & (w < n)

    def set(self, pfns: np.ndarray, value: bool) -> None:
        """Set (or clear) the bit of each frame; negative frames are skipped."""
        p = pfns[pfns >= 0]
        if not len(p):
            return
        w = p >> 6
        top = int(w.max())
        if top >= len(self.words):
            if not value:  # bits never set are clear already
                p, w = p[w < len(self.words)], w[w < len(self.words)]
            else:
                grown = np.zeros(max(top + 1, 2 * len(self.words)), dtype=np.int64)
                grown[:len(self.words)] = self.words
                self.words = grown
        bits = 1 << (p & 63)  # bit 63 comes out negative: the same 64 bits
        if value:
            np.bitwise_or.at(self.words, w, bits)
        else:
            np.bitwise_and.at(self.words, w, ~bits)


class FrameChecker:
    """Idle-bitmap access checks of page frames, shared by vaddr and paddr.

    Owns the bitmap and kpageflags descriptors. ``resolve`` turns sampled
    frames into the frames whose idle bit tells their folio's state (the head
    of a huge page; none for a frame off the LRU, which the kernel counts as
    not accessed); ``mark`` and ``accessed`` are the two halves of a sample.
    """

    def __init__(self, bitmap: IdleBitmap, kpageflags: KPageFlags, io: Uring | None = None):
        self.bitmap = bitmap
        self.kpageflags = kpageflags
        #: the io_uring the reads and writes of a sample go through (None: plain calls)
        self.io = io
        bitmap.io = kpageflags.io = io
        if io is not None:
            io.issue_inline(IORING_OP_READ, bitmap.fd)
        #: frames of the zero page(s): what reads of untouched memory map; never on the LRU
        self.zero_pfns: set[int] = set()
        #: frames the checks of the current sample read idle (see :meth:`mark`)
        self._read_idle: list[np.ndarray] = []
        #: when the first of those checks began (None: unknown, never relied on)
        self._read_ns: int | None = None
        #: marks were made since those checks: the next check starts a new sample
        self._marked = False
        #: frames believed idle, one bit each: marked or read idle, and not read
        #: accessed since. Only a hint of what a read would say (see :meth:`mark`),
        #: kept while :attr:`probe_believed_idle` is on
        self.believed_idle = FrameBits()
        #: whether marks read believed-idle frames first (:meth:`mark`). Only
        #: through io_uring, where a read entry costs less than a write (writes
        #: to sysfs always go to an io-wq worker); one call per read would cost
        #: more than the coalesced writes it saves
        self.probe_believed_idle = io is not None
        #: the fewest believed-idle frames worth a read batch (:data:`PROBE_MIN_FRAMES`)
        self.probe_min_frames = PROBE_MIN_FRAMES

    @classmethod
    def open(cls) -> FrameChecker:
        bitmap = IdleBitmap.open()
        try:
            return cls(bitmap, KPageFlags.open(), Uring.open())
        except BaseException:
            bitmap.close()
            raise

    def close(self) -> None:
        self.bitmap.close()
        self.kpageflags.close()
        if self.io is not None:
            self.io.close()
            self.io = None

    def known_zero(self, pfns: np.ndarray) -> np.ndarray:
        """Which of ``pfns`` are frames of a zero page seen before."""
        if not self.zero_pfns:
            return np.zeros(len(pfns), dtype=bool)
        hit = np.zeros(len(pfns), dtype=bool)
        for z in self.zero_pfns:  # one or two frames
            hit |= pfns == z
        return hit

    def resolve(self, pfns, whole_window: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        """(frame to check or -1, frame is in a PMD-sized folio) for each frame (>= 0).

        Frames flagged in ``whole_window`` (those whose virtual page sits at
        the same offset in its 2 MiB block as the frame in its PMD-sized
        window, as in a PMD-mapped huge page) get their whole window read at
        once: one call tells both the frame's flags and its folio. The others
        get their own flags first, and a window read only if compound.
        """
        p = np.asarray(pfns, dtype=np.int64)
        n = len(p)
        check = np.full(n, -1, dtype=np.int64)
        pmd = np.zeros(n, dtype=bool)
        if not n:
            return check, pmd
        win = np.zeros(n, dtype=bool) if whole_window is None else np.asarray(whole_window, bool)
        flags = np.zeros(n, dtype=U64)
        single = (~win).nonzero()[0]
        if len(single):
            flags[single] = self.kpageflags.read(p[single])
        # compound frames among the singles need their window too
        compound = (flags & U64(KPF_COMPOUND)) != 0
        need = (win | (compound & (flags & U64(KPF_LRU) != 0))).nonzero()[0]
        if len(need):
            starts = p[need] & ~(MAX_FOLIO_FRAMES - 1)
            uniq, inverse = np.unique(starts, return_inverse=True)
            rows = self.kpageflags.windows(uniq)[inverse]
            flags[need] = rows[np.arange(len(need)), p[need] - starts]
            nf = flags[need]
            folio = ((nf & U64(KPF_LRU)) != 0) & ((nf & U64(KPF_COMPOUND)) != 0)
            if folio.any():
                heads, whole = folio_heads(starts[folio], rows[folio], p[need][folio])
                check[need[folio]] = heads
                pmd[need[folio]] = whole
        lru = (flags & U64(KPF_LRU)) != 0
        plain = lru & ((flags & U64(KPF_COMPOUND)) == 0)
        check[plain] = p[plain]
        zero = (~lru & ((flags & U64(KPF_ZERO_PAGE)) != 0)).nonzero()[0]
        self.zero_pfns.update(p[zero].tolist())
        return check, pmd

    def mark(self, check_pfns, now_ns: int | None = None,
             reuse_reads_ns: int | None = None) -> None:
        """Mark the folios of ``check_pfns`` (negative: none) idle for the next check.

        A folio the checks just before read idle, at most ``reuse_reads_ns``
        before ``now_ns``, is left as it is: reading an idle frame walks its
        folio's mappings, clearing their accessed bits, and keeps the idle
        flag only if none was set, which is what a mark does. So a sample that
        lands again in such a folio (a huge page sampled twice in a row, a
        small region) costs one bitmap operation instead of two. Its next
        sampling window starts at the read, not now: callers bound how much
        longer that makes it.

        With :attr:`probe_believed_idle`, the frames believed idle are read
        first and only those that read accessed are written
        (:meth:`_unless_read_idle`).
        """
        self._marked = True
        if (self._read_idle and now_ns is not None and reuse_reads_ns is not None
                and self._read_ns is not None and now_ns - self._read_ns <= reuse_reads_ns):
            done = (self._read_idle[0] if len(self._read_idle) == 1
                    else np.concatenate(self._read_idle))
            check_pfns = _without(check_pfns, done)
        if self.probe_believed_idle:
            check_pfns = self._unless_read_idle(check_pfns)
        self.bitmap.mark_idle(check_pfns)
        if self.probe_believed_idle:  # otherwise nothing reads the belief: none kept
            self.believed_idle.set(np.asarray(check_pfns, np.int64), True)

    def _unless_read_idle(self, check_pfns):
        """``check_pfns`` less the believed-idle frames that read idle now.

        Reading an idle frame walks its folio's mappings, clearing their
        accessed bits, and the frame reads idle only if none was set: the
        folio is then exactly as a mark leaves it, so the read was the mark.
        A frame that reads accessed (or was not idle) is marked as usual. What
        is believed only decides which frames are read first: a read costs
        less than a write of its own (one io-wq write, a folio walk each), and
        a cold folio stays idle from one sample to the next. A wrong belief
        costs one read more, never a wrong result. Frames whose writes would
        mostly share calls, and marks with few frames believed idle, are
        written without reading (:data:`PROBE_MIN_WRITES_PER_FRAME`,
        :data:`PROBE_MIN_FRAMES`).
        """
        # one frame alone is a write or a read: no call saved
        if len(check_pfns) < max(2, self.probe_min_frames):
            return check_pfns
        p = np.asarray(check_pfns, dtype=np.int64)
        p = p[p >= 0]
        believed = self.believed_idle.get(p)
        if np.count_nonzero(believed) < max(1, self.probe_min_frames):
            return p
        # writes of frames this close share a call (the runs mark_idle will
        # write): then writing is cheaper
        writes = len(run_arrays(np.sort(p >> 6), URING_WRITE_MAX_GAP_WORDS, MAX_RUN_WORDS)[0])
        if writes < PROBE_MIN_WRITES_PER_FRAME * len(p):
            return p
        probe = p[believed]
        idle = self.bitmap.read_idle(probe)
        return np.concatenate((p[~believed], probe[~idle]))

    def accessed(self, check_pfns, now_ns: int | None = None) -> np.ndarray:
        """Accessed since ``mark``: a checked frame that is no longer idle.
        ``now_ns``: the time now, before the reads (for :meth:`mark`)."""
        p = np.asarray(check_pfns, dtype=np.int64)
        if self._marked:  # the first check of a sample: the last sample's reads are old
            self._read_idle.clear()
            self._read_ns = now_ns
            self._marked = False
        idle = self.bitmap.read_idle(p)
        self._read_idle.append(p[idle])
        if self.probe_believed_idle:
            self.believed_idle.set(p[(p >= 0) & ~idle], False)
        return (p >= 0) & ~idle

    def forget_reads(self) -> None:
        """Frames may have been freed or moved since the checks (a DAMOS action
        did it): mark every frame of the next sample, whatever was read."""
        self._read_idle.clear()
