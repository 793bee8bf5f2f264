"""DAMOS: patterns, stats, age reset, quotas, prioritization, watermarks, apply interval."""

import numpy as np

import pydamon as damon
from pydamon.core.quota import feed_loop_next_input, set_effective_quota
from pydamon.core.score import cold_scores, hot_scores, min_score_for_quota
from toy_ops import GIB, HOT, MIB, ToyOps, make_ctx

P = 4096
AREA = (0x7F0000000000, 0x7F0040000000)
COLD = damon.AccessPattern(max_nr_accesses=0)


def flat_ctx(ops, schemes, *, seconds=0, attrs=None, init=None):
    init = init or [AREA]
    ctx = make_ctx(ops, schemes=schemes, attrs=attrs,
                   targets=[damon.Target(pid=1, init_regions=init)])
    kd = damon.Kdamond(ctx)
    if seconds:
        kd.run(duration_us=int(seconds * 1e6))
    return ctx, kd


def test_stat_counts_and_applies_nothing():
    ops = ToyOps(hot=[HOT])
    s = damon.Scheme(action=damon.Action.STAT, pattern=COLD)
    ctx, _ = flat_ctx(ops, [s], seconds=3)
    assert s.stats.nr_tried > 0 and s.stats.sz_tried > 0
    assert s.stats.nr_applied == 0 and s.stats.sz_applied == 0
    assert ops.applied == []


def test_pageout_of_cold_regions_counts_tried_and_applied():
    ops = ToyOps(hot=[HOT])
    s = damon.Scheme(action=damon.Action.PAGEOUT, pattern=COLD)
    flat_ctx(ops, [s], seconds=3)
    assert s.stats.nr_applied == s.stats.nr_tried > 0
    assert s.stats.sz_applied == s.stats.sz_tried
    # never applied to the hot range once it was told apart (after warm-up)
    late = ops.applied[len(ops.applied) // 2:]
    assert all(e <= HOT[0] or s_ >= HOT[1] for _, s_, e in late)


def test_age_resets_after_any_action_but_stat():
    for action, expect_reset in ((damon.Action.STAT, False), (damon.Action.COLD, True)):
        ops = ToyOps(hot=[])
        s = damon.Scheme(action=action, pattern=COLD)
        ctx, _ = flat_ctx(ops, [s], seconds=2)
        ages = ctx.targets[0].regions.age
        # 20 aggregations have passed: unchanged regions are old unless an action reset them
        if expect_reset:
            assert ages.max() <= 1
        else:
            assert ages.max() >= 15


def test_access_pattern_ranges_are_inclusive():
    ops = ToyOps(hot=[HOT])
    # regions whose age is exactly within [5, 5]
    s = damon.Scheme(action=damon.Action.STAT,
                     pattern=damon.AccessPattern(min_age_region=5, max_age_region=5))
    ctx = make_ctx(ops, schemes=[s], targets=[damon.Target(pid=1, init_regions=[AREA])])
    seen = []

    def after(c):
        seen.append(int((c.targets[0].regions.age == 5).sum()))

    ctx.callbacks.after_aggregation = after
    damon.Kdamond(ctx).run(duration_us=2_000_000)
    assert any(seen) and s.stats.nr_tried == sum(seen)


def test_size_quota_caps_bytes_per_reset_interval():
    ops = ToyOps(hot=[])
    quota = damon.Quota(sz=16 * MIB, reset_interval_ms=1000)
    s = damon.Scheme(action=damon.Action.PAGEOUT, pattern=COLD, quota=quota)
    ctx, _ = flat_ctx(ops, [s], seconds=10.05)
    # windows open at 0.1 s, 1.1 s, ... 9.1 s: ten windows
    assert s.stats.sz_tried <= 10 * 16 * MIB
    assert s.stats.sz_tried >= 9 * 16 * MIB
    assert s.stats.qt_exceeds >= 8
    # every apply is page aligned and no single window exceeded its quota
    assert all((e - b) % P == 0 for _, b, e in ops.applied)


def test_quota_windows_resume_after_the_last_charged_region():
    ops = ToyOps(hot=[])
    quota = damon.Quota(sz=8 * MIB, reset_interval_ms=100)
    s = damon.Scheme(action=damon.Action.PAGEOUT, pattern=COLD, quota=quota)
    flat_ctx(ops, [s], seconds=1.05)
    starts = [b for _, b, _ in ops.applied]
    # consecutive windows walk forward through the area instead of
    # re-applying to its first 8 MiB every time
    assert len(set(starts)) == len(starts)
    assert starts == sorted(starts)


def test_time_quota_becomes_a_size_quota_from_measured_throughput():
    ops = ToyOps(hot=[], apply_ns_per_byte=1.0)  # 1 GB/s in virtual time
    quota = damon.Quota(ms=10, reset_interval_ms=1000)
    s = damon.Scheme(action=damon.Action.PAGEOUT, pattern=COLD, quota=quota)
    flat_ctx(ops, [s], seconds=5.05)
    # first window: 4 MiB/ms guessed -> 40 MiB; later ~1e6 B/ms -> ~10 MB per window
    # charged time is exactly 1 ns per byte: 1e6 bytes per ms, times 10 ms
    assert s.quota_state.esz == 10_000_000
    assert ops.applied[0][2] - ops.applied[0][1] <= 40 * MIB


def test_effective_quota_is_the_smaller_of_time_and_size():
    s = damon.Scheme(quota=damon.Quota(ms=10, sz=1 * MIB, reset_interval_ms=1000))
    ctx = make_ctx(ToyOps())
    set_effective_quota(ctx, s)
    assert s.quota_state.esz == 1 * MIB
    s.quota.sz = 0
    set_effective_quota(ctx, s)
    assert s.quota_state.esz == 4096 * 1024 * 10


def test_scores_prefer_cold_and_old_for_pageout():
    attrs = damon.MonitoringAttrs()
    q = damon.Quota(weight_nr_accesses=1000, weight_age=1000)
    nr = np.array([0, 0, 10, 20])
    age = np.array([100, 1, 1, 100])
    cold = cold_scores(nr, age, attrs, q)
    hot = hot_scores(nr, age, attrs, q)
    assert cold[0] > cold[1] > cold[2] > cold[3]
    assert np.all(hot + cold == 99)
    assert np.all((0 <= cold) & (cold <= 99))


def test_min_score_fills_the_quota_from_the_top():
    scores = np.array([90, 50, 50, 10])
    sizes = np.array([4, 4, 4, 4]) * MIB
    assert min_score_for_quota(scores, sizes, 4 * MIB) == 90
    assert min_score_for_quota(scores, sizes, 5 * MIB) == 50
    assert min_score_for_quota(scores, sizes, 100 * MIB) == 0


def test_prioritization_pages_out_the_oldest_cold_region_first():
    # two halves, both cold from t=2 s; the second was accessed until then
    half = (AREA[0] + AREA[1]) // 2
    ops = ToyOps(hot=[(half, AREA[1])])
    s = damon.Scheme(action=damon.Action.PAGEOUT, pattern=COLD,
                     quota=damon.Quota(sz=4 * MIB, reset_interval_ms=1000, weight_age=1000))
    ctx = make_ctx(ops, schemes=[s], targets=[damon.Target(pid=1, init_regions=[AREA])])

    def cool_down(c):
        if c.passed_sample_intervals >= 400:
            ops.hot = []

    ctx.callbacks.after_sampling = cool_down
    damon.Kdamond(ctx).run(duration_us=4_000_000)
    late = [(b, e) for _, b, e in ops.applied[-8:]]
    # the never-accessed, older first half goes first within each quota window
    assert late and all(e <= half for b, e in late)


def test_watermarks_activate_with_hysteresis():
    ops = ToyOps(hot=[], free_mem_rate=700)
    wm = damon.Watermarks(metric=damon.WatermarkMetric.FREE_MEM_RATE, interval_us=100_000,
                          high=600, mid=500, low=300)
    s = damon.Scheme(action=damon.Action.STAT, pattern=COLD, wmarks=wm)
    ctx = make_ctx(ops, schemes=[s], targets=[damon.Target(pid=1, init_regions=[AREA])])
    kd = damon.Kdamond(ctx)
    timeline = [(0, 700), (1, 550), (2, 450), (3, 550), (4, 650), (5, 550), (6, 200)]
    states = []
    samples = []
    for _second, rate in timeline:
        ops.free_rate = rate
        before = ctx.passed_sample_intervals
        kd.run(duration_us=1_000_000)
        states.append(s.activated)
        samples.append(ctx.passed_sample_intervals - before)
    # above high: off; 550 between mid and high while off: stays off; below mid: on;
    # 550 while on: stays on (hysteresis); above high: off; back to 550: stays off; below low: off
    assert states == [False, False, True, True, False, False, False]
    # monitoring pauses while every scheme is inactive
    assert samples[0] == 0 and samples[2] > 0


def test_no_scheme_means_no_watermark_pause():
    ops = ToyOps(hot=[], free_mem_rate=999)
    ctx = make_ctx(ops, targets=[damon.Target(pid=1, init_regions=[AREA])])
    damon.Kdamond(ctx).run(duration_us=1_000_000)
    assert ctx.passed_sample_intervals == 200


def test_apply_interval_sets_how_often_a_scheme_runs():
    ops = ToyOps(hot=[])
    every_sample = damon.Scheme(action=damon.Action.STAT, apply_interval_us=5000)
    every_aggr = damon.Scheme(action=damon.Action.STAT)
    every_second = damon.Scheme(action=damon.Action.STAT, apply_interval_us=1_000_000)
    ctx, _ = flat_ctx(ops, [every_sample, every_aggr, every_second], seconds=2)
    n = len(ctx.targets[0].regions)
    assert every_sample.stats.nr_tried >= 390 * 1  # 400 samples, >= 1 region each
    assert every_aggr.stats.nr_tried < every_sample.stats.nr_tried / 10
    assert every_second.stats.nr_tried <= 2 * max(n, 100)


def test_feed_loop():
    assert feed_loop_next_input(20000, 10000) == 20000
    assert feed_loop_next_input(20000, 20000) == 10000
    assert feed_loop_next_input(20000, 5000) == 30000
    assert feed_loop_next_input(20000, 15000) == 10000


def test_user_input_quota_goal_scales_quota():
    ops = ToyOps(hot=[])
    goal = damon.QuotaGoal(metric=damon.QuotaGoalMetric.USER_INPUT, target_value=100,
                           current_value=50)
    s = damon.Scheme(action=damon.Action.PAGEOUT, pattern=COLD,
                     quota=damon.Quota(reset_interval_ms=100, goals=[goal]))
    ctx, kd = flat_ctx(ops, [s], seconds=1)
    # under-achieving (score 5000): the quota grows 1.5x per window from 1 byte
    assert s.quota_state.esz_bp == int(10000 * 1.5**10) - 10
    goal.current_value = 300  # over-achieving by 3x: drop to the minimum
    kd.run(duration_us=300_000)
    assert s.quota_state.esz == 1


def test_core_addr_filter_excludes_a_range_and_splits_at_its_bounds():
    ops = ToyOps(hot=[])
    lo, hi = AREA[0] + 100 * MIB, AREA[0] + 200 * MIB
    f = damon.DamosFilter(type=damon.FilterType.ADDR, matching=True, allow=False,
                          addr_start=lo, addr_end=hi)
    s = damon.Scheme(action=damon.Action.PAGEOUT, pattern=COLD, filters=[f])
    flat_ctx(ops, [s], seconds=2)
    assert ops.applied
    assert all(e <= lo or b >= hi for _, b, e in ops.applied)


def test_target_filter_selects_one_target():
    ops = ToyOps(hot=[])
    f = damon.DamosFilter(type=damon.FilterType.TARGET, matching=True, allow=True, target_idx=1)
    s = damon.Scheme(action=damon.Action.PAGEOUT, pattern=COLD, filters=[f])
    second = (AREA[1] + GIB, AREA[1] + 2 * GIB)
    ctx = make_ctx(ops, schemes=[s], targets=[damon.Target(pid=1, init_regions=[AREA]),
                                              damon.Target(pid=2, init_regions=[second])])
    damon.Kdamond(ctx).run(duration_us=1_000_000)
    assert ops.applied and all(b >= second[0] for _, b, _ in ops.applied)
