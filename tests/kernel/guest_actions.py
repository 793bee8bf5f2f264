"""DAMOS actions of vaddr on a real process (run inside the guest with swap on).

``test_in_guest.py`` turns on zram swap inside the guest before running
these; without swap they are skipped. It also boots the guest with two NUMA
nodes (and NUMA balancing off) for the migrate tests; with one node those
are skipped.
"""

from __future__ import annotations

import errno
import os
import re
import time

import numpy as np
import pytest
from kernel_helpers import GUEST_APPEND, GUEST_NUMA_QEMU_ARGS, start_workload

from pydamon.core.attrs import MonitoringAttrs
from pydamon.core.context import Context
from pydamon.core.damos import AccessPattern, Action, DamosFilter, FilterType, Quota, Scheme
from pydamon.core.kdamond import Kdamond
from pydamon.core.target import Target
from pydamon.errors import DamonError
from pydamon.linux import numa, pagemap, syscount

MIB = 1 << 20
ATTRS = MonitoringAttrs(sample_us=50_000, aggr_us=500_000, update_us=5_000_000,
                        min_nr_regions=10, max_nr_regions=100)


def swap_total_kib() -> int:
    with open("/proc/swaps") as f:
        lines = f.read().splitlines()[1:]
    return sum(int(line.split()[2]) for line in lines)


@pytest.fixture(scope="module")
def swap_workload(real_kernel):
    if swap_total_kib() < 256 * 1024:
        pytest.skip("needs swap (test_in_guest.py turns zram swap on inside the guest)")
    # Small: under TCG, with the workload running on the other vCPU, paging
    # out goes at a few MiB/s. The hot loop pauses 10 ms between passes
    # (still several passes per 50 ms sampling interval).
    w = start_workload(96, 64, 16, thp=False, period_ms=10)
    yield w
    w.stop()


def cold_pageout(w, quota: Quota | None = None) -> Scheme:
    """Page out regions of the workload's buffer not accessed for five aggregations.

    Five, not fewer: a region that straddles the edge of the hot range is
    sampled in its cold part in some aggregations (DAMON's region
    granularity, the kernel's too); demanding 2.5 s of idleness keeps such
    regions, and so the hot range, resident, as a deployment's min_age does.
    The addr filter keeps the scheme to the buffer: the interpreter's own
    areas have unmapped holes, where the kernel refuses the whole call
    (ENOMEM) but still charges the quota.
    """
    return Scheme(
        pattern=AccessPattern(max_nr_accesses=0, min_age_region=5),
        action=Action.PAGEOUT, quota=quota or Quota(),
        filters=[DamosFilter(FilterType.ADDR, matching=True, allow=True,
                             addr_start=w.addr, addr_end=w.addr + w.size)])


def resident_fraction(w, start: int, end: int) -> float:
    with open(f"/proc/{w.pid}/pagemap", "rb", buffering=0) as f:
        frames = pagemap.PagemapReader(f.fileno()).frames(list(range(start, end, 4096)))
    return float((frames >= 0).mean())


def test_quota_caps_bytes_paged_out_per_reset_interval(swap_workload):
    w = swap_workload
    quota = Quota(sz=4 * MIB, reset_interval_ms=1000)
    scheme = cold_pageout(w, quota)
    ctx = Context("vaddr", ATTRS, [Target(pid=w.pid)], [scheme], seed=1)
    swap0 = w.status().get("VmSwap", 0)
    applied: list[tuple[float, int]] = []
    ctx.callbacks.after_aggregation = lambda c: applied.append(
        (time.monotonic(), scheme.stats.sz_applied)) and None
    t0 = time.monotonic()

    def enough(_ctx) -> bool:
        # five quota windows after the first pageout, which needs the regions
        # to settle and five idle aggregations first (slow under TCG)
        first = next((t for t, sz in applied if sz), None)
        return first is not None and time.monotonic() - first >= 5.0

    Kdamond(ctx).run(duration_us=40_000_000, until=enough)
    elapsed = time.monotonic() - t0
    windows = int(elapsed // 1.0) + 1
    total = scheme.stats.sz_applied
    assert total > 0, "nothing paged out"
    assert total <= windows * quota.sz, (total, windows)
    swapped = (w.status().get("VmSwap", 0) - swap0) * 1024
    assert swapped <= windows * quota.sz + MIB
    # within any one window no more than the quota was applied
    for (ta, a), (tb, b) in zip(applied, applied[1:], strict=False):
        if tb - ta < 1.0:
            assert b - a <= quota.sz


def test_pageout_moves_cold_memory_to_swap_and_keeps_hot_resident(swap_workload):
    w = swap_workload
    before = w.status()
    scheme = cold_pageout(w)
    ctx = Context("vaddr", ATTRS, [Target(pid=w.pid)], [scheme], seed=2)
    kd = Kdamond(ctx)
    deadline = time.monotonic() + 240
    kd.start()
    try:
        while time.monotonic() < deadline:
            time.sleep(1)
            if w.status().get("VmSwap", 0) - before.get("VmSwap", 0) >= 40 * 1024:
                break
    finally:
        kd.stop(timeout=120)
    after = w.status()
    swapped_kib = after["VmSwap"] - before.get("VmSwap", 0)
    assert swapped_kib >= 40 * 1024, (before, after)
    assert after["VmRSS"] <= before["VmRSS"] - 32 * 1024
    assert scheme.stats.sz_applied >= 32 * MIB
    assert resident_fraction(w, w.hot_start, w.hot_end) >= 0.9


def anon_huge_kib(pid: int, start: int, end: int) -> int:
    """AnonHugePages of the mappings of a process that overlap [start, end)."""
    total = 0
    inside = False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split(maxsplit=1)[0]
            if "-" in head and not head.endswith(":"):
                lo, hi = (int(x, 16) for x in head.split("-"))
                inside = lo < end and start < hi
            elif inside and head == "AnonHugePages:":
                total += int(line.split()[1])
    return total


def apply_once(w, action: Action, start: int, end: int) -> int:
    return apply_scheme_once(w, Scheme(action=action), start, end)


def test_hugepage_collapses_small_pages_through_madv_collapse(real_kernel):
    # the hot loop stays away from the first 4 MiB, collapsed below
    w = start_workload(16, 8, 1, thp=False, extra=("--hugepage-after-populate",))
    try:
        assert anon_huge_kib(w.pid, w.addr, w.addr + w.size) == 0
        applied = apply_once(w, Action.HUGEPAGE, w.addr, w.addr + 4 * MIB)
        assert applied == 4 * MIB
        assert anon_huge_kib(w.pid, w.addr, w.addr + w.size) >= 4096
    finally:
        w.stop()


def test_hugepage_refused_counts_nothing_applied(real_kernel):
    w = start_workload(16, 8, 1, thp=False)  # MADV_NOHUGEPAGE: collapse is refused
    try:
        assert apply_once(w, Action.HUGEPAGE, w.addr, w.addr + 4 * MIB) == 0
        assert anon_huge_kib(w.pid, w.addr, w.addr + w.size) == 0
    finally:
        w.stop()


# -- migrate_hot / migrate_cold through move_pages ----------------------------------------
@pytest.fixture(scope="module")
def second_node(real_kernel):
    nodes = numa.memory_nodes()
    if not {0, 1} <= set(nodes):
        pytest.skip(f"needs NUMA nodes 0 and 1 with memory, this kernel has {nodes or 'none'} "
                    "(test_in_guest.py boots the guest with two: QEMU "
                    f"{' '.join(GUEST_NUMA_QEMU_ARGS)})")
    try:
        with open("/proc/sys/kernel/numa_balancing") as f:
            balancing = f.read().strip()
    except FileNotFoundError:
        balancing = "0"
    if balancing != "0":
        pytest.skip("NUMA balancing is on: it would move pages between nodes behind the "
                    f"test's back (test_in_guest.py boots with {GUEST_APPEND})")


def nodes_of(w, start: int, end: int) -> np.ndarray:
    """The node of each page of [start, end) of the workload (-errno where none)."""
    return numa.page_nodes(w.pid, np.arange(start, end, 4096, dtype=np.uint64))


def numa_maps_pages(pid: int, addr: int, node: int) -> int:
    """Pages on ``node`` of the mapping of ``pid`` that holds ``addr``, from numa_maps."""
    with open(f"/proc/{pid}/numa_maps") as f:
        for line in f:
            start = int(line.split(maxsplit=1)[0], 16)
            if start <= addr:
                found = line
    m = re.search(rf"\bN{node}=(\d+)", found)
    return int(m.group(1)) if m else 0


def test_migrate_cold_moves_cold_pages_to_node_1_and_counts_them(second_node):
    # 48 MiB of 4 KiB pages, the middle 16 MiB hot; allocated on node 0,
    # where the guest's CPUs are
    w = start_workload(48, 16, 16, thp=False, period_ms=10)
    try:
        before = nodes_of(w, w.addr, w.addr + w.size)
        assert (before == 0).all(), np.unique(before, return_counts=True)
        scheme = Scheme(
            pattern=AccessPattern(max_nr_accesses=0, min_age_region=5),
            action=Action.MIGRATE_COLD, target_nid=1,
            filters=[DamosFilter(FilterType.ADDR, matching=True, allow=True,
                                 addr_start=w.addr, addr_end=w.addr + w.size)])
        ctx = Context("vaddr", ATTRS, [Target(pid=w.pid)], [scheme], seed=4)
        cold = ~np.zeros(w.size // 4096, bool)
        cold[(w.hot_start - w.addr) // 4096:(w.hot_end - w.addr) // 4096] = False
        done_at: list[float] = []
        looked = [0.0]

        def enough(_ctx) -> bool:
            # the cold pages are on node 1 (looked at once a second); then
            # three more seconds of applying to regions already there
            now = time.monotonic()
            if done_at:
                return now - done_at[0] >= 3.0
            if now - looked[0] >= 1.0:
                looked[0] = now
                if (nodes_of(w, w.addr, w.addr + w.size)[cold] == 1).mean() >= 0.95:
                    done_at.append(now)
            return False

        Kdamond(ctx).run(duration_us=180_000_000, until=enough)
        after = nodes_of(w, w.addr, w.addr + w.size)
        assert done_at, f"cold pages on node 1: {(after[cold] == 1).mean():.2f}"
        assert (after[~cold] == 0).mean() >= 0.9, "the hot range left node 0"
        moved = int(((after == 1) & (before != 1)).sum()) * 4096
        # sz_applied is what moved: the pages now on node 1, nothing for the
        # applications to regions already there
        assert scheme.stats.sz_applied == moved, (scheme.stats, moved)
        assert scheme.stats.nr_applied > 0
        # the kernel's own account of the mapping agrees
        assert numa_maps_pages(w.pid, w.addr, 1) * 4096 == moved
    finally:
        w.stop()


def apply_scheme_once(w, scheme: Scheme, start: int, end: int) -> int:
    ctx = Context("vaddr", ATTRS, [Target(pid=w.pid)], [scheme])
    ctx.validate()
    t = ctx.targets[0]
    ctx.ops.attach(t)
    try:
        return ctx.ops.apply_scheme(ctx, t, start, end, ctx.schemes[0])[0]
    finally:
        ctx.ops.detach(t)
        ctx.ops.cleanup(ctx)


def test_migrate_moves_huge_pages_whole_by_one_address(second_node):
    w = start_workload(16, 12, 2, thp=True)  # the hot loop stays in [12, 14) MiB
    try:
        huge_kib = anon_huge_kib(w.pid, w.addr, w.addr + w.size)
        assert huge_kib >= 16 * 1024, "the THP workload has no huge pages"
        scheme = Scheme(action=Action.MIGRATE_COLD, target_nid=1)
        syscount.reset()
        # [1 MiB, 7 MiB): partly covered huge pages at both ends move whole
        applied = apply_scheme_once(w, scheme, w.addr + MIB, w.addr + 7 * MIB)
        assert applied == 8 * MIB
        assert syscount.counts["move_pages"] == 1
        after = nodes_of(w, w.addr, w.addr + w.size)
        assert (after[:8 * MIB // 4096] == 1).all() and (after[8 * MIB // 4096:] == 0).all()
        # moved as huge pages: none was split on the way
        assert anon_huge_kib(w.pid, w.addr, w.addr + w.size) == huge_kib
        assert numa_maps_pages(w.pid, w.addr, 1) == 8 * MIB // 4096
        # all there already: nothing moves, nothing counts
        assert apply_scheme_once(w, scheme, w.addr, w.addr + 8 * MIB) == 0
    finally:
        w.stop()


def test_migrate_to_an_offline_node_is_rejected(real_kernel):
    offline = max(numa.online_nodes() or [0]) + 1
    target = Target(pid=os.getpid())
    bad = Scheme(action=Action.MIGRATE_COLD, target_nid=offline)
    with pytest.raises(DamonError) as e:
        Kdamond(Context("vaddr", ATTRS, [target], [bad])).start()
    assert e.value.errno == errno.EINVAL and "not an online NUMA node" in str(e.value)
    # a running kdamond refuses it at commit and keeps its own scheme
    ok_nid = numa.memory_nodes()[0]
    kd = Kdamond(Context("vaddr", ATTRS, [Target(pid=os.getpid())],
                         [Scheme(action=Action.MIGRATE_HOT, target_nid=ok_nid,
                                 pattern=AccessPattern(min_nr_accesses=1 << 20))]))
    kd.start()
    try:
        with pytest.raises(DamonError) as e:
            kd.commit(Context("vaddr", ATTRS, [Target(pid=os.getpid())], [bad]))
        assert e.value.errno == errno.EINVAL
        assert kd.running and kd.ctx.schemes[0].target_nid == ok_nid
    finally:
        kd.stop(timeout=60)
