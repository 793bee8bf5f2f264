"""``SimOps``: the operations set that monitors and acts on a :class:`SimWorld`.

It can pose as any kernel operations set: ``sim``/``vaddr`` (processes, the
three regions built from their mappings), ``fvaddr`` (processes, user regions
only) and ``paddr`` (the world's physical memory, one target). Every DAMOS
action is supported and has a visible effect on the world.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ...core.damos import Action, DamosFilter, FilterType, Scheme
from ...core.regions import AddrRange
from ...errors import einval
from ..base import Operations
from .intervals import IntervalSet
from .world import SimProcess, SimWorld

if TYPE_CHECKING:
    from ...core.clock import Clock
    from ...core.context import Context
    from ...core.target import Target

MODES = ("sim", "vaddr", "fvaddr", "paddr")
# modeled throughput of actions, so that time quotas work in virtual time
PAGEOUT_BYTES_PER_S = 1 << 30  # writing pages to swap
SWAPIN_BYTES_PER_S = 1 << 30  # reading them back (willneed)
OTHER_BYTES_PER_S = 10 << 30  # hints that only walk page tables / LRU lists
NR_NODES = 2

_PADDR_COLD = frozenset({Action.PAGEOUT, Action.LRU_DEPRIO, Action.MIGRATE_COLD})
_PADDR_HOT = frozenset({Action.LRU_PRIO, Action.MIGRATE_HOT})


class SimOps(Operations):
    """Operations on simulated processes (modes sim, vaddr, fvaddr) or memory (paddr)."""

    name = "sim"
    supported_actions = frozenset(Action)

    def __init__(self, world: SimWorld | None = None, mode: str = "sim", *,
                 create_missing: bool = False):
        if mode not in MODES:
            raise einval(f"unknown simulated operations mode {mode!r} (one of {', '.join(MODES)})")
        self.world = world if world is not None else SimWorld()
        # instance attributes shadow the class-level defaults of Operations
        self.name = mode  # type: ignore[misc]
        self.mode = mode
        self.auto_regions = mode in ("sim", "vaddr")  # type: ignore[misc]
        self.targets_have_pid = mode != "paddr"  # type: ignore[misc]
        if mode == "paddr":
            self.cold_first_actions = _PADDR_COLD  # type: ignore[misc]
            self.hot_first_actions = _PADDR_HOT  # type: ignore[misc]
        else:
            self.cold_first_actions = frozenset({Action.PAGEOUT})  # type: ignore[misc]
            self.hot_first_actions = frozenset()  # type: ignore[misc]
        #: a pid no simulated process has gets one (the daemon's --simulate mode)
        self.create_missing = create_missing
        self._clock: Clock | None = None
        self._prepared_ns: dict[int, int] = {}

    # -- lifecycle ---------------------------------------------------------------------
    def check_ctx(self, ctx: Context) -> None:
        super().check_ctx(ctx)
        if self._clock is None:
            self._clock = ctx.clock

    def init(self, ctx: Context) -> None:
        self._clock = ctx.clock
        self._prepared_ns.clear()

    def cleanup(self, ctx: Context) -> None:
        self._prepared_ns.clear()

    def attach(self, target: Target) -> None:
        if self.mode == "paddr":
            target.handle = self.world.physical
            return
        if target.pid is None:
            raise einval(f"{self.mode} targets need a pid")
        try:
            proc = (self.world.get_or_create(target.pid) if self.create_missing
                    else self.world.process(target.pid))
        except KeyError:
            raise einval(f"no simulated process with pid {target.pid}") from None
        if not proc.alive:
            raise einval(f"simulated process {target.pid} has exited")
        target.handle = proc

    def detach(self, target: Target) -> None:
        self._prepared_ns.pop(id(target), None)
        target.handle = None

    def target_valid(self, target: Target) -> bool:
        proc = target.handle
        return isinstance(proc, SimProcess) and proc.alive

    def _proc(self, target: Target) -> SimProcess:
        proc = target.handle
        if not isinstance(proc, SimProcess):
            self.attach(target)
            proc = target.handle
        return proc

    # -- regions -------------------------------------------------------------------------
    def target_mappings(self, target: Target) -> list[tuple[int, int]]:
        return self._proc(target).mappings

    def default_ranges(self, target: Target) -> list[AddrRange]:
        if self.mode != "paddr":
            return []
        return [AddrRange(*self.world.physical.biggest_system_ram())]

    # -- access checks --------------------------------------------------------------------
    def _now(self) -> int:
        if self._clock is None:
            raise einval("simulated operations used before a context was checked")
        return self._clock.now_ns()

    def prepare_access_checks(self, target: Target, addrs: np.ndarray) -> None:
        self._prepared_ns[id(target)] = self._now()

    def check_accesses(self, target: Target, addrs: np.ndarray) -> np.ndarray:
        proc = self._proc(target)
        t1 = self._now()
        t0 = self._prepared_ns.get(id(target), t1)
        accessed = proc.sample_accesses(addrs, t0, t1)
        proc.advance(t1)
        return accessed

    def check_accesses_batch(self, target: Target, addrs: np.ndarray, t0_ns: np.ndarray,
                             t1_ns: np.ndarray) -> np.ndarray:
        """Samples ``addrs[i]`` (one row per sample) prepared at ``t0_ns[i]``, checked at
        ``t1_ns[i]``, in one call: a virtual-time engine may take all the samples
        between two kdamond events at once."""
        return self._proc(target).sample_accesses_batch(addrs, t0_ns, t1_ns)

    # -- DAMOS ------------------------------------------------------------------------------
    def apply_scheme(self, ctx: Context, target: Target, start: int, end: int,
                     scheme: Scheme) -> tuple[int, int]:
        proc = self._proc(target)
        allowed = self._filtered(proc, start, end, scheme.ops_filters, ctx.clock.now_ns())
        passed = allowed.total_bytes
        action = scheme.action
        slow_bytes = 0  # bytes moved to or from swap
        if action is Action.STAT:
            applied = 0
        elif action is Action.PAGEOUT:
            applied = sum(proc.page_out(s, e) for s, e in allowed.ranges())
            slow_bytes = applied
        elif action is Action.WILLNEED:
            slow_bytes = sum(proc.bring_in(s, e) for s, e in allowed.ranges())
            applied = passed
        elif action in (Action.MIGRATE_HOT, Action.MIGRATE_COLD):
            nid = scheme.target_nid
            applied = passed if 0 <= nid < NR_NODES else 0
            if applied:
                proc.record_migration(nid, applied)
            slow_bytes = applied
        else:  # cold, hugepage, nohugepage, lru_prio, lru_deprio: hints the system takes
            applied = passed
        if applied:
            proc.record_action(action.value, applied)
        cost_ns = (slow_bytes * 1_000_000_000 // PAGEOUT_BYTES_PER_S
                   + (end - start - slow_bytes) * 1_000_000_000 // OTHER_BYTES_PER_S)
        ctx.clock.charge_ns(cost_ns)
        return applied, passed

    def _filtered(self, proc: SimProcess, start: int, end: int,
                  filters: list[DamosFilter], now_ns: int) -> IntervalSet:
        """Mapped bytes of ``[start, end)`` that the ops-handled filters let through.

        Filters are evaluated in order and the first that matches a byte
        decides; bytes no filter matches get the opposite of the last
        filter's ``allow``.
        """
        undecided = IntervalSet.from_ranges(
            [(max(s, start), min(e, end)) for s, e in proc.mappings if s < end and start < e]
        )
        if not filters:
            return undecided
        allowed = IntervalSet()
        for f in filters:
            kind = _filter_set(proc, f.type, start, end, now_ns)
            matched = _intersect(undecided, kind) if f.matching else _subtract(undecided, kind)
            for s, e in matched.ranges():
                undecided.remove(s, e)
                if f.allow:
                    allowed.add(s, e)
        if not filters[-1].allow:
            for s, e in undecided.ranges():
                allowed.add(s, e)
        return allowed

    # -- system metrics --------------------------------------------------------------------
    def free_mem_rate(self) -> int | None:
        return self.world.free_mem_rate()


def _filter_set(proc: SimProcess, ftype: FilterType, start: int, end: int,
                now_ns: int) -> IntervalSet:
    """The bytes of ``[start, end)`` of a filter's kind."""
    if ftype is FilterType.ANON:
        return proc.anon_ranges(start, end)
    if ftype in (FilterType.YOUNG, FilterType.ACTIVE):
        # accessed since the last check, or kept on the active list: accessed at all now
        ranges = [(max(s, start), min(e, end)) for s, e in proc.hot_ranges(now_ns)
                  if s < end and start < e]
        return IntervalSet.from_ranges(ranges)
    if ftype is FilterType.UNMAPPED:
        out = proc.paged_out.intersection(start, end)
        for s, e in proc.unpopulated.intersection(start, end).ranges():
            out.add(s, e)
        return out
    # memcg, hugepage_size: the simulation has no cgroups and no huge pages
    return IntervalSet()


def _intersect(a: IntervalSet, b: IntervalSet) -> IntervalSet:
    out = IntervalSet()
    for s, e in b.ranges():
        for x, y in a.intersection(s, e).ranges():
            out.add(x, y)
    return out


def _subtract(a: IntervalSet, b: IntervalSet) -> IntervalSet:
    out = a.copy()
    for s, e in b.ranges():
        out.remove(s, e)
    return out
