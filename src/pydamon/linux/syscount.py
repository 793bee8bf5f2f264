"""Counters of the system calls and file operations the access-check paths make.

The benchmark reports system calls per region-sample, so every ``pread``,
``pwrite``, ``process_madvise``, ``move_pages`` and ``io_uring_enter`` on a
monitoring or action path adds one to :data:`counts`. Reads and writes of
the pagemap, kpageflags and the idle bitmap also add one to :data:`ops`
each, whether they were a call of their own or one entry of an io_uring
batch: the kernel does that work either way. Plain dicts of ints:
incrementing costs next to nothing.
"""

from __future__ import annotations

from collections import Counter

#: system calls by kind: "pagemap", "bitmap_read", "bitmap_write", "kpageflags",
#: "madvise", "io_uring_enter", "move_pages" (migrating), "page_nodes" (move_pages
#: asking where pages are)
counts: Counter[str] = Counter()
#: file reads and writes by kind, however they were submitted
ops: Counter[str] = Counter()


def add(kind: str, n: int = 1) -> None:
    counts[kind] += n


def add_ops(kind: str, n: int, calls: bool) -> None:
    """``n`` file operations of ``kind``; also ``n`` system calls unless batched."""
    ops[kind] += n
    if calls:
        counts[kind] += n


def reset() -> None:
    counts.clear()
    ops.clear()


def total() -> int:
    return sum(counts.values())


def snapshot() -> dict[str, int]:
    return dict(counts)


def ops_snapshot() -> dict[str, int]:
    return dict(ops)
