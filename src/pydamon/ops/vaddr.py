"""``vaddr`` and ``fvaddr``: monitoring processes' virtual address spaces.

Access checks use the kernel's idle page tracking: each sampled address is
translated through ``/proc/PID/pagemap``, its frame marked idle in
``/sys/kernel/mm/page_idle/bitmap``, and read back after the sampling
interval. What the kernel's own vaddr does, and how this follows it:

* a page not present (never touched, swapped out, unmapped) is not accessed;
* a transparent huge page is one unit: the kernel checks its PMD. The idle
  bitmap ignores tail frames, so a sample that lands in a huge page is
  checked through the head frame (found with ``/proc/kpageflags``);
* the kernel reuses a check for samples in the same folio; here samples of
  one sample interval that share a folio share one frame check;
* a frame off the LRU (the zero page, driver memory) is not accessed.

To keep system calls per region-sample low, what backs each 2 MiB block of
a process (small pages or one PMD-mapped huge page) is remembered
(:mod:`.block_kinds`), so ``/proc/kpageflags`` is read when a block is first
sampled, when its layout visibly changes, and, for huge blocks, again after
``block_kind_ttl_s`` (a few blocks per sample).

Targets are held through a pidfd and a descriptor of their ``/proc/PID``
directory opened while the pidfd shows the process alive, so a reused PID
can never redirect monitoring to another process. DAMOS actions go through
``process_madvise`` on that pidfd.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ..core.damos import Action, Scheme
from ..errors import DamonError, einval
from ..linux import pidfd, procfs
from ..linux.pagemap import PAGE_SHIFT, PagemapReader, frames_of
from .block_kinds import BLOCK_PAGES, BLOCK_SHIFT, HUGE, SMALL, UNKNOWN, BlockKinds
from .idle_page import IdlePageOps

if TYPE_CHECKING:
    from ..core.context import Context
    from ..core.target import Target

log = logging.getLogger("pydamon.ops.vaddr")

_SMALL, _HUGE, _UNKNOWN = SMALL, HUGE, UNKNOWN

#: how each action is applied to another process's memory
ACTION_ADVICE: dict[Action, int] = {
    Action.WILLNEED: pidfd.MADV_WILLNEED,
    Action.COLD: pidfd.MADV_COLD,
    Action.PAGEOUT: pidfd.MADV_PAGEOUT,
    # MADV_HUGEPAGE is not accepted by process_madvise; MADV_COLLAPSE is the
    # closest remote mechanism (it makes huge pages now instead of flagging
    # the area for the page-fault path and khugepaged)
    Action.HUGEPAGE: pidfd.MADV_COLLAPSE,
}

#: why an action cannot be applied to another process from user space
UNSUPPORTED_WHY: dict[Action, str] = {
    Action.NOHUGEPAGE: "process_madvise() does not accept MADV_NOHUGEPAGE and no other "
                       "call sets VM_NOHUGEPAGE on another process",
    Action.LRU_PRIO: "no system call moves another process's pages to the active LRU list",
    Action.LRU_DEPRIO: "no system call moves another process's pages to the inactive LRU "
                       "list (use 'cold', MADV_COLD, for the nearest effect)",
    Action.MIGRATE_HOT: "migrating between NUMA nodes is not implemented",
    Action.MIGRATE_COLD: "migrating between NUMA nodes is not implemented",
}


@dataclass
class ProcessHandle:
    """What a vaddr target holds of its process."""

    pid: int
    pidfd: int
    proc_dir: int
    pagemap_fd: int
    pagemap: PagemapReader
    #: what backs each 2 MiB block, as last learned
    kinds: BlockKinds = field(default_factory=BlockKinds)
    #: the frame each sampled address is checked through (-1: counted not accessed)
    check_pfns: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    exited: bool = False
    madvise_errors: int = 0

    @property
    def blocks(self) -> dict[int, int]:
        """{2 MiB block number: SMALL or HUGE} of the blocks learned."""
        return self.kinds.as_dict()

    def close(self) -> None:
        for fd in (self.pagemap_fd, self.proc_dir, self.pidfd):
            try:
                os.close(fd)
            except OSError:
                pass
        self.pagemap_fd = self.proc_dir = self.pidfd = -1


def open_process(pid: int | None) -> ProcessHandle:
    """Hold ``pid`` through a pidfd; EINVAL DamonError if it is not a live process."""
    if pid is None or pid <= 0:
        raise einval(f"target pid {pid} is not a process id")
    try:
        pfd = pidfd.pidfd_open(pid)
    except OSError as e:
        raise einval(f"target pid {pid}: {os.strerror(e.errno or errno.ESRCH)}") from None
    fds = [pfd]
    try:
        try:
            proc_dir = os.open(f"/proc/{pid}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            raise einval(f"target pid {pid}: no such process") from None
        fds.append(proc_dir)
        # The directory was opened while the pidfd's process was alive, so
        # it is that process's, whatever happens to the PID later.
        if pidfd.pidfd_exited(pfd):
            raise einval(f"target pid {pid} has exited")
        try:
            pm = os.open("pagemap", os.O_RDONLY | os.O_CLOEXEC, dir_fd=proc_dir)
        except OSError as e:
            raise DamonError(e.errno or errno.EPERM,
                             f"target pid {pid}: cannot open pagemap: {e.strerror}") from None
        return ProcessHandle(pid, pfd, proc_dir, pm, PagemapReader(pm))
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


class VaddrOps(IdlePageOps):
    """Virtual address spaces of processes, regions following their mappings."""

    name: ClassVar[str] = "vaddr"
    auto_regions: ClassVar[bool] = True
    targets_have_pid: ClassVar[bool] = True
    supported_actions: ClassVar[frozenset[Action]] = frozenset(
        {Action.STAT, *ACTION_ADVICE})

    #: how long a huge block's head is trusted before kpageflags is read
    #: again (a huge page split in place shows nothing in the pagemap)
    block_kind_ttl_s: float = 30.0
    #: at most this share of a sample's regions re-learn stale blocks
    relearn_share: float = 0.02

    unsupported_why: ClassVar[dict[Action, str]] = UNSUPPORTED_WHY

    def __init__(self) -> None:
        super().__init__()
        #: the kdamond's clock, for the age of what is known of each block
        self._clock_ns: Callable[[], int] | None = None

    def init(self, ctx: Context) -> None:
        super().init(ctx)
        self._clock_ns = ctx.clock.now_ns

    def attach(self, target: Target) -> None:
        frames = self._ready()
        if target.handle is not None:
            return
        target.handle = open_process(target.pid)
        target.handle.pagemap.io = frames.io  # its reads join the sample's batches

    def detach(self, target: Target) -> None:
        h = target.handle
        if h is not None:
            h.close()
            target.handle = None

    def target_valid(self, target: Target) -> bool:
        h: ProcessHandle | None = target.handle
        if h is None or h.exited:
            return False
        if pidfd.pidfd_exited(h.pidfd):
            h.exited = True
            log.info("%s: target pid %d exited; counted as not accessed", self.name, h.pid)
            return False
        return True

    # -- regions -------------------------------------------------------------------
    def target_mappings(self, target: Target) -> list[tuple[int, int]]:
        h: ProcessHandle | None = target.handle
        if h is None or h.exited:
            return []
        try:
            text = procfs.read_text_at(h.proc_dir, "maps")
        except OSError:
            return []
        return procfs.maps_ranges(text)

    # -- access checks -------------------------------------------------------------
    def prepare_access_checks(self, target: Target, addrs: np.ndarray) -> None:
        h: ProcessHandle | None = target.handle
        if h is None:
            return
        if h.exited or self.frames is None:
            h.check_pfns = np.full(len(addrs), -1, np.int64)
            return
        h.check_pfns = self._check_frames(h, np.asarray(addrs, np.int64), self._now_ns())
        self.frames.mark(h.check_pfns)

    def check_accesses(self, target: Target, addrs: np.ndarray) -> np.ndarray:
        h: ProcessHandle | None = target.handle
        if h is None or self.frames is None or len(h.check_pfns) != len(addrs):
            return np.zeros(len(addrs), bool)
        return self.frames.accessed(h.check_pfns)

    def _now_ns(self) -> int:
        return self._clock_ns() if self._clock_ns is not None else 0

    def _check_frames(self, h: ProcessHandle, addrs: np.ndarray, now_ns: int) -> np.ndarray:
        """The frame to check for each sampled address (-1: counted not accessed)."""
        frames = self.frames
        assert frames is not None
        cache = h.kinds
        pages = addrs >> PAGE_SHIFT
        blocks = addrs >> BLOCK_SHIFT
        offset = pages & (BLOCK_PAGES - 1)
        kind, frame, learned_ns = cache.entries(blocks)
        huge = kind == HUGE
        stale = np.flatnonzero(huge & (now_ns - learned_ns > self.block_kind_ttl_s * 1e9))
        if len(stale):
            stale = stale[:max(1, int(len(addrs) * self.relearn_share))]
            huge[stale] = False
            kind[stale] = UNKNOWN
        # a huge block is translated through its first page: its head, while it lasts
        pfn = frames_of(h.pagemap.read_entries(np.where(huge, blocks << (BLOCK_SHIFT - PAGE_SHIFT),
                                                        pages)))
        check = np.full(len(addrs), -1, np.int64)
        head_ok = huge & (pfn == frame)
        check[head_ok] = frame[head_ok]
        moved = np.flatnonzero(huge & ~head_ok)
        if len(moved):  # the huge page is gone or another: look at this sample afresh
            cache.forget(blocks[moved])
            kind[moved] = UNKNOWN
            pfn[moved] = frames_of(h.pagemap.read_entries(pages[moved]))
        present = ~head_ok & (pfn >= 0)
        present &= ~frames.known_zero(pfn)  # untouched memory: the zero page, never accessed
        window_start = pfn - offset
        aligned = present & ((window_start & (BLOCK_PAGES - 1)) == 0)
        small = present & (kind == SMALL) & ~(aligned & (window_start != frame))
        check[small] = pfn[small]
        learn = np.flatnonzero(present & ~small)
        if len(learn):
            resolved, whole = frames.resolve(pfn[learn], whole_window=aligned[learn])
            check[learn] = resolved
            lpfn = pfn[learn]
            is_huge = whole & (resolved == window_start[learn])
            is_small = ~whole & (resolved == lpfn)
            sel = is_huge | is_small
            cache.learn(blocks[learn][sel], np.where(is_huge, HUGE, SMALL)[sel],
                        np.where(is_huge, resolved,
                                 np.where(aligned[learn], window_start[learn], -1))[sel],
                        now_ns)
        return check

    # -- DAMOS -----------------------------------------------------------------------
    def apply_scheme(self, ctx: Context, target: Target, start: int, end: int,
                     scheme: Scheme) -> tuple[int, int]:
        advice = ACTION_ADVICE.get(scheme.action)
        h: ProcessHandle | None = target.handle
        if advice is None or h is None or h.exited or end <= start:
            return 0, 0
        try:
            applied = pidfd.process_madvise(h.pidfd, [(start, end - start)], advice)
        except OSError as e:
            # As the kernel's vaddr: nothing counts as applied unless the
            # whole call succeeded (ENOMEM for holes, EAGAIN for a collapse
            # that could not be done, ESRCH once the process is gone).
            h.madvise_errors += 1
            if h.madvise_errors <= 3 or h.madvise_errors % 1000 == 0:
                log.debug("%s: %s on pid %d [%#x, %#x): %s (%d errors so far)", self.name,
                          scheme.action.value, h.pid, start, end, e.strerror, h.madvise_errors)
            return 0, 0
        return applied, 0

    # -- system metrics ------------------------------------------------------------------
    def free_mem_rate(self) -> int | None:
        return procfs.free_mem_rate()


class FvaddrOps(VaddrOps):
    """vaddr on the user's fixed regions: no three-regions init, no update."""

    name: ClassVar[str] = "fvaddr"
    auto_regions: ClassVar[bool] = False
