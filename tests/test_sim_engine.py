"""The engine on simulated workloads: accuracy, determinism, DAMOS effects, scale."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from pydamon.core import (
    AccessPattern,
    Action,
    Context,
    Kdamond,
    MonitoringAttrs,
    Quota,
    Scheme,
    Target,
    VirtualClock,
    WatermarkMetric,
    Watermarks,
)
from pydamon.ops.sim import IntervalSet, SimOps, SimWorld, Workload

MiB = 1 << 20
SEC_US = 1_000_000


def make_ctx(workload="hotcold", schemes=(), seed=0, attrs=None, mode="sim", world=None):
    world = world if world is not None else SimWorld(seed=seed)
    pid = world.spawn(workload)
    target = Target(pid=pid) if mode != "paddr" else Target()
    ctx = Context(SimOps(world, mode=mode), attrs=attrs or MonitoringAttrs(), targets=[target],
                  schemes=list(schemes), clock=VirtualClock(), seed=seed)
    return ctx, world, world.process(pid)


def record_events(ctx):
    events = []
    ctx.add_aggregation_listener(events.append)
    return events


def hot_cold_shares(proc, events, warmup_ns=5 * 10**9):
    """Per aggregation after warm-up: share of hot bytes in regions with nr_accesses > 0,
    and share of (mapped) cold bytes in them; averaged."""
    mapped = IntervalSet.from_ranges(proc.mappings)
    found, misreported = [], []
    for ev in events:
        if ev.time_ns < warmup_ns:
            continue
        hot = IntervalSet.from_ranges(proc.hot_ranges(ev.time_ns))
        reported = ev.nr_accesses > 0
        hot_in = hot.overlap(ev.start, ev.end)
        cold_in = mapped.overlap(ev.start, ev.end) - hot_in
        found.append(hot_in[reported].sum() / hot.total_bytes)
        misreported.append(cold_in[reported].sum() / (mapped.total_bytes - hot.total_bytes))
    return float(np.mean(found)), float(np.mean(misreported))


def test_virtual_runs_are_deterministic():
    def run(seed):
        ctx, world, proc = make_ctx("phases", seed=seed, schemes=[Scheme(
            action=Action.PAGEOUT, pattern=AccessPattern(max_nr_accesses=0, min_age_region=5),
            quota=Quota(sz=32 * MiB, reset_interval_ms=1000))])
        events = record_events(ctx)
        Kdamond(ctx).run(duration_us=4 * SEC_US)
        rows = [(e.time_ns, e.start.tolist(), e.end.tolist(), e.nr_accesses.tolist(),
                 e.age.tolist()) for e in events]
        return rows, proc.paged_out_ranges(), proc.nr_faults, ctx.clock.now_ns()

    first, second = run(0), run(0)
    assert first == second
    assert len(first[0]) >= 30
    assert run(1)[0] != first[0]


def test_hot_set_found_on_hotcold():
    ctx, world, proc = make_ctx("hotcold")
    events = record_events(ctx)
    Kdamond(ctx).run(duration_us=15 * SEC_US)
    assert ctx.clock.now_ns() >= 15 * 10**9
    found, misreported = hot_cold_shares(proc, events)
    assert found >= 0.90
    assert misreported <= 0.05
    assert all(10 <= e.nr_regions <= 1000 for e in events[1:])


def test_huge_target_costs_what_a_small_one_does():
    """A 1 TiB target: same region counts, same sim-side work, no per-page memory."""
    results = {}
    for name in ("hotcold", "huge"):
        ctx, world, proc = make_ctx(name)
        events = record_events(ctx)
        tracemalloc.start()
        Kdamond(ctx).run(duration_us=8 * SEC_US)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        found, misreported = hot_cold_shares(proc, events, warmup_ns=4 * 10**9)
        results[name] = (peak, proc.nr_addrs_checked, proc.max_rate_segments,
                         max(e.nr_regions for e in events), found, misreported)
    small, huge = results["hotcold"], results["huge"]
    # a page bitmap of 1 TiB would be 32 MiB even at one bit per page
    assert huge[0] < 8 * MiB and huge[0] < 2 * small[0] + MiB
    # the sim looked up about as many addresses against as many rate segments
    assert huge[2] == small[2]
    assert 0.5 < huge[1] / small[1] < 2
    assert huge[3] <= 1000
    # and the result is as good
    assert huge[4] >= 0.9 and huge[5] <= 0.05


def test_cold_pageout_within_quota_never_keeps_hot_paged_out():
    quota_sz = 48 * MiB
    scheme = Scheme(action=Action.PAGEOUT,
                    pattern=AccessPattern(max_nr_accesses=0, min_age_region=10),
                    quota=Quota(sz=quota_sz, reset_interval_ms=1000))
    ctx, world, proc = make_ctx("hotcold", schemes=[scheme])
    hot = IntervalSet.from_ranges(proc.hot_ranges(0))
    samples = []

    def after_sampling(c):
        # after every check, all hot memory has been touched, hence is resident
        samples.append((c.clock.now_ns(), proc.paged_out_bytes(),
                        proc.paged_out.overlap_bytes(int(hot.starts[0]), int(hot.ends[0]))))

    ctx.callbacks.after_sampling = after_sampling
    free_before = world.free_mem_rate()
    Kdamond(ctx).run(duration_us=12 * SEC_US)
    elapsed_windows = ctx.clock.now_ns() // 10**9 + 1
    slack = max(int(e - s) for s, e in zip(ctx.targets[0].regions.start,
                                               ctx.targets[0].regions.end, strict=True))
    paged = proc.paged_out_bytes()
    assert 0 < paged <= quota_sz * elapsed_windows + slack
    assert scheme.stats.sz_applied == paged + proc.refault_bytes
    assert scheme.stats.qt_exceeds >= 5  # the quota, not the cold memory, was the limit
    assert all(hot_paged == 0 for _, _, hot_paged in samples)
    assert proc.refault_bytes <= 0.02 * paged  # DAMON's picks were cold
    assert world.free_mem_rate() > free_before
    # the quota held in every window: bytes paged out between two checks 1 s apart
    times = np.array([t for t, _, _ in samples])
    paged_t = np.array([p for _, p, _ in samples])
    for second in range(1, 11):
        lo, hi = np.searchsorted(times, [second * 10**9, (second + 1) * 10**9])
        assert paged_t[hi - 1] - paged_t[lo - 1] <= quota_sz + slack


def test_time_quota_works_in_virtual_time():
    scheme = Scheme(action=Action.PAGEOUT,
                    pattern=AccessPattern(max_nr_accesses=0, min_age_region=5),
                    quota=Quota(ms=10, reset_interval_ms=1000))
    ctx, world, proc = make_ctx("hotcold", schemes=[scheme])
    Kdamond(ctx).run(duration_us=8 * SEC_US)
    # pageout is modeled at 1 GiB/s, so 10 ms per second pages out about 10 MiB per second
    # (the first window uses the kernel's initial throughput guess, 4 MiB/ms)
    assert 0 < proc.paged_out_bytes() <= 40 * MiB + 8 * 12 * MiB
    assert scheme.quota_state.total_charged_ns > 0


def test_stat_only_counts():
    scheme = Scheme(action=Action.STAT, pattern=AccessPattern(max_nr_accesses=0))
    ctx, world, proc = make_ctx("hotcold", schemes=[scheme])
    Kdamond(ctx).run(duration_us=3 * SEC_US)
    assert scheme.stats.nr_tried > 0 and scheme.stats.sz_tried > 0
    assert scheme.stats.sz_applied == 0
    assert proc.paged_out_bytes() == 0 and proc.action_bytes == {}


def test_watermarks_follow_simulated_free_memory():
    # 4 GiB machine, nothing used but our processes
    physical = Workload.from_dict({
        "layout": [{"name": "ram", "start": "0x100000", "size": "4GiB"}],
        "populated": [],
    })
    world = SimWorld(seed=0, total_memory="4GiB", physical=physical)
    assert world.free_mem_rate() == 1000
    # page out cold memory only while free memory is below 60 %, until it is above 70 %
    scheme = Scheme(action=Action.PAGEOUT,
                    pattern=AccessPattern(max_nr_accesses=0, min_age_region=3),
                    wmarks=Watermarks(WatermarkMetric.FREE_MEM_RATE, interval_us=100_000,
                                      high=700, mid=600, low=10))
    ctx, world, proc = make_ctx("hotcold", schemes=[scheme], world=world)
    assert 700 < world.free_mem_rate()  # one hotcold process: ~72 % free
    samples_before = []
    ctx.callbacks.after_sampling = lambda c: samples_before.append(c.clock.now_ns()) and False
    Kdamond(ctx).run(duration_us=2 * SEC_US)
    assert not scheme.activated and scheme.stats.nr_tried == 0
    assert samples_before == []  # monitoring itself was paused
    # a second process takes memory: free drops below mid, the scheme activates and
    # pages out cold memory until free memory is above high again, then stops
    world.spawn("hotcold")
    assert world.free_mem_rate() < 600
    Kdamond(ctx).run(duration_us=10 * SEC_US)
    assert scheme.stats.sz_applied > 0 and proc.paged_out_bytes() > 0
    assert world.free_mem_rate() > 700 and not scheme.activated
    frozen = proc.paged_out_bytes()
    Kdamond(ctx).run(duration_us=2 * SEC_US)
    assert proc.paged_out_bytes() == frozen


def test_target_exit_stops_kdamond():
    ctx, world, proc = make_ctx("hotcold")
    stop_at = 2 * 10**9

    def after_aggregation(c):
        if c.clock.now_ns() >= stop_at:
            proc.exit()

    ctx.callbacks.after_aggregation = after_aggregation
    kd = Kdamond(ctx)
    kd.run(duration_us=30 * SEC_US)
    assert not kd.running
    assert stop_at <= ctx.clock.now_ns() < stop_at + 200_000_000


def test_paddr_finds_hot_physical_memory():
    ctx, world, proc = make_ctx("hotcold", mode="paddr")
    phys = world.physical
    events = record_events(ctx)
    Kdamond(ctx).run(duration_us=10 * SEC_US)
    hot = IntervalSet.from_ranges(phys.hot_ranges(0))
    shares = []
    for ev in events[-20:]:
        reported = ev.nr_accesses > 0
        shares.append(hot.overlap(ev.start, ev.end)[reported].sum() / hot.total_bytes)
    assert np.mean(shares) >= 0.9
    assert ev.start[0] >= phys.biggest_system_ram()[0]


def test_fvaddr_monitors_only_user_regions():
    world = SimWorld(seed=0)
    pid = world.spawn("hotcold")
    proc = world.process(pid)
    hot_s, hot_e = proc.hot_ranges(0)[0]
    target = Target(pid=pid, init_regions=[(hot_s - 64 * MiB, hot_e + 64 * MiB)])
    ctx = Context(SimOps(world, mode="fvaddr"), targets=[target], clock=VirtualClock(), seed=0)
    events = record_events(ctx)
    Kdamond(ctx).run(duration_us=3 * SEC_US)
    assert events[-1].start[0] == hot_s - 64 * MiB and events[-1].end[-1] == hot_e + 64 * MiB


@pytest.mark.parametrize("workload", ["moving", "phases", "zipf"])
def test_other_builtins_run_and_find_some_hot_memory(workload):
    ctx, world, proc = make_ctx(workload)
    events = record_events(ctx)
    Kdamond(ctx).run(duration_us=8 * SEC_US)
    found, misreported = hot_cold_shares(proc, events)
    assert found > 0.5 and misreported < 0.2


def test_phase_change_faults_paged_out_memory_back_in():
    """Cold memory paged out in one phase is faulted back when the next phase uses it."""
    scheme = Scheme(action=Action.PAGEOUT,
                    pattern=AccessPattern(max_nr_accesses=0, min_age_region=10))
    ctx, world, proc = make_ctx("phases", schemes=[scheme])
    Kdamond(ctx).run(duration_us=9 * SEC_US)  # phase "init": only the first 128 MiB hot
    second_phase_hot = IntervalSet.from_ranges(proc.hot_ranges(15 * 10**9))
    before = sum(proc.paged_out.overlap_bytes(s, e) for s, e in second_phase_hot.ranges())
    assert before > 0 and proc.refault_bytes == 0
    Kdamond(ctx).run(duration_us=3 * SEC_US)  # into phase "compute"
    now = ctx.clock.now_ns()
    assert world.process(proc.pid).workload.phase_index(now) == 1
    hot_now = proc.hot_ranges(now)
    assert all(proc.paged_out.overlap_bytes(s, e) == 0 for s, e in hot_now)
    assert proc.refault_bytes >= before
