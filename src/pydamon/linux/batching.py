"""Grouping the entries a sample needs into runs that one system call can cover.

``/proc/PID/pagemap`` (8 bytes per page), ``/proc/kpageflags`` (8 bytes per
frame) and the idle page bitmap (8 bytes per 64 frames) are arrays indexed
by a number; a sample needs a few scattered entries of them. A run is a
stretch of consecutive entries moved by one ``pread``/``pwrite``: a key
joins the run before it when it is at most ``max_gap`` unused entries past
the run's last key and the run stays within ``max_len`` entries (the
kernel's sysfs files move at most one page per call).

These run on every sample for every region. Under an emulated CPU each
Python bytecode costs tens of times what it does on hardware, so the
per-key work is numpy; Python loops only over runs, one system call each.
"""

from __future__ import annotations

import errno
import os

import numpy as np

from . import syscount

ENTRY_SIZE = 8

#: (first entry, number of entries, index of the run's first key, index after its last key)
Run = tuple[int, int, int, int]


def group_runs(keys, max_gap: int, max_len: int) -> list[Run]:
    """Runs over ``keys`` taken in the given order.

    Sorted keys give the fewest runs (greedy from the left is optimal for
    these two limits); an unsorted sequence still gets correct runs, only
    more of them. Repeated keys share their entry.
    """
    if max_len < 1:
        raise ValueError("max_len must be at least 1")
    k = np.asarray(keys, dtype=np.int64)
    n = len(k)
    if not n:
        return []
    d = np.diff(k)
    breaks = np.flatnonzero((d < 0) | (d > max_gap + 1)) + 1
    bounds = [0, *breaks.tolist(), n]
    runs: list[Run] = []
    for i, j in zip(bounds, bounds[1:], strict=False):
        first, last = int(k[i]), int(k[j - 1])
        if last - first < max_len:
            runs.append((first, last - first + 1, i, j))
            continue
        while i < j:  # longer than one call may move: cut greedily
            first = int(k[i])
            cut = i + int(np.searchsorted(k[i:j], first + max_len))
            runs.append((first, int(k[cut - 1]) - first + 1, i, cut))
            i = cut
    return runs


def sorted_order(keys: np.ndarray) -> np.ndarray | None:
    """The permutation that sorts ``keys``, or None when they already are."""
    if len(keys) > 1 and bool(np.any(keys[1:] < keys[:-1])):
        return np.argsort(keys, kind="stable")
    return None


def read_entries(fd: int, keys: np.ndarray, runs: list[Run], kind: str,
                 tolerate: frozenset[int] | None = None) -> np.ndarray:
    """The 8-byte entry at each of the sorted ``keys``, one ``preadv`` per run.

    Entries the kernel does not return (short reads, and failed reads whose
    errno is in ``tolerate``; every errno when ``tolerate`` is None) read 0.
    """
    sizes = [count for _, count, _, _ in runs]
    buf = np.zeros(sum(sizes), dtype=np.uint64)
    view = memoryview(buf).cast("B")
    base = np.empty(len(runs), dtype=np.int64)
    pos = 0
    for r, (first, count, _, _) in enumerate(runs):
        try:
            os.preadv(fd, [view[pos * ENTRY_SIZE:(pos + count) * ENTRY_SIZE]],
                      first * ENTRY_SIZE)
        except OSError as e:
            if tolerate is not None and e.errno not in tolerate:
                raise
        base[r] = pos - first
        pos += count
    syscount.add(kind, len(runs))
    if not runs:
        return buf
    run_of_key = np.repeat(np.arange(len(runs)), [j - i for _, _, i, j in runs])
    return buf[keys + base[run_of_key]]


#: reading past the last frame of the bitmap or of kpageflags
PAST_THE_END = frozenset({errno.ENXIO, errno.EINVAL})
