"""Adaptive regions adjustment: merge similar neighbours, split at random.

The kernel's kdamond_merge_regions() and kdamond_split_regions(), on the
column layout of :class:`RegionArray`. Merging is a sequential scan (each
decision depends on the region merged so far) done on plain lists once per
aggregation; splitting is fully vectorized.
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
    """One merge pass over a target (damon_merge_regions_of()), ages included."""
    update_age(regions, thres)
    n = len(regions)
    if n < 2:
        return regions
    start = regions.start.tolist()
    end = regions.end.tolist()
    nr = regions.nr_accesses.tolist()
    age = regions.age.tolist()
    # keep[i]: region i starts a merged run; out_* hold the merged values
    keep = [0]
    p_start, p_end, p_nr, p_age = start[0], end[0], nr[0], age[0]
    out_end = []
    out_nr = []
    out_age = []
    for i in range(1, n):
        s, e, a_nr = start[i], end[i], nr[i]
        sz_p = p_end - p_start
        sz_r = e - s
        if p_end == s and abs(p_nr - a_nr) <= thres and sz_p + sz_r <= sz_limit:
            tot = sz_p + sz_r
            p_nr = (p_nr * sz_p + a_nr * sz_r) // tot
            p_age = (p_age * sz_p + age[i] * sz_r) // tot
            p_end = e
        else:
            out_end.append(p_end)
            out_nr.append(p_nr)
            out_age.append(p_age)
            keep.append(i)
            p_start, p_end, p_nr, p_age = s, e, a_nr, age[i]
    out_end.append(p_end)
    out_nr.append(p_nr)
    out_age.append(p_age)
    if len(keep) == n:
        return regions
    idx = np.asarray(keep)
    merged = regions.take(idx)
    merged.end = np.asarray(out_end, dtype=np.int64)
    new_nr = np.asarray(out_nr, dtype=np.int64)
    # merged regions get bp from their averaged nr_accesses; untouched ones keep theirs
    was_merged = np.diff(np.append(idx, n)) > 1
    merged.nr_accesses_bp = np.where(was_merged, new_nr * 10000, merged.nr_accesses_bp)
    merged.nr_accesses = new_nr
    merged.age = np.asarray(out_age, dtype=np.int64)
    return merged


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
