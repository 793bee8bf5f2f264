"""The simulated system: processes running workloads, and a physical memory.

A :class:`SimProcess` is a workload plus the state that DAMOS actions change:
which ranges are paged out, which were never touched, and per-action
counters. Memory is tracked as interval sets and access rates as constant
segments, so nothing here is proportional to the number of pages.

Time is the virtual time of the monitoring clock (``ctx.clock.now_ns()``);
a workload's phases and moving hot spots are functions of it.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np

from .intervals import IntervalSet, elementary_segments
from .workload import (
    ADDR_LIMIT,
    PAGE_SIZE,
    Phase,
    RangePattern,
    RateMap,
    SimMapping,
    Workload,
    builtin_workload,
    parse_size,
    resolve_workload,
)

#: fake pids start here so that they never name a real process
FIRST_SIM_PID = 4_000_000
DEFAULT_WORKLOAD = "hotcold"
# physical address layout of the simulated machine (like a PC's /proc/iomem)
_LOW_RAM = (0x1000, 0x9F000)
_HIGH_RAM_START = 0x100000


def access_probability(rates: np.ndarray, dt_ns: int) -> np.ndarray:
    """P(a page is accessed at least once in ``dt_ns``) for Poisson rates per second."""
    rates = np.asarray(rates, dtype=np.float64)
    always = np.isinf(rates)
    if dt_ns <= 0:
        return always.astype(np.float64)
    finite = np.where(always, 0.0, rates)
    return np.where(always, 1.0, -np.expm1(-finite * (dt_ns / 1e9)))


def _segment_probability(rmap: RateMap, addrs: np.ndarray, dt_ns: int) -> np.ndarray:
    """Access probability at each address: computed once per rate segment, then looked up."""
    if len(rmap.bounds) < 2:
        return np.zeros(addrs.shape, np.float64)
    per_segment = np.concatenate(([0.0], access_probability(rmap.rates, dt_ns), [0.0]))
    return per_segment[np.searchsorted(rmap.bounds, addrs, side="right")]


class SimProcess:
    """A simulated address space running a :class:`Workload`.

    Ground truth is exact: :meth:`access_rate`, :meth:`hot_ranges` and
    :meth:`rate_map` read the workload's definition at a given time.
    """

    def __init__(self, world: SimWorld, pid: int | None, workload: Workload,
                 rng: np.random.Generator):
        self.world = world
        self.pid = pid
        self.workload = workload
        self.rng = rng
        self.alive = True
        # kdamonds run in threads; two of them may watch (and act on) one process
        self._lock = threading.RLock()
        self.paged_out = IntervalSet()
        self.unpopulated = IntervalSet.from_ranges(self.mappings)
        for start, end in (workload.populated if workload.populated is not None else self.mappings):
            self.unpopulated.remove(start, end)
        # effects of accesses on paged-out / never-touched memory
        self.nr_faults = 0  # pages faulted back in after a pageout
        self.refault_bytes = 0
        self.first_touch_bytes = 0
        # effects of DAMOS actions: bytes per action keyword, bytes migrated per node
        self.action_bytes: dict[str, int] = {}
        self.migrated_bytes: dict[int, int] = {}
        # work counters (for the "cost does not grow with size" checks)
        self.nr_addrs_checked = 0
        self.max_rate_segments = 0
        self.max_tracked_intervals = 0
        self.last_run_ns: int | None = None

    # -- layout ---------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.workload.name

    @property
    def mappings(self) -> list[tuple[int, int]]:
        return self.workload.mappings

    def mapped_bytes(self) -> int:
        return self.workload.mapped_bytes

    # -- ground truth ----------------------------------------------------------------
    def rate_map(self, t_ns: int) -> RateMap:
        return self.workload.rate_map(t_ns)

    def access_rate(self, addrs: np.ndarray, t_ns: int) -> np.ndarray:
        """Accesses per second of the page at each address (inf: every sample)."""
        return self.rate_map(t_ns).rate_at(np.asarray(addrs, dtype=np.int64))

    def hot_ranges(self, t_ns: int, min_rate: float = 0.0) -> list[tuple[int, int]]:
        """Merged ranges whose access rate is strictly above ``min_rate`` at ``t_ns``."""
        return self.rate_map(t_ns).ranges_above(min_rate)

    # -- memory state -------------------------------------------------------------------
    def paged_out_bytes(self) -> int:
        return self.paged_out.total_bytes

    def paged_out_ranges(self) -> list[tuple[int, int]]:
        return self.paged_out.ranges()

    def resident_bytes(self) -> int:
        """Mapped bytes that are neither paged out nor never touched."""
        if not self.alive:
            return 0
        return self.mapped_bytes() - self.unpopulated.total_bytes - self.paged_out.total_bytes

    def exit(self) -> None:
        """The process exits: its memory is freed and it is no longer a valid target."""
        self.alive = False

    # -- what the operations set does ------------------------------------------------
    def sample_accesses(self, addrs: np.ndarray, t0_ns: int, t1_ns: int) -> np.ndarray:
        """Whether the page at each address was accessed in ``[t0, t1)``; faults them in."""
        with self._lock:
            return self._sample_accesses(addrs, t0_ns, t1_ns)

    def _sample_accesses(self, addrs: np.ndarray, t0_ns: int, t1_ns: int) -> np.ndarray:
        addrs = np.asarray(addrs, dtype=np.int64)
        if self.last_run_ns is None:
            self.last_run_ns = t0_ns  # the workload runs from the first preparation on
        rmap = self.rate_map(t1_ns)
        self.nr_addrs_checked += len(addrs)
        self.max_rate_segments = max(self.max_rate_segments, rmap.nr_segments)
        prob = access_probability(rmap.rate_at(addrs), t1_ns - t0_ns)
        accessed = self.rng.random(len(addrs)) < prob
        if accessed.any():
            self._touch_pages(addrs[accessed])
        return accessed

    def sample_accesses_batch(self, addrs: np.ndarray, t0_ns: np.ndarray,
                              t1_ns: np.ndarray) -> np.ndarray:
        """Many samples at once: row i of ``addrs`` prepared at ``t0_ns[i]``, checked at
        ``t1_ns[i]``. Faults are run up to the last check. Returns a (k, n) bool array."""
        addrs = np.asarray(addrs, dtype=np.int64)
        t0 = np.asarray(t0_ns, dtype=np.int64)
        t1 = np.asarray(t1_ns, dtype=np.int64)
        with self._lock:
            k = addrs.shape[0]
            if k == 0:
                return np.zeros(addrs.shape, dtype=bool)
            if self.last_run_ns is None:
                self.last_run_ns = int(t0[0])
            wl = self.workload
            phases = {wl.phase_index(int(t)) for t in t1.tolist()}
            if len(phases) > 1 or wl.phases[phases.pop()].moves:
                # rates change inside the batch: one sample after the other
                out = np.zeros(addrs.shape, dtype=bool)
                for i in range(k):
                    out[i] = self._sample_accesses(addrs[i], int(t0[i]), int(t1[i]))
                    self._advance(int(t1[i]))
                return out
            rmap = self.rate_map(int(t1[0]))
            self.nr_addrs_checked += addrs.size
            self.max_rate_segments = max(self.max_rate_segments, rmap.nr_segments)
            dts = np.maximum(t1 - t0, 0)
            if np.all(dts == dts[0]):
                # one probability per rate segment, looked up per address
                prob = _segment_probability(rmap, addrs, int(dts[0]))
            else:
                rates = rmap.rate_at(addrs.ravel()).reshape(addrs.shape)
                always = np.isinf(rates)
                dt_s = dts[:, None] / 1e9
                prob = np.where(always, 1.0, -np.expm1(-np.where(always, 0.0, rates) * dt_s))
            accessed = self.rng.random(addrs.shape) < prob
            if accessed.any():
                self._touch_pages(addrs[accessed])
            self._advance(int(t1[-1]))
            return accessed

    def advance(self, t_ns: int) -> None:
        """Run the workload up to ``t_ns``: accessed paged-out pages are faulted back in.

        Within a paged-out stretch of one rate, the number of pages accessed
        in the elapsed time is drawn exactly (binomial); which of them is
        simplified to the stretch's lowest pages, which keeps the state a
        few intervals instead of a page bitmap.
        """
        with self._lock:
            return self._advance(t_ns)

    def _advance(self, t_ns: int) -> None:
        if self.last_run_ns is None:
            self.last_run_ns = t_ns
            return
        if t_ns <= self.last_run_ns:
            return  # another clock behind this one: nothing ran since
        dt = t_ns - self.last_run_ns
        self.last_run_ns = t_ns
        rmap = self.rate_map(t_ns)
        pages = self._fault_in(self.paged_out, rmap, dt)
        self.nr_faults += pages
        self.refault_bytes += pages * PAGE_SIZE
        self.first_touch_bytes += self._fault_in(self.unpopulated, rmap, dt) * PAGE_SIZE
        self.max_tracked_intervals = max(
            self.max_tracked_intervals, len(self.paged_out) + len(self.unpopulated)
        )

    def _fault_in(self, iset: IntervalSet, rmap: RateMap, dt_ns: int) -> int:
        if not len(iset) or rmap.nr_segments == 0:
            return 0
        seg_s, seg_e = elementary_segments(iset.starts, iset.ends, rmap.bounds)
        rates = rmap.rate_at(seg_s)
        active = iset.contains(seg_s) & (rates > 0)
        if not active.any():
            return 0
        s, e, r = seg_s[active], seg_e[active], rates[active]
        nr_pages = (e - s) // PAGE_SIZE
        prob = access_probability(r, dt_ns)
        touched = np.where(np.isinf(r), nr_pages, self.rng.binomial(nr_pages, prob))
        some = touched > 0
        removed = iset.remove_pieces(s[some], s[some] + touched[some] * PAGE_SIZE)
        return removed // PAGE_SIZE

    def _touch_pages(self, addrs: np.ndarray) -> None:
        if not len(self.paged_out) and not len(self.unpopulated):
            return
        pages = np.unique(addrs - addrs % PAGE_SIZE)
        for iset in (self.paged_out, self.unpopulated):
            hit = pages[iset.contains(pages)] if len(iset) else pages[:0]
            if len(hit):
                removed = iset.remove_pieces(hit, hit + PAGE_SIZE) // PAGE_SIZE
                if iset is self.paged_out:
                    self.nr_faults += removed
                    self.refault_bytes += removed * PAGE_SIZE
                else:
                    self.first_touch_bytes += removed * PAGE_SIZE

    def page_out(self, start: int, end: int) -> int:
        """Page out the resident part of ``[start, end)``; returns the bytes newly paged out."""
        with self._lock:
            return self._page_out(start, end)

    def _page_out(self, start: int, end: int) -> int:
        resident = IntervalSet.from_ranges(
            [(max(s, start), min(e, end)) for s, e in self.mappings if s < end and start < e]
        )
        for s, e in self.unpopulated.intersection(start, end).ranges():
            resident.remove(s, e)
        newly = 0
        for s, e in resident.ranges():
            newly += self.paged_out.add(s, e)
        self.max_tracked_intervals = max(
            self.max_tracked_intervals, len(self.paged_out) + len(self.unpopulated)
        )
        return newly

    def bring_in(self, start: int, end: int) -> int:
        """Read paged-out pages of ``[start, end)`` back (willneed); returns the bytes."""
        with self._lock:
            return self._bring_in(start, end)

    def _bring_in(self, start: int, end: int) -> int:
        return self.paged_out.remove(start, end)

    def record_action(self, action: str, nr_bytes: int) -> None:
        self.action_bytes[action] = self.action_bytes.get(action, 0) + nr_bytes

    def record_migration(self, nid: int, nr_bytes: int) -> None:
        self.migrated_bytes[nid] = self.migrated_bytes.get(nid, 0) + nr_bytes

    def anon_ranges(self, start: int, end: int) -> IntervalSet:
        return IntervalSet.from_ranges(
            [(max(m.start, start), min(m.end, end)) for m in self.workload.layout
             if m.anon and m.start < end and start < m.end]
        )

    def __repr__(self) -> str:
        state = "alive" if self.alive else "exited"
        return f"<SimProcess pid={self.pid} workload={self.name!r} {state}>"


class SimPhysicalMemory(SimProcess):
    """The simulated machine's physical address space (the ``paddr`` target).

    Its layout is the "System RAM" ranges; its workload stands for everything
    that uses memory besides the simulated processes (kernel, page cache,
    other programs).
    """

    def system_ram(self) -> list[tuple[int, int]]:
        return self.mappings

    def biggest_system_ram(self) -> tuple[int, int]:
        return max(self.mappings, key=lambda r: (r[1] - r[0], -r[0]))

    def iomem(self) -> list[tuple[int, int, str]]:
        """``/proc/iomem``-like lines (end exclusive)."""
        return [(s, e, "System RAM") for s, e in self.mappings]


def default_physical_workload(total_memory: int) -> Workload:
    """RAM of ``total_memory`` bytes laid out like a small PC's ``/proc/iomem``."""
    high = total_memory - (_LOW_RAM[1] - _LOW_RAM[0])
    high -= high % PAGE_SIZE
    if high < 16 * PAGE_SIZE * 16:
        raise ValueError(f"total memory {total_memory} is too small to simulate")
    return physical_workload([_LOW_RAM, (_HIGH_RAM_START, _HIGH_RAM_START + high)])


def physical_workload(ram_ranges: list[tuple[int, int]]) -> Workload:
    """Physical memory of these System RAM ranges, used by "the rest of the system".

    The biggest range has its first quarter in use and, within it, its
    second sixteenth hot (touched every sample); smaller ranges are in use
    and cold; the rest is free.
    """
    ranges = sorted((s + (-s) % PAGE_SIZE, e - e % PAGE_SIZE) for s, e in ram_ranges)
    ranges = [(s, e) for s, e in ranges if e > s]
    if not ranges:
        raise ValueError("no System RAM range to simulate")
    biggest = max(ranges, key=lambda r: (r[1] - r[0], -r[0]))
    size = biggest[1] - biggest[0]
    layout = [SimMapping("System RAM" if r == biggest else f"System RAM {i}", *r)
              for i, r in enumerate(ranges)]
    hot_start = biggest[0] + _align(size // 16)
    hot_end = min(hot_start + _align(size // 16), biggest[1])
    populated = [r if r != biggest else (r[0], r[0] + _align(size // 4)) for r in ranges]
    return Workload(
        name="physical",
        description="machine RAM: a quarter of it used by the rest of the system, 1/16 hot",
        layout=layout,
        phases=[Phase(None, (RangePattern(hot_start, hot_end, math.inf),))],
        populated=populated,
    )


def physical_workload_from_iomem(iomem_text: str) -> Workload | None:
    """A physical-memory workload with the "System RAM" ranges of a ``/proc/iomem`` text.

    ``/proc/iomem`` shows zeros to unprivileged readers; None then, or when
    no top-level System RAM range is found.
    """
    ranges = []
    for line in iomem_text.splitlines():
        if line.startswith(" ") or ":" not in line:
            continue  # nested resources (kernel code, ...) are inside a RAM range
        span, _, name = line.partition(":")
        if name.strip() != "System RAM" or "-" not in span:
            continue
        try:
            lo, hi = (int(x, 16) for x in span.strip().split("-", 1))
        except ValueError:
            continue
        if hi > lo:
            ranges.append((lo, hi + 1))  # iomem ends are inclusive
    ranges = [(s, e) for s, e in ranges if e - s >= PAGE_SIZE]
    if not ranges or sum(e - s for s, e in ranges) < 256 * PAGE_SIZE:
        return None
    return physical_workload(ranges)


def _align(x: int) -> int:
    return max(x - x % PAGE_SIZE, PAGE_SIZE)


def workload_from_maps(maps_text: str, name: str = "process") -> Workload | None:
    """A workload with the layout of a ``/proc/<pid>/maps`` text.

    The access pattern is the default one: the middle eighth of the largest
    mapping is hot (touched every sample), everything else is never touched.
    None if the text has no usable mapping.
    """
    layout: list[SimMapping] = []
    prev_end = 0
    for line in maps_text.splitlines():
        fields = line.split(maxsplit=5)
        if not fields or "-" not in fields[0]:
            continue
        try:
            lo_text, hi_text = fields[0].split("-", 1)
            start, end = int(lo_text, 16), int(hi_text, 16)
        except ValueError:
            continue
        if end >= ADDR_LIMIT or end <= start or start < prev_end:
            continue  # [vsyscall] and friends are beyond int64 addresses
        path = fields[5].strip() if len(fields) > 5 else ""
        anon = not path.startswith("/")
        layout.append(SimMapping(f"{len(layout)}:{path or '[anon]'}", start, end, anon=anon))
        prev_end = end
    if not layout:
        return None
    largest = max(layout, key=lambda m: m.size)
    hot_size = _align(largest.size // 8)
    hot_start = largest.start + _align(max((largest.size - hot_size) // 2, 0)) \
        if largest.size > hot_size else largest.start
    hot_end = min(hot_start + hot_size, largest.end)
    return Workload(
        name=name,
        description="layout of a real process; middle eighth of its largest mapping hot",
        layout=layout,
        phases=[Phase(None, (RangePattern(hot_start, hot_end, math.inf),))],
    )


class SimWorld:
    """Simulated processes and physical memory, with seeded randomness.

    ``total_memory`` is the simulated RAM (bytes or a size string);
    ``physical`` replaces the default workload of the physical memory (its
    layout then sets the total, e.g. :func:`physical_workload_from_iomem`
    of the host's ``/proc/iomem`` to match what damo reads there).
    """

    def __init__(self, seed: int = 0, total_memory: int | str = "8GiB",
                 physical: Workload | str | None = None):
        self.seed = seed
        total = parse_size(total_memory, "total_memory")
        physical_workload = (
            resolve_workload(physical) if physical is not None else default_physical_workload(total)
        )
        self.physical = SimPhysicalMemory(
            self, None, physical_workload, np.random.default_rng([seed, 0])
        )
        self._procs: dict[int, SimProcess] = {}
        self._next_pid = FIRST_SIM_PID
        self._lock = threading.RLock()  # kdamond threads attach concurrently

    @property
    def total_memory(self) -> int:
        return self.physical.mapped_bytes()

    # -- processes ---------------------------------------------------------------------
    def spawn(self, workload: Workload | str, pid: int | None = None) -> int:
        """Start a simulated process running ``workload`` (a Workload, built-in name or file)."""
        wl = resolve_workload(workload)
        with self._lock:
            return self._spawn(wl, pid)

    def _spawn(self, wl: Workload, pid: int | None) -> int:
        if pid is None:
            while self._next_pid in self._procs:
                self._next_pid += 1
            pid = self._next_pid
            self._next_pid += 1
        elif pid in self._procs:
            raise ValueError(f"pid {pid} is already simulated")
        self._procs[pid] = SimProcess(self, pid, wl, np.random.default_rng([self.seed, pid]))
        return pid

    def process(self, pid: int) -> SimProcess:
        """The simulated process of ``pid``; KeyError if there is none."""
        return self._procs[pid]

    def get_or_create(self, pid: int) -> SimProcess:
        """The process of ``pid``, created on first use.

        A new one takes the layout of the real process ``pid`` if its
        ``/proc/<pid>/maps`` is readable (hot spot in its largest mapping),
        else runs the default built-in workload.
        """
        with self._lock:
            if pid not in self._procs:
                self._spawn(self._workload_of_pid(pid), pid)
            return self._procs[pid]

    @staticmethod
    def _workload_of_pid(pid: int) -> Workload:
        workload = None
        try:
            text = Path(f"/proc/{int(pid)}/maps").read_text()
            workload = workload_from_maps(text, name=f"pid{pid}")
        except (OSError, ValueError):
            workload = None
        return workload if workload is not None else builtin_workload(DEFAULT_WORKLOAD)

    @property
    def processes(self) -> list[SimProcess]:
        return list(self._procs.values())

    # -- memory --------------------------------------------------------------------------
    def used_bytes(self) -> int:
        return self.physical.resident_bytes() + sum(
            p.resident_bytes() for p in self._procs.values() if p.alive
        )

    def free_bytes(self) -> int:
        return max(self.total_memory - self.used_bytes(), 0)

    def free_mem_rate(self) -> int:
        """Free memory in per mille of the total, as the free_mem_rate watermark metric."""
        return self.free_bytes() * 1000 // self.total_memory

    def __repr__(self) -> str:
        return (f"<SimWorld seed={self.seed} total={self.total_memory} "
                f"processes={len(self._procs)}>")
