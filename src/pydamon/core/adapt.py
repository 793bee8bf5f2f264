"""Adaptive regions adjustment: merge similar neighbours, split at random.

The kernel's kdamond_merge_regions() and kdamond_split_regions(), on the
column layout of :class:`RegionArray`. Merging is a sequential scan (each
decision depends on the region merged so far) done on plain lists once per
aggregation over the mergeable boundaries only; splitting is fully
vectorized.
"""

from __future__ import annotations

import numpy as np

from .attrs import MIN_REGION
from .regions import RegionArray


def update_age(regions: RegionArray, thres: int) -> None:
    """age++ where nr_accesses stayed within ``thres`` of the last interval, else 0."""
    changed = np.abs(regions.nr_accesses - regions.last_nr_accesses) > thres
    regions.age = np.where(changed, 0, regions.age + 1)


def merge_regions_of(regions: RegionArray, thres: int, sz_limit: int) -> RegionArray:
    """One merge pass over a target (damon_merge_regions_of()), ages included.

    The scan is sequential: whether a region joins the run on its left
    depends on the run's averaged nr_accesses so far. Boundaries that can
    never be merged over (not adjacent, or the two neighbours alone exceed
    the size limit; a run only grows) are found at once with numpy, and
    the Python loop visits only the others.
    """
    update_age(regions, thres)
    n = len(regions)
    if n < 2:
        return regions
    sizes = regions.sizes
    may = np.zeros(n, dtype=bool)
    may[1:] = (regions.end[:-1] == regions.start[1:]) & (sizes[:-1] + sizes[1:] <= sz_limit)
    if not may.any():
        return regions
    nr = regions.nr_accesses.tolist()
    age = regions.age.tolist()
    sz = sizes.tolist()
    merged_runs: dict[int, tuple[int, int, int]] = {}  # run head -> (nr, age, size)
    absorbed: list[int] = []
    head = -1
    p_nr = p_age = p_sz = 0
    prev_i = -2
    for i in np.nonzero(may)[0].tolist():
        if i != prev_i + 1:
            # region i-1 was not a candidate itself: it heads its own run
            head = i - 1
            p_nr, p_age, p_sz = nr[head], age[head], sz[head]
        prev_i = i
        a_nr = nr[i]
        s_r = sz[i]
        tot = p_sz + s_r
        if -thres <= p_nr - a_nr <= thres and tot <= sz_limit:
            p_nr = (p_nr * p_sz + a_nr * s_r) // tot
            p_age = (p_age * p_sz + age[i] * s_r) // tot
            p_sz = tot
            absorbed.append(i)
            merged_runs[head] = (p_nr, p_age, p_sz)
        else:
            head = i
            p_nr, p_age, p_sz = a_nr, age[i], s_r
    if not absorbed:
        return regions
    keep = np.ones(n, dtype=bool)
    keep[absorbed] = False
    idx = np.nonzero(keep)[0]
    out = regions.take(idx)
    heads = np.fromiter(merged_runs.keys(), dtype=np.int64, count=len(merged_runs))
    vals = np.array(list(merged_runs.values()), dtype=np.int64).reshape(-1, 3)
    pos = np.searchsorted(idx, heads)
    out.nr_accesses[pos] = vals[:, 0]
    out.nr_accesses_bp[pos] = vals[:, 0] * 10000  # merged: bp restarts from the average
    out.age[pos] = vals[:, 1]
    out.end[pos] = out.start[pos] + vals[:, 2]
    return out


def split_regions_of(regions: RegionArray, nr_subs: int, rng: np.random.Generator) -> RegionArray:
    """Split every region into up to ``nr_subs`` pieces (damon_split_regions_of()).

    The first cut is at a random 10-90% of the region; a second cut (for 3
    pieces) is made in the left piece, as the kernel does.
    """
    n = len(regions)
    if n == 0 or nr_subs < 2:
        return regions
    sz = regions.sizes
    r1 = rng.integers(1, 10, size=n)
    can1 = sz > 2 * MIN_REGION
    sub1 = (r1 * sz // 10) // MIN_REGION * MIN_REGION
    v1 = can1 & (sub1 > 0) & (sub1 < sz)
    cuts = [regions.start[v1] + sub1[v1]]
    if nr_subs >= 3:
        sz2 = np.where(v1, sub1, sz)
        r2 = rng.integers(1, 10, size=n)
        can2 = sz2 > 2 * MIN_REGION
        sub2 = (r2 * sz2 // 10) // MIN_REGION * MIN_REGION
        v2 = can2 & (sub2 > 0) & (sub2 < sz2)
        cuts.append(regions.start[v2] + sub2[v2])
    new_starts = np.concatenate([regions.start, *cuts])
    if len(new_starts) == n:
        return regions
    new_starts.sort()
    owner = np.searchsorted(regions.start, new_starts, side="right") - 1
    out = regions.take(owner)
    out.start = new_starts
    next_start = np.append(new_starts[1:], 0)
    same_owner = np.append(owner[1:] == owner[:-1], False)
    out.end = np.where(same_owner, next_start, regions.end[owner])
    return out
