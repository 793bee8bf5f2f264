"""Invariants of the regions under random layouts, accesses and attributes."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pydamon as damon
from pydamon.core.regions import three_regions
from toy_ops import ToyOps

P = 4096


@st.composite
def layouts(draw):
    n = draw(st.integers(3, 8))
    pos = draw(st.integers(1, 1000)) * P
    maps = []
    for _ in range(n):
        size = draw(st.integers(1, 4096)) * P
        maps.append((pos, pos + size))
        pos += size + draw(st.integers(1, 1 << 16)) * P
    return maps


@st.composite
def scenarios(draw):
    maps = draw(layouts())
    lo, hi = maps[0][0], maps[-1][1]
    hot = []
    for _ in range(draw(st.integers(0, 3))):
        a = draw(st.integers(lo, hi))
        b = draw(st.integers(a, min(hi, a + (1 << 30))))
        hot.append((a, b))
    min_nr = draw(st.integers(3, 50))
    max_nr = draw(st.integers(min_nr, 300))
    sample = draw(st.sampled_from([1000, 5000]))
    aggr = sample * draw(st.integers(1, 30))
    return maps, hot, damon.MonitoringAttrs(sample_us=sample, aggr_us=aggr,
                                            update_us=aggr * 5, min_nr_regions=min_nr,
                                            max_nr_regions=max_nr)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.integers(0, 2**32 - 1))
def test_regions_stay_sorted_disjoint_aligned_inside_and_bounded(scenario, seed):
    maps, hot, attrs = scenario
    ops = ToyOps(mappings=maps, hot=hot)
    ctx = damon.Context(ops, attrs, [damon.Target(pid=1)], [damon.Scheme()],
                        clock=damon.VirtualClock(), seed=seed)
    ranges = three_regions(maps)
    problems = []

    def check(c):
        r = c.targets[0].regions
        if not len(r):
            problems.append("no regions")
            return
        if not np.all(r.start < r.end):
            problems.append("empty region")
        if not np.all(r.end[:-1] <= r.start[1:]):
            problems.append("unsorted or overlapping")
        if np.any(r.start % P) or np.any(r.end % P):
            problems.append("unaligned")
        inside = np.zeros(len(r), dtype=bool)
        for x in ranges:
            inside |= (r.start >= x.start) & (r.end <= x.end)
        if not inside.all():
            problems.append("outside the target's ranges")
        if len(r) > max(attrs.max_nr_regions, 3 * attrs.min_nr_regions):
            problems.append(f"{len(r)} regions above max {attrs.max_nr_regions}")
        if np.any(r.nr_accesses > attrs.max_nr_accesses):
            problems.append("nr_accesses above samples per aggregation")

    ctx.callbacks.after_aggregation = check
    damon.Kdamond(ctx).run(nr_samples=40 * (attrs.aggr_us // attrs.sample_us))
    assert not problems, problems[:3]
    # the initial even split leaves at most one short piece per range, and
    # merges never exceed total/min_nr_regions: the count stays near min
    assert len(ctx.targets[0].regions) >= attrs.min_nr_regions - len(ranges)
