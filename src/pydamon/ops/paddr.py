"""``paddr``: monitoring the physical address space.

Samples are page frames, checked directly in the idle page bitmap (a frame
of a huge page through its head, as the kernel checks the whole folio; a
frame off the LRU counts as not accessed, as in the kernel). The default
region is the largest "System RAM" range of ``/proc/iomem``.

User space has no call that reclaims, (de)prioritizes or migrates given
physical pages, so only ``stat`` is supported; other actions are rejected
when a kdamond starts or a commit comes.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ..core.damos import Action, Scheme
from ..core.regions import AddrRange, align_down, align_up
from ..linux import procfs
from ..linux.pagemap import PAGE_SHIFT
from .idle_page import IdlePageOps

if TYPE_CHECKING:
    from ..core.context import Context
    from ..core.target import Target

log = logging.getLogger("pydamon.ops.paddr")

UNSUPPORTED_WHY: dict[Action, str] = {
    Action.PAGEOUT: "user space cannot reclaim given physical pages (use vaddr pageout "
                    "on the processes, through process_madvise)",
    Action.LRU_PRIO: "user space cannot move given physical pages between LRU lists",
    Action.LRU_DEPRIO: "user space cannot move given physical pages between LRU lists",
    Action.MIGRATE_HOT: "user space cannot migrate given physical pages",
    Action.MIGRATE_COLD: "user space cannot migrate given physical pages",
}


class PaddrOps(IdlePageOps):
    name: ClassVar[str] = "paddr"
    auto_regions: ClassVar[bool] = False
    targets_have_pid: ClassVar[bool] = False
    supported_actions: ClassVar[frozenset[Action]] = frozenset({Action.STAT})
    unsupported_why: ClassVar[dict[Action, str]] = UNSUPPORTED_WHY
    unsupported_default_why: ClassVar[str] = "only 'stat' is supported by paddr"

    def __init__(self, iomem_path: str = "/proc/iomem") -> None:
        super().__init__()
        self.iomem_path = iomem_path

    def rejection(self, scheme: Scheme) -> str | None:
        why = super().rejection(scheme)
        if why is None and scheme.ops_filters:
            why = ("operations-set filters (anon, active, memcg, young, hugepage_size, "
                   "unmapped) are not implemented")
        return why

    def attach(self, target: Target) -> None:
        self._ready()
        if target.handle is None:
            target.handle = []  # frames checked for the current sample

    def detach(self, target: Target) -> None:
        target.handle = None

    def target_valid(self, target: Target) -> bool:
        return True

    def default_ranges(self, target: Target) -> list[AddrRange]:
        try:
            with open(self.iomem_path) as f:
                ram = procfs.biggest_system_ram(f.read())
        except OSError:
            return []
        if ram is None:
            return []
        start, end = align_up(ram[0]), align_down(ram[1])
        return [AddrRange(start, end)] if end > start else []

    def prepare_access_checks(self, target: Target, addrs: np.ndarray) -> None:
        frames = self.frames
        if frames is None:
            return
        check, _ = frames.resolve(np.asarray(addrs, np.int64) >> PAGE_SHIFT)
        target.handle = check
        self._mark(check)

    def check_accesses(self, target: Target, addrs: np.ndarray) -> np.ndarray:
        check = target.handle
        if self.frames is None or check is None or len(check) != len(addrs):
            return np.zeros(len(addrs), bool)
        return self._accessed(check)

    def apply_scheme(self, ctx: Context, target: Target, start: int, end: int,
                     scheme: Scheme) -> tuple[int, int]:
        return 0, end - start  # only stat reaches here, and stat applies nothing

    def free_mem_rate(self) -> int | None:
        return procfs.free_mem_rate()
