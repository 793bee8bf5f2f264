"""``/proc/PID/pagemap``: virtual page to page frame number.

Each virtual page has a 64-bit entry: bits 0-54 the frame number (zero
without CAP_SYS_ADMIN), bit 62 swapped, bit 63 present. Reading is cheap
for the kernel (a page table walk), so nearby sample pages are read with
one ``pread``.
"""

from __future__ import annotations

import numpy as np

from .batching import ENTRY_SIZE as ENTRY_SIZE
from .batching import read_scattered
from .uring import Uring

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
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


def frames_of(entries: np.ndarray) -> np.ndarray:
    """Frame numbers of present pages, -1 for pages not present (int64)."""
    pfns = (entries & np.uint64(PFN_MASK)).astype(np.int64)
    pfns[(entries >> np.uint64(63)) == 0] = -1
    return pfns


class PagemapReader:
    """Reads the entries of a set of virtual pages of one process with few calls."""

    def __init__(self, fd: int, max_gap_pages: int = DEFAULT_MAX_GAP_PAGES,
                 io: Uring | None = None):
        self.fd = fd
        self.max_gap_pages = max_gap_pages
        #: batches the reads of one call into one io_uring_enter when set
        self.io = io

    def read_entries(self, pages) -> np.ndarray:
        """Raw entries (uint64) of ``pages``, in their order.

        Pages the kernel returns nothing for (beyond the address space, the
        process gone) read as 0: not present.
        """
        # every failure (the process gone) reads as not present
        return read_scattered(self.fd, pages, self.max_gap_pages, MAX_RUN_PAGES, "pagemap",
                              io=self.io)

    def frames(self, addrs) -> np.ndarray:
        """Frame number of the page at each address, -1 where none is present."""
        return frames_of(self.read_entries(np.asarray(addrs, dtype=np.int64) >> PAGE_SHIFT))

    def read_range(self, first_page: int, count: int) -> np.ndarray:
        """Raw entries of ``count`` consecutive pages from ``first_page`` (uint64).

        One read per :data:`MAX_RUN_PAGES` entries; what the kernel returns
        nothing for (beyond the address space, the process gone) reads 0.
        """
        return self.read_entries(np.arange(first_page, first_page + max(count, 0),
                                           dtype=np.int64))
