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

To keep system calls per region-sample low, what kind of memory backs each
2 MiB block of a process (small pages or one PMD-mapped huge page) is
remembered for ``block_kind_ttl_s`` and at least ``block_kind_ttl_samples``
samples (checked at update intervals), so kpageflags is read only when a
block is first sampled. A huge page collapsed later in a block remembered
as small pages reads as accessed until then.

Targets are held through a pidfd and a descriptor of their ``/proc/PID``
directory opened while the pidfd shows the process alive, so a reused PID
can never redirect monitoring to another process. DAMOS actions go through
``process_madvise`` on that pidfd.
"""

from __future__ import annotations

import errno
import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ..core.damos import Action, Scheme
from ..errors import DamonError, einval
from ..linux import pidfd, procfs
from ..linux.pagemap import PagemapReader
from .idle_page import IdlePageOps

if TYPE_CHECKING:
    from ..core.context import Context
    from ..core.target import Target

log = logging.getLogger("pydamon.ops.vaddr")

BLOCK_SHIFT = 21  # a PMD-sized huge page covers 2 MiB
_SMALL = 0  # the block was backed by small pages when last looked at
_HUGE = 1  # the block is one PMD-mapped huge page
_UNKNOWN = -1

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
    #: 2 MiB block number -> _SMALL or _HUGE, forgotten every update interval
    blocks: dict[int, int] = field(default_factory=dict)
    #: the frame each sampled address is checked through (-1: counted not accessed)
    check_pfns: list[int] = field(default_factory=list)
    exited: bool = False
    madvise_errors: int = 0

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

    #: how long what backs a 2 MiB block is remembered: forgotten at the first
    #: update interval after this long and this many samples (so that finding
    #: out again costs a small share of the calls, however slow the machine)
    block_kind_ttl_s: float = 10.0
    block_kind_ttl_samples: int = 200

    unsupported_why: ClassVar[dict[Action, str]] = UNSUPPORTED_WHY

    def __init__(self) -> None:
        super().__init__()
        self._blocks_learned_ns: int | None = None
        self._samples_since_forget = 0

    # -- lifecycle ---------------------------------------------------------------
    def update(self, ctx: Context) -> None:
        # what backs each block may have changed (khugepaged, splits, reclaim)
        now = ctx.clock.now_ns()
        if self._blocks_learned_ns is None:
            self._blocks_learned_ns = now
        if (now - self._blocks_learned_ns < self.block_kind_ttl_s * 1e9
                or self._samples_since_forget < self.block_kind_ttl_samples):
            return
        self._blocks_learned_ns = now
        self._samples_since_forget = 0
        for t in ctx.targets:
            if t.handle is not None:
                t.handle.blocks.clear()

    def attach(self, target: Target) -> None:
        self._ready()
        if target.handle is not None:
            return
        target.handle = open_process(target.pid)

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
            h.check_pfns = [-1] * len(addrs)
            return
        h.check_pfns = self._check_frames(h, addrs.tolist())
        self.frames.mark(h.check_pfns)
        self._samples_since_forget += 1

    def check_accesses(self, target: Target, addrs: np.ndarray) -> np.ndarray:
        h: ProcessHandle | None = target.handle
        if h is None or self.frames is None or len(h.check_pfns) != len(addrs):
            return np.zeros(len(addrs), bool)
        return np.array(self.frames.accessed(h.check_pfns), dtype=bool)

    def _check_frames(self, h: ProcessHandle, addrs: list[int]) -> list[int]:
        """The frame to check for each sampled address (-1: counted not accessed)."""
        frames = self.frames
        assert frames is not None
        known = h.blocks
        get = known.get
        kinds = [get(a >> BLOCK_SHIFT, _UNKNOWN) for a in addrs]
        # a known huge page is checked through its first page: its head
        query = [(a >> BLOCK_SHIFT) << BLOCK_SHIFT if k == _HUGE else a
                 for a, k in zip(addrs, kinds, strict=True)]
        check = h.pagemap.frames(query)
        zero = frames.zero_pfns
        new: list[int] = []
        for i, (k, p) in enumerate(zip(kinds, check, strict=True)):
            if p < 0:
                continue
            if k == _HUGE:
                if p & 511:
                    # the first page is no longer a 2 MiB aligned head: the huge
                    # page is gone; look at the block again from this sample
                    known.pop(addrs[i] >> BLOCK_SHIFT, None)
                    kinds[i] = _UNKNOWN
                    check[i] = h.pagemap.frames([addrs[i]])[0]
                    if check[i] >= 0:
                        new.append(i)
            elif p in zero:
                check[i] = -1
            elif k == _UNKNOWN:
                new.append(i)
        if new:
            sampled = [check[i] for i in new]
            resolved, pmd = frames.resolve(sampled)
            for i, p, r, whole in zip(new, sampled, resolved, pmd, strict=True):
                check[i] = r
                if r < 0:
                    continue  # off the LRU: nothing learned about the block
                a = addrs[i]
                if whole and p - r == (a >> 12) & 511:
                    known[a >> BLOCK_SHIFT] = _HUGE  # PMD-mapped: frames follow addresses
                elif r == p and not whole:
                    known[a >> BLOCK_SHIFT] = _SMALL
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

    def update(self, ctx: Context) -> None:
        super().update(ctx)  # still forget what backs each block; the regions stay
