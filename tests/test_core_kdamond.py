"""The kdamond: threads, callbacks, events, online commit, vaddr region layout."""

import errno
import threading
import time

import numpy as np
import pytest

import pydamon as damon
from pydamon.core.regions import three_regions
from toy_ops import HOT, LAYOUT, ToyOps, make_ctx

AREA = (0x7F0000000000, 0x7F0040000000)


def real_ctx(ops, **kw):
    attrs = kw.pop("attrs", damon.MonitoringAttrs(sample_us=1000, aggr_us=20_000))
    return damon.Context(ops, attrs, kw.pop("targets", [damon.Target(pid=1)]),
                         kw.pop("schemes", []), seed=1)


def test_thread_start_stop_and_state():
    ctx = real_ctx(ToyOps(mappings=LAYOUT, hot=[HOT]))
    kd = damon.Kdamond(ctx)
    assert not kd.running and kd.pid is None
    kd.start()
    try:
        assert kd.running and kd.pid > 0
        names = [t.name for t in threading.enumerate()]
        assert any(n.startswith("kdamond.") for n in names)
        with pytest.raises(damon.DamonError) as e:
            kd.start()
        assert e.value.errno == errno.EBUSY
        time.sleep(0.1)
    finally:
        kd.stop()
    assert not kd.running
    assert ctx.passed_sample_intervals > 10


def test_several_kdamonds_run_at_once_and_exclusive_ones_exclude():
    kds = [damon.Kdamond(real_ctx(ToyOps(mappings=LAYOUT))) for _ in range(3)]
    for kd in kds:
        kd.start()
    try:
        assert damon.nr_running_kdamonds() >= 3
        excl = damon.Kdamond(real_ctx(ToyOps(mappings=LAYOUT)))
        with pytest.raises(damon.DamonError) as e:
            excl.start(exclusive=True)
        assert e.value.errno == errno.EBUSY
    finally:
        for kd in kds:
            kd.stop()
    excl.start(exclusive=True)
    try:
        other = damon.Kdamond(real_ctx(ToyOps(mappings=LAYOUT)))
        with pytest.raises(damon.DamonError) as e:
            other.start()
        assert e.value.errno == errno.EBUSY
    finally:
        excl.stop()


def test_callbacks_run_and_can_stop():
    ctx = make_ctx(ToyOps(mappings=LAYOUT))
    calls = {"sampling": 0, "aggregation": 0, "terminate": 0}

    def after_sampling(c):
        calls["sampling"] += 1

    def after_aggregation(c):
        calls["aggregation"] += 1
        return calls["aggregation"] == 3  # stop at the third aggregation

    def before_terminate(c):
        calls["terminate"] += 1

    ctx.callbacks.after_sampling = after_sampling
    ctx.callbacks.after_aggregation = after_aggregation
    ctx.callbacks.before_terminate = before_terminate
    damon.Kdamond(ctx).run(duration_us=10_000_000)
    assert calls == {"sampling": 60, "aggregation": 3, "terminate": 1}


def test_aggregated_events_have_every_region_in_address_order():
    ops = ToyOps(mappings=LAYOUT, hot=[HOT])
    ctx = make_ctx(ops)
    events = []
    ctx.add_aggregation_listener(events.append)
    damon.Kdamond(ctx).run(duration_us=3_000_000)
    assert len(events) == 30
    for ev in events:
        assert ev.target_idx == 0 and ev.nr_regions == len(ev.start)
        assert np.all(ev.start[1:] >= ev.end[:-1])
        assert np.all(ev.nr_accesses <= 20)
    last = events[-1]
    hot = (last.start >= HOT[0]) & (last.end <= HOT[1])
    assert hot.any() and np.all(last.nr_accesses[hot] == 20)
    assert events[5].time_ns == 600_000_000


def test_same_seed_same_results():
    def run():
        ctx = make_ctx(ToyOps(mappings=LAYOUT, hot=[HOT]), seed=42)
        rows = []
        ctx.add_aggregation_listener(lambda ev: rows.append(list(ev.rows())))
        damon.Kdamond(ctx).run(duration_us=2_000_000)
        return rows

    assert run() == run()


def test_vaddr_three_regions_init_and_update():
    ops = ToyOps(mappings=list(LAYOUT))
    attrs = damon.MonitoringAttrs(update_us=1_000_000)
    ctx = make_ctx(ops, attrs=attrs)
    kd = damon.Kdamond(ctx)
    kd.run(nr_samples=1)
    ranges = three_regions(LAYOUT)
    r = ctx.targets[0].regions
    assert r.start[0] == ranges[0].start and r.end[-1] == ranges[-1].end
    assert r.total_size == sum(x.size for x in ranges)
    # the process maps 1 GiB more after its last library: the update follows
    ops.mappings.insert(4, (0x7F0100000000, 0x7F0140000000))
    kd.run(duration_us=1_100_000)
    r = ctx.targets[0].regions
    assert r.end.max() == LAYOUT[-1][1]
    covered = ((r.start < 0x7F0140000000) & (r.end > 0x7F0100000000)).any()
    assert covered


def test_user_regions_override_three_regions():
    ops = ToyOps(mappings=LAYOUT)
    ctx = make_ctx(ops, targets=[damon.Target(pid=1, init_regions=[(0x10000, 0x20000)])])
    damon.Kdamond(ctx).run(nr_samples=1)
    assert ctx.targets[0].regions.ranges()[0].start == 0x10000


def test_online_commit_rescales_counters_and_keeps_stats():
    ops = ToyOps(mappings=LAYOUT, hot=[HOT])
    s = damon.Scheme(action=damon.Action.STAT)
    ctx = real_ctx(ops, schemes=[s])
    kd = damon.Kdamond(ctx)
    kd.start()
    try:
        time.sleep(0.3)
        kd.call(lambda c: None)  # sync point
        before_tried = kd.call(lambda c: c.schemes[0].stats.nr_tried)
        assert before_tried > 0
        new_attrs = damon.MonitoringAttrs(sample_us=1000, aggr_us=40_000, min_nr_regions=5,
                                          max_nr_regions=200)
        src = damon.Context(ToyOps(), new_attrs, [damon.Target(pid=1)],
                            [damon.Scheme(action=damon.Action.STAT),
                             damon.Scheme(action=damon.Action.COLD)])
        kd.commit(src)
        state = kd.call(lambda c: (c.attrs.aggr_us, len(c.schemes), c.schemes[0].stats.nr_tried,
                                   c.attrs.max_nr_regions))
        assert state[0] == 40_000 and state[1] == 2 and state[2] >= before_tried
        assert state[3] == 200
        # removing a scheme drops it, the first keeps its stats
        src2 = damon.Context(ToyOps(), new_attrs, [damon.Target(pid=1)],
                             [damon.Scheme(action=damon.Action.STAT)])
        kd.commit(src2)
        assert kd.call(lambda c: len(c.schemes)) == 1
    finally:
        kd.stop()


def test_commit_with_bad_attrs_fails_and_changes_nothing():
    ctx = real_ctx(ToyOps(mappings=LAYOUT))
    kd = damon.Kdamond(ctx)
    kd.start()
    try:
        bad = damon.Context(ToyOps(), damon.MonitoringAttrs(min_nr_regions=1), [damon.Target(pid=1)])
        with pytest.raises(damon.DamonError) as e:
            kd.commit(bad)
        assert e.value.errno == errno.EINVAL
        assert kd.call(lambda c: c.attrs.min_nr_regions) == 10
    finally:
        kd.stop()


def test_rescale_of_counters_on_new_intervals():
    ctx = make_ctx(ToyOps(mappings=LAYOUT, hot=[HOT]))
    kd = damon.Kdamond(ctx)
    kd.run(duration_us=1_000_000)  # ends right after an aggregation reset
    r = ctx.targets[0].regions
    r.nr_accesses[:] = 10  # as if half the samples of a 20-sample window were hits
    r.age[:] = 8
    ctx.next_aggregation_sis = ctx.passed_sample_intervals  # not mid-aggregation
    ctx.set_attrs(damon.MonitoringAttrs(sample_us=5000, aggr_us=200_000))
    # 10/20 of a window is 20/40 of the new window; 8 x 100 ms is 4 x 200 ms
    assert r.nr_accesses.tolist() == [20] * len(r)
    assert r.age.tolist() == [4] * len(r)


def test_walk_schemes_returns_the_regions_each_scheme_is_tried_on():
    ops = ToyOps(mappings=LAYOUT, hot=[HOT])
    hot_only = damon.Scheme(action=damon.Action.STAT,
                            pattern=damon.AccessPattern(min_nr_accesses=1))
    everything = damon.Scheme(action=damon.Action.STAT)
    ctx = real_ctx(ops, schemes=[hot_only, everything])
    kd = damon.Kdamond(ctx)
    kd.start()
    try:
        time.sleep(0.3)
        tried = kd.walk_schemes(timeout=5)
    finally:
        kd.stop()
    assert len(tried) == 2
    assert hot_only.tried_regions == tried[0]
    assert everything.tried_bytes == sum(r.end - r.start for r in tried[1])
    assert tried[0] and all(r.nr_accesses >= 1 for r in tried[0])
    assert any(r.start < HOT[1] and HOT[0] < r.end for r in tried[0])
    total = sum(r.end - r.start for r in tried[1])
    assert total == sum(x.size for x in three_regions(LAYOUT))


def test_walk_without_schemes_returns_at_once():
    kd = damon.Kdamond(real_ctx(ToyOps(mappings=LAYOUT)))
    kd.start()
    try:
        assert kd.walk_schemes(timeout=1) == []
    finally:
        kd.stop()


def test_kdamond_stops_when_every_target_is_gone():
    ops = ToyOps(mappings=LAYOUT)
    ctx = real_ctx(ops)
    kd = damon.Kdamond(ctx)
    kd.start()
    time.sleep(0.05)
    ops.valid = False
    kd.join(timeout=5)
    assert not kd.running
    with pytest.raises(damon.DamonError) as e:
        kd.call(lambda c: None)
    assert e.value.errno == errno.EINVAL


def test_a_crash_in_ops_stops_only_that_kdamond():
    class Broken(ToyOps):
        def check_accesses(self, target, addrs):
            raise RuntimeError("boom")

    kd = damon.Kdamond(real_ctx(Broken(mappings=LAYOUT)))
    kd.start()
    kd.join(timeout=5)
    assert not kd.running and isinstance(kd.error, RuntimeError)


def test_commit_can_switch_the_operations_set():
    first = ToyOps(mappings=LAYOUT)
    second = ToyOps(mappings=LAYOUT, hot=[HOT])
    second.name = "toy2"
    inits = []
    second.init = lambda ctx: inits.append(ctx)
    ctx = real_ctx(first)
    kd = damon.Kdamond(ctx)
    kd.start()
    try:
        time.sleep(0.05)
        kd.commit(damon.Context(second, ctx.attrs, [damon.Target(pid=1)]))
        time.sleep(0.1)
        assert kd.call(lambda c: c.ops) is second
        assert inits and second.nr_check > 0
    finally:
        kd.stop()


class BatchToyOps(ToyOps):
    """ToyOps that can also answer many samples at once."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.batches = []

    def check_accesses_batch(self, target, addrs, t0_ns, t1_ns):
        self.batches.append(addrs.shape)
        out = np.zeros(addrs.shape, dtype=bool)
        for lo, hi in self.hot:
            out |= (addrs >= lo) & (addrs < hi)
        return out


def test_batched_sampling_gives_the_same_counters():
    """With regions aligned to the hot range, sampling addresses do not matter:
    batched and one-by-one runs must agree exactly, events included."""
    hot = (0x7F0010000000, 0x7F0014000000)
    init = [(0x7F0000000000, hot[0]), hot, (hot[1], 0x7F0040000000)]
    attrs = damon.MonitoringAttrs(min_nr_regions=3, max_nr_regions=3)

    def run(ops):
        ctx = make_ctx(ops, attrs=attrs,
                       targets=[damon.Target(pid=1, init_regions=init)],
                       schemes=[damon.Scheme(action=damon.Action.COLD,
                                             pattern=damon.AccessPattern(max_nr_accesses=0),
                                             apply_interval_us=250_000)])
        rows = []
        ctx.add_aggregation_listener(lambda ev: rows.append((ev.time_ns, list(ev.rows()))))
        damon.Kdamond(ctx).run(duration_us=3_000_000)
        r = ctx.targets[0].regions
        return rows, r.nr_accesses_bp.tolist(), ctx.schemes[0].stats, ops.applied

    plain = run(ToyOps(hot=[hot]))
    batch_ops = BatchToyOps(hot=[hot])
    batched = run(batch_ops)
    assert batched == plain
    # batches stop at every aggregation (100 ms) and apply interval (250 ms)
    assert batch_ops.batches and max(k for k, _ in batch_ops.batches) <= 20
    assert batch_ops.nr_check < 60  # the one-by-one path was rarely taken


def test_no_batching_in_a_thread_or_with_after_sampling():
    ops = BatchToyOps(mappings=LAYOUT, hot=[HOT])
    ctx = make_ctx(ops)
    ctx.callbacks.after_sampling = lambda c: None
    damon.Kdamond(ctx).run(duration_us=500_000)
    assert ops.batches == [] and ops.nr_check == 100


def test_stop_event_sleep_wakes_on_set_and_rearms_on_clear():
    """The kdamond's sleep ends when a stop is requested, not a whole interval later."""
    import threading
    import time

    from pydamon.core.clock import RealClock, StopEvent

    ev = StopEvent()
    clock = RealClock()
    t0 = time.monotonic()
    clock.sleep_us(20_000, ev)  # not set: sleeps the whole interval
    assert time.monotonic() - t0 >= 0.019
    threading.Timer(0.05, ev.set).start()
    t0 = time.monotonic()
    clock.sleep_us(30_000_000, ev)  # woken by the set, not 30 s later
    assert ev.is_set() and time.monotonic() - t0 < 10
    t0 = time.monotonic()
    clock.sleep_us(30_000_000, ev)  # still set: returns at once, as often as asked
    clock.sleep_us(30_000_000, ev)
    assert time.monotonic() - t0 < 10
    ev.clear()
    t0 = time.monotonic()
    clock.sleep_us(20_000, ev)  # cleared: sleeps again
    assert not ev.is_set() and time.monotonic() - t0 >= 0.019
    ev.set()
    ev.set()  # a second set is harmless
    assert ev.wait(0)
