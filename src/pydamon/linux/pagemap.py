"""``/proc/PID/pagemap``: virtual page to page frame number.

Each virtual page has a 64-bit entry: bits 0-54 the frame number (zero
without CAP_SYS_ADMIN), bit 62 swapped, bit 63 present. Reading is cheap
for the kernel (a page table walk), so nearby sample pages are read with
one ``pread``.
"""

from __future__ import annotations

import os

import numpy as np

from . import syscount
from .batching import group_runs

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
ENTRY_SIZE = 8
PFN_MASK = (1 << 55) - 1
PM_EXCLUSIVE = 1 << 56
PM_FILE = 1 << 61
PM_SWAP = 1 << 62
PM_PRESENT = 1 << 63

#: unused entries between two wanted ones that still join one read. A read
#: costs a fixed ~150-800 us under QEMU TCG (syscall, mmap lock, buffer) and
#: ~0.5 us per entry walked, so entries up to 1 MiB of address space apart
#: are cheaper read together (and the kernel walks each entry anyway)
DEFAULT_MAX_GAP_PAGES = 256
#: entries per read (512 KiB of pagemap, 256 MiB of address space)
MAX_RUN_PAGES = 1 << 16


def frame_of(entry: int) -> int:
    """The frame number of a present page, -1 for a page not present."""
    return entry & PFN_MASK if entry >> 63 else -1


def entries_from_runs(pages: list[int], runs, chunks: list[bytes]) -> list[int]:
    """Entries of ``pages`` from what each run's read returned (short reads: not present)."""
    out: list[int] = []
    append = out.append
    for (first, _, i, j), data in zip(runs, chunks, strict=True):
        if len(data) == ENTRY_SIZE and j - i == 1:
            append(int.from_bytes(data, "little"))
            continue
        data = data[:len(data) // ENTRY_SIZE * ENTRY_SIZE]
        words = memoryview(data).cast("Q")
        have = len(words)
        for k in range(i, j):
            off = pages[k] - first
            append(words[off] if off < have else 0)
    return out


class PagemapReader:
    """Reads the entries of a list of virtual pages of one process with few calls."""

    def __init__(self, fd: int, max_gap_pages: int = DEFAULT_MAX_GAP_PAGES):
        self.fd = fd
        self.max_gap_pages = max_gap_pages

    def read_entries(self, pages: list[int]) -> list[int]:
        """Raw entries of ``pages`` (in order; sorted input reads fewest times).

        Pages the kernel returns nothing for (beyond the address space, the
        process gone) read as 0: not present.
        """
        runs = group_runs(pages, self.max_gap_pages, MAX_RUN_PAGES)
        fd = self.fd
        chunks = []
        for first, count, _, _ in runs:
            try:
                chunks.append(os.pread(fd, count * ENTRY_SIZE, first * ENTRY_SIZE))
            except OSError:
                chunks.append(b"")  # the process exited: not present
        syscount.add("pagemap", len(runs))
        return entries_from_runs(pages, runs, chunks)

    def frames(self, addrs: list[int]) -> list[int]:
        """Frame number of the page at each address, -1 where none is present."""
        return [frame_of(e) for e in self.read_entries([a >> PAGE_SHIFT for a in addrs])]

    def read_range(self, first_page: int, count: int) -> np.ndarray:
        """Raw entries of ``count`` consecutive pages from ``first_page`` (uint64).

        One read per :data:`MAX_RUN_PAGES` entries; what the kernel returns
        nothing for (beyond the address space, the process gone) reads 0.
        """
        out = np.zeros(max(count, 0), dtype=np.uint64)
        done = 0
        while done < count:
            n = min(count - done, MAX_RUN_PAGES)
            try:
                data = os.pread(self.fd, n * ENTRY_SIZE, (first_page + done) * ENTRY_SIZE)
            except OSError:
                data = b""
            syscount.add("pagemap")
            got = np.frombuffer(data, dtype="<u8", count=len(data) // ENTRY_SIZE)
            out[done:done + len(got)] = got
            if len(got) < n:
                break  # short read: nothing more there
            done += n
        return out
