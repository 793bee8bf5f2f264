"""Grouping the entries a sample needs into runs that one system call can cover.

``/proc/PID/pagemap`` (8 bytes per page), ``/proc/kpageflags`` (8 bytes per
frame) and the idle page bitmap (8 bytes per 64 frames) are arrays indexed
by a number; a sample needs a few scattered entries of them. A run is a
stretch of consecutive entries moved by one ``pread``/``pwrite``: a key
joins the run before it when it is at most ``max_gap`` unused entries past
the run's last key and the run stays within ``max_len`` entries (the
kernel's sysfs files move at most one page per call).

These run on every sample for every region: large batches are planned with
numpy, batches of fewer than :data:`PY_KEYS` keys in plain Python (the
same runs, fewer numpy calls, which are what costs under an emulator).
"""

from __future__ import annotations

import errno
import os

import numpy as np

from . import syscount
from .uring import IORING_OP_READ, IORING_OP_WRITE, Uring

ENTRY_SIZE = 8

#: (first entry, number of entries, index of the run's first key, index after its last key)
Run = tuple[int, int, int, int]


def run_arrays(keys, max_gap: int, max_len: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Runs over ``keys`` taken in the given order, as arrays (first entry,
    number of entries, index of the first key, index after the last key).

    Sorted keys give the fewest runs (greedy from the left is optimal for
    these two limits); an unsorted sequence still gets correct runs, only
    more of them. Repeated keys share their entry.
    """
    if max_len < 1:
        raise ValueError("max_len must be at least 1")
    k = np.asarray(keys, dtype=np.int64)
    n = len(k)
    if not n:
        return k, k, k, k
    d = k[1:] - k[:-1]
    after = ((d < 0) | (d > max_gap + 1)).nonzero()[0]
    starts = np.empty(len(after) + 1, np.int64)
    starts[0] = 0
    starts[1:] = after + 1
    ends = np.empty(len(starts), np.int64)
    ends[:-1] = starts[1:]
    ends[-1] = n
    firsts, lasts = k[starts], k[ends - 1]
    long = (lasts - firsts >= max_len).nonzero()[0]
    if len(long):  # longer than one call may move: cut greedily (rare)
        cut_starts: list[int] = []
        for r in long.tolist():
            i, j = int(starts[r]), int(ends[r])
            while i < j:
                cut_starts.append(i)
                i += int(k[i:j].searchsorted(k[i] + max_len))
        starts = np.union1d(starts, cut_starts).astype(np.int64)
        ends = np.append(starts[1:], n)
        firsts, lasts = k[starts], k[ends - 1]
    return firsts, lasts - firsts + 1, starts, ends


def group_runs(keys: list[int], max_gap: int, max_len: int) -> list[Run]:
    """The runs of :func:`run_arrays`, in plain Python, as (first, count, i, j)
    tuples: for a handful of keys, where each numpy call would cost more than
    the keys (:func:`read_scattered`)."""
    if max_len < 1:
        raise ValueError("max_len must be at least 1")
    runs: list[Run] = []
    if not len(keys):
        return runs
    step = max_gap + 1
    first = last = keys[0]
    i0 = 0
    for i in range(1, len(keys)):
        k = keys[i]
        if last <= k and k - last <= step and k - first < max_len:
            last = k
            continue
        runs.append((first, last - first + 1, i0, i))
        first = last = k
        i0 = i
    runs.append((first, last - first + 1, i0, len(keys)))
    return runs


def address_of(a: np.ndarray) -> int:
    """Where an array's data starts (cheaper than ``a.ctypes.data``, which builds
    a ctypes object: this runs for every batch of every sample)."""
    return a.__array_interface__["data"][0]


def read_entries(fd: int, keys: np.ndarray, runs, kind: str,
                 tolerate: frozenset[int] | None = None, io: Uring | None = None) -> np.ndarray:
    """The 8-byte entry at each of the sorted ``keys``, one read per run
    (:func:`run_arrays`), through ``io`` in one batch when given.

    Entries the kernel does not return (short reads, and failed reads whose
    errno is in ``tolerate``; every errno when ``tolerate`` is None) read 0.
    """
    firsts, counts, starts, ends = runs
    pos = counts.cumsum() - counts
    if io is not None and len(firsts) >= io.min_batch:
        buf, addr = io.scratch(int(pos[-1] + counts[-1]))
        io.run(IORING_OP_READ, fd, firsts * ENTRY_SIZE, addr + pos * ENTRY_SIZE,
               counts * ENTRY_SIZE, tolerate)
    else:
        buf = _pread_runs(fd, firsts.tolist(), counts.tolist(), tolerate)
    syscount.add_ops(kind, len(firsts), calls=io is None or len(firsts) < io.min_batch)
    if len(firsts) == len(keys):  # a run per key, one entry each: in the keys' order
        return buf.copy()  # the ring's scratch is reused, a read's bytes are read-only
    run_of_key = np.arange(len(firsts)).repeat(ends - starts)
    return buf[keys + (pos - firsts)[run_of_key]]


def read_scattered(fd: int, keys, max_gap: int, max_len: int, kind: str,
                   tolerate: frozenset[int] | None = None, io: Uring | None = None
                   ) -> np.ndarray:
    """:func:`read_entries` for keys in any order: sorted for the fewest runs,
    the entries returned in the keys' order."""
    if len(keys) < PY_KEYS:
        return _read_listed(fd, keys if isinstance(keys, list) else np.asarray(keys).tolist(),
                            max_gap, max_len, kind, tolerate, io)
    k = np.asarray(keys, dtype=np.int64)
    # sorting is one numpy call, cheaper than asking whether the keys already are
    order = np.argsort(k, kind="stable")
    sk = k[order]
    got = read_entries(fd, sk, run_arrays(sk, max_gap, max_len), kind, tolerate, io)
    out = np.empty(len(got), got.dtype)
    out[order] = got
    return out


#: fewer keys than this are sorted and grouped in plain Python (:func:`group_runs`,
#: the same runs as :func:`run_arrays`), then read one call per run or as one
#: io_uring batch: under QEMU TCG each numpy call costs ~30-100 us, and planning
#: a batch takes a fixed ~3 ms of them, while Python costs ~65 us a key.
#: Measured in the guest (idle bitmap reads through io_uring, planning only):
#: 30 keys 2.5 ms in Python, 3.1 with numpy; 100 keys 6.3-6.9 ms against 2.9
PY_KEYS = 32


def _read_listed(fd: int, keys: list[int], max_gap: int, max_len: int, kind: str,
                 tolerate: frozenset[int] | None, io: Uring | None) -> np.ndarray:
    """:func:`read_scattered` of fewer than :data:`PY_KEYS` keys, planned in Python."""
    order = sorted(range(len(keys)), key=keys.__getitem__)
    sk = [keys[i] for i in order]
    runs = group_runs(sk, max_gap, max_len)
    # where each run's entries land in one buffer, and each key's entry there
    at: list[int] = []
    total = 0
    for _, count, _, _ in runs:
        at.append(total)
        total += count
    where = [0] * len(keys)
    for (first, _, i, j), a in zip(runs, at, strict=True):
        for m in range(i, j):
            where[order[m]] = a + sk[m] - first
    if io is not None and len(runs) >= io.min_batch:
        buf, addr = io.scratch(total)
        io.run(IORING_OP_READ, fd, [r[0] * ENTRY_SIZE for r in runs],
               [addr + a * ENTRY_SIZE for a in at], [r[1] * ENTRY_SIZE for r in runs],
               tolerate)
        syscount.add_ops(kind, len(runs), calls=False)
    else:
        buf = _pread_runs(fd, [r[0] for r in runs], [r[1] for r in runs], tolerate)
        syscount.add_ops(kind, len(runs), calls=True)
    return buf[where]  # a copy: the ring's scratch is reused


def _pread_runs(fd: int, firsts: list[int], counts: list[int],
                tolerate: frozenset[int] | None) -> np.ndarray:
    """The runs' entries one after the other, one pread per run; what a read
    does not return (short, or failed with an errno in ``tolerate``; any, if
    None) reads 0."""
    chunks = []
    for first, count in zip(firsts, counts, strict=True):
        size = count * ENTRY_SIZE
        try:
            data = os.pread(fd, size, first * ENTRY_SIZE)
        except OSError as e:
            if tolerate is not None and e.errno not in tolerate:
                raise
            data = b""
        chunks.append(data if len(data) == size else data.ljust(size, b"\0"))
    return np.frombuffer(b"".join(chunks), dtype=np.uint64)


def write_words(fd: int, offsets: np.ndarray, sizes: np.ndarray, words: np.ndarray,
                kind: str, tolerate: frozenset[int], io: Uring | None = None) -> None:
    """Write consecutive slices of ``words`` (``sizes`` words each) at the byte
    ``offsets``: one write each, or one io_uring batch. Failures whose errno is
    in ``tolerate`` are skipped."""
    pos = sizes.cumsum() - sizes
    if io is not None and len(sizes) >= io.min_batch:
        io.run(IORING_OP_WRITE, fd, offsets, address_of(words) + pos * ENTRY_SIZE,
               sizes * ENTRY_SIZE, tolerate)
    else:
        view = memoryview(words).cast("B")
        lo = (pos * ENTRY_SIZE).tolist()
        hi = ((pos + sizes) * ENTRY_SIZE).tolist()
        for off, a, b in zip(offsets.tolist(), lo, hi, strict=True):
            try:
                os.pwrite(fd, view[a:b], off)
            except OSError as e:
                if e.errno not in tolerate:
                    raise
    syscount.add_ops(kind, len(sizes), calls=io is None or len(sizes) < io.min_batch)


#: reading past the last frame of the bitmap or of kpageflags
PAST_THE_END = frozenset({errno.ENXIO, errno.EINVAL})
