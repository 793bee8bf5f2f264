"""SimOps as an operations set: modes, attach, scores, actions and their effects."""

from __future__ import annotations

import errno

import numpy as np
import pytest

from pydamon.core import (
    Action,
    Context,
    DamosFilter,
    FilterType,
    MonitoringAttrs,
    Quota,
    Scheme,
    Target,
    VirtualClock,
)
from pydamon.errors import DamonError
from pydamon.ops import available_ops, make_ops
from pydamon.ops.sim import SimOps, SimWorld, Workload

MiB = 1 << 20


def setup(mode="sim", workload="hotcold"):
    world = SimWorld(seed=0)
    pid = world.spawn(workload)
    ops = SimOps(world, mode=mode)
    target = Target(pid=pid) if mode != "paddr" else Target()
    ctx = Context(ops, targets=[target], clock=VirtualClock(), seed=0)
    ops.check_ctx(ctx)
    ops.init(ctx)
    ops.attach(target)
    return world, ops, ctx, target


def test_registered_as_sim():
    assert "sim" in available_ops()
    ops = make_ops("sim")
    assert isinstance(ops, SimOps) and ops.name == "sim" and isinstance(ops.world, SimWorld)


@pytest.mark.parametrize("mode, auto, has_pid", [
    ("sim", True, True), ("vaddr", True, True), ("fvaddr", False, True), ("paddr", False, False),
])
def test_modes(mode, auto, has_pid):
    ops = SimOps(mode=mode)
    assert ops.name == mode and ops.auto_regions is auto and ops.targets_have_pid is has_pid
    assert ops.supported_actions == frozenset(Action)


def test_unknown_mode():
    with pytest.raises(DamonError) as info:
        SimOps(mode="kvaddr")
    assert info.value.errno == errno.EINVAL


def test_attach_unknown_or_exited_pid_is_einval():
    world = SimWorld()
    ops = SimOps(world)
    with pytest.raises(DamonError) as info:
        ops.attach(Target(pid=42))
    assert info.value.errno == errno.EINVAL
    pid = world.spawn("hotcold")
    world.process(pid).exit()
    with pytest.raises(DamonError):
        ops.attach(Target(pid=pid))
    # the daemon's --simulate mode creates processes for unknown pids
    lenient = SimOps(world, create_missing=True)
    t = Target(pid=4_777_777)
    lenient.attach(t)
    assert lenient.target_valid(t) and world.process(4_777_777).name == "hotcold"


def test_target_valid_follows_exit():
    world, ops, ctx, target = setup()
    assert ops.target_valid(target)
    target.handle.exit()
    assert not ops.target_valid(target)


def test_paddr_target_is_physical_memory():
    world, ops, ctx, target = setup("paddr")
    assert target.handle is world.physical
    (r,) = ops.default_ranges(target)
    assert (r.start, r.end) == world.physical.biggest_system_ram()
    assert SimOps(mode="sim").default_ranges(Target(pid=1)) == []


def test_check_accesses_matches_truth():
    world, ops, ctx, target = setup()
    proc = target.handle
    hot_s, hot_e = proc.hot_ranges(0)[0]
    addrs = np.array([hot_s, hot_e - 1, hot_e, proc.mappings[0][0]], dtype=np.int64)
    ops.prepare_access_checks(target, addrs)
    ctx.clock.sleep_us(5000)
    assert ops.check_accesses(target, addrs).tolist() == [True, True, False, False]


def test_scheme_scores_per_mode():
    nr = np.array([0, 10, 20])
    age = np.array([50, 5, 5])
    for mode, cold, hot in [
        ("sim", {Action.PAGEOUT}, set()),
        ("paddr", {Action.PAGEOUT, Action.LRU_DEPRIO, Action.MIGRATE_COLD},
         {Action.LRU_PRIO, Action.MIGRATE_HOT}),
    ]:
        ops = SimOps(mode=mode)
        ctx = Context(ops, attrs=MonitoringAttrs())
        for action in Action:
            s = Scheme(action=action, quota=Quota(sz=MiB, weight_nr_accesses=1, weight_age=1))
            scores = ops.scheme_scores(ctx, nr, age, s).tolist()
            if action in cold:
                assert scores[0] > scores[2], action  # the idle region first
            elif action in hot:
                assert scores[2] > scores[0], action  # the busy region first
            else:
                assert scores == [99, 99, 99], action


def test_pageout_applies_newly_paged_bytes_and_charges_time():
    world, ops, ctx, target = setup()
    proc = target.handle
    anon = proc.workload.mapping("anon")
    s = Scheme(action=Action.PAGEOUT)
    t0 = ctx.clock.now_ns()
    assert ops.apply_scheme(ctx, target, anon.start, anon.start + 64 * MiB, s) == (64 * MiB,
                                                                                  64 * MiB)
    # 64 MiB at 1 GiB/s
    assert ctx.clock.now_ns() - t0 == 64 * MiB * 10**9 // (1 << 30)
    applied, passed = ops.apply_scheme(ctx, target, anon.start, anon.start + 128 * MiB, s)
    assert (applied, passed) == (64 * MiB, 128 * MiB)
    assert proc.paged_out_bytes() == 128 * MiB
    assert proc.action_bytes["pageout"] == 128 * MiB


def test_hint_actions_record_and_willneed_brings_back():
    world, ops, ctx, target = setup()
    proc = target.handle
    anon = proc.workload.mapping("anon")
    proc.page_out(anon.start, anon.start + 8 * MiB)
    for action in (Action.COLD, Action.LRU_DEPRIO, Action.HUGEPAGE, Action.NOHUGEPAGE,
                   Action.LRU_PRIO):
        applied, _ = ops.apply_scheme(ctx, target, anon.start, anon.start + MiB, Scheme(action=action))
        assert applied == MiB and proc.action_bytes[action.value] == MiB
    assert proc.paged_out_bytes() == 8 * MiB  # hints change nothing else
    ops.apply_scheme(ctx, target, anon.start, anon.start + 4 * MiB, Scheme(action=Action.WILLNEED))
    assert proc.paged_out_bytes() == 4 * MiB
    # migration needs a valid node
    assert ops.apply_scheme(ctx, target, anon.start, anon.start + MiB,
                            Scheme(action=Action.MIGRATE_COLD, target_nid=1))[0] == MiB
    assert proc.migrated_bytes == {1: MiB}
    assert ops.apply_scheme(ctx, target, anon.start, anon.start + MiB,
                            Scheme(action=Action.MIGRATE_HOT, target_nid=-1))[0] == 0


def test_unmapped_gap_is_not_applied():
    world, ops, ctx, target = setup()
    heap = target.handle.workload.mapping("heap")
    applied, passed = ops.apply_scheme(ctx, target, heap.start - 8 * MiB, heap.start + MiB,
                                       Scheme(action=Action.COLD))
    assert (applied, passed) == (MiB, MiB)


def test_ops_filters():
    world, ops, ctx, target = setup()
    proc = target.handle
    text, anon = proc.workload.mapping("text"), proc.workload.mapping("anon")
    hot_s, hot_e = proc.hot_ranges(0)[0]
    # anon filter rejecting anonymous memory: only the file-backed text passes
    no_anon = Scheme(action=Action.PAGEOUT,
                     filters=[DamosFilter(FilterType.ANON, matching=True, allow=False)])
    applied, passed = ops.apply_scheme(ctx, target, text.start, text.end + 1 * MiB, no_anon)
    assert passed == text.size and applied == text.size
    # young filter rejecting accessed memory: the hot range is kept resident
    not_young = Scheme(action=Action.PAGEOUT,
                       filters=[DamosFilter(FilterType.YOUNG, matching=True, allow=False)])
    applied, passed = ops.apply_scheme(ctx, target, hot_s - MiB, hot_e + MiB, not_young)
    assert passed == applied == 2 * MiB
    assert proc.paged_out.overlap_bytes(hot_s, hot_e) == 0
    # allow-filter: only matching memory passes, the rest is rejected by default
    only_young = Scheme(action=Action.COLD,
                        filters=[DamosFilter(FilterType.YOUNG, matching=True, allow=True)])
    assert ops.apply_scheme(ctx, target, anon.start, anon.end, only_young)[1] == hot_e - hot_s
    # stat with ops filters reaches ops: nothing applied, passed bytes counted
    stat = Scheme(action=Action.STAT,
                  filters=[DamosFilter(FilterType.ANON, matching=False, allow=False)])
    assert ops.apply_scheme(ctx, target, anon.start, anon.end, stat) == (0, anon.size)


def test_free_mem_rate_is_worlds():
    world, ops, ctx, target = setup()
    assert ops.free_mem_rate() == world.free_mem_rate()
    anon = target.handle.workload.mapping("anon")
    ops.apply_scheme(ctx, target, anon.start, anon.end, Scheme(action=Action.PAGEOUT))
    assert ops.free_mem_rate() == world.free_mem_rate() > 0


def test_check_accesses_batch_matches_truth():
    wl = Workload.from_dict({
        "layout": [{"name": "a", "start": "0x100000", "size": "64MiB"},
                   {"name": "b", "start": "0x40000000", "size": "64MiB"}],
        "patterns": [{"type": "range", "mapping": "a", "size": "1MiB", "rate": "every_sample"},
                     {"type": "range", "mapping": "b", "rate": 100}],
    })
    world = SimWorld(seed=0)
    pid = world.spawn(wl)
    ops = SimOps(world)
    target = Target(pid=pid)
    ops.attach(target)
    proc = target.handle
    proc.page_out(0x100000, 0x100000 + 2 * MiB)
    k = 2000
    row = np.array([0x100000 + 4096, 0x100000 + 2 * MiB, 0x40000000 + 12345], dtype=np.int64)
    addrs = np.tile(row, (k, 1))
    t0 = np.arange(k, dtype=np.int64) * 5_000_000
    hits = ops.check_accesses_batch(target, addrs, t0, t0 + 5_000_000)
    assert hits.shape == (k, 3) and hits.dtype == bool
    assert hits[:, 0].all() and not hits[:, 1].any()
    assert hits[:, 2].mean() == pytest.approx(1 - np.exp(-0.5), abs=0.04)
    # the batch ran the workload: the hot MiB was faulted back in, the cold one not
    assert proc.paged_out_ranges() == [(0x100000 + MiB, 0x100000 + 2 * MiB)]
    assert proc.nr_addrs_checked == 3 * k


def test_check_accesses_batch_follows_a_moving_spot():
    world = SimWorld(seed=0)
    pid = world.spawn("moving")
    ops = SimOps(world)
    target = Target(pid=pid)
    ops.attach(target)
    proc = target.handle
    anon = proc.workload.mapping("anon")
    k = 40
    t0 = np.arange(k, dtype=np.int64) * 100_000_000  # 0.1 s apart: the spot moves 3.2 MiB
    # per sample, one address just ahead of the spot's start and one just inside it
    starts = np.array([proc.hot_ranges(int(t))[0][0] for t in (t0 + 5_000_000).tolist()])
    addrs = np.stack([starts - 4096, starts], axis=1).astype(np.int64)
    assert (starts >= anon.start).all()
    hits = ops.check_accesses_batch(target, addrs, t0, t0 + 5_000_000)
    assert not hits[:, 0].any() and hits[:, 1].all()
