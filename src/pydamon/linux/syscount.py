"""Counters of the system calls the access-check paths make.

The benchmark reports system calls per region-sample, so every ``pread``,
``pwrite`` and ``process_madvise`` on a monitoring path adds one here, and
so does every ``move_pages`` of the migrate actions. A plain dict of ints:
incrementing it costs next to nothing next to the call.
"""

from __future__ import annotations

from collections import Counter

#: calls by kind: "pagemap", "bitmap_read", "bitmap_write", "kpageflags", "madvise",
#: "move_pages" (migrating), "page_nodes" (move_pages asking where pages are)
counts: Counter[str] = Counter()


def add(kind: str, n: int = 1) -> None:
    counts[kind] += n


def reset() -> None:
    counts.clear()


def total() -> int:
    return sum(counts.values())


def snapshot() -> dict[str, int]:
    return dict(counts)
