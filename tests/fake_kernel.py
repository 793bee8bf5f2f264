"""Kernel files laid out as the kernel lays them out, for host tests of the wrappers.

``FakeKernel`` is a process with some pages: its ``pagemap``, and the
machine's ``kpageflags`` and idle page ``bitmap``, written as ordinary files.
"""

from __future__ import annotations

import os
from array import array

from pydamon.linux import page_idle, pagemap


def write_entries(path, entries: dict[int, int], size_entries: int) -> None:
    buf = array("Q", bytes(8 * size_entries))
    for i, v in entries.items():
        buf[i] = v
    with open(path, "wb") as f:
        f.write(buf.tobytes())


def make_kpageflags(path, flags: dict[int, int], nr_frames: int) -> None:
    write_entries(path, flags, nr_frames)


class FakeKernel:
    """A process with some pages, its pagemap, a bitmap and kpageflags, as files."""

    LRU = page_idle.KPF_LRU

    def __init__(self, tmp_path, nr_frames: int = 1 << 15):
        self.dir = tmp_path
        self.nr_frames = nr_frames
        self.page_of: dict[int, int] = {}  # virtual page -> frame
        self.flags: dict[int, int] = {}

    def map_small(self, vpage: int, frame: int) -> None:
        self.page_of[vpage] = frame
        self.flags[frame] = self.LRU

    def map_huge(self, vpage: int, frame: int) -> None:
        assert vpage % 512 == 0 and frame % 512 == 0
        for k in range(512):
            self.page_of[vpage + k] = frame + k
            kind = page_idle.KPF_COMPOUND_HEAD if k == 0 else page_idle.KPF_COMPOUND_TAIL
            self.flags[frame + k] = self.LRU | page_idle.KPF_THP | kind

    def files(self):
        pm = self.dir / "pagemap"
        nr_pages = max(self.page_of) + 1024
        write_entries(pm, {v: pagemap.PM_PRESENT | f for v, f in self.page_of.items()}, nr_pages)
        kpf = self.dir / "kpageflags"
        make_kpageflags(kpf, self.flags, self.nr_frames)
        bm = self.dir / "bitmap"
        bm.write_bytes(bytes(self.nr_frames // 8))
        return pm, kpf, bm

    def frame_checker(self, io=None) -> page_idle.FrameChecker:
        """A FrameChecker over the bitmap and kpageflags :meth:`files` wrote."""
        return page_idle.FrameChecker(
            page_idle.IdleBitmap(os.open(self.dir / "bitmap", os.O_RDWR)),
            page_idle.KPageFlags(os.open(self.dir / "kpageflags", os.O_RDONLY)), io)

    def bitmap_words(self) -> array:
        return array("Q", (self.dir / "bitmap").read_bytes())

    def touch(self, frame: int) -> None:
        """What an access does to the bitmap: the frame's idle bit clears."""
        raw = self.bitmap_words()
        raw[frame >> 6] &= ~(1 << (frame & 63))
        (self.dir / "bitmap").write_bytes(raw.tobytes())


