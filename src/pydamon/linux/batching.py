"""Grouping the entries a sample needs into runs that one system call can cover.

``/proc/PID/pagemap`` (8 bytes per page), ``/proc/kpageflags`` (8 bytes per
frame) and the idle page bitmap (8 bytes per 64 frames) are arrays indexed
by a number; a sample needs a few scattered entries of them. A run is a
stretch of consecutive entries moved by one ``pread``/``pwrite``: a key
joins the run before it when it is at most ``max_gap`` unused entries past
the run's last key and the run stays within ``max_len`` entries (the
kernel's sysfs files move at most one page per call).

These run on every sample, for 100-1000 keys, where plain Python over a
list is cheaper than numpy's per-call overhead, so they take lists.
"""

from __future__ import annotations

#: (first entry, number of entries, index of the run's first key, index after its last key)
Run = tuple[int, int, int, int]


def group_runs(keys: list[int], max_gap: int, max_len: int) -> list[Run]:
    """Runs over ``keys`` taken in the given order.

    Sorted keys give the fewest runs (greedy from the left is optimal for
    these two limits); an unsorted list still gets correct runs, only more
    of them. Repeated keys share their entry.
    """
    if max_len < 1:
        raise ValueError("max_len must be at least 1")
    runs: list[Run] = []
    n = len(keys)
    if not n:
        return runs
    step = max_gap + 1
    first = last = keys[0]
    i0 = 0
    for i in range(1, n):
        k = keys[i]
        if last <= k and k - last <= step and k - first < max_len:
            last = k
            continue
        runs.append((first, last - first + 1, i0, i))
        first = last = k
        i0 = i
    runs.append((first, last - first + 1, i0, n))
    return runs
