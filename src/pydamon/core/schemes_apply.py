"""Applying DAMOS schemes to regions (the kernel's kdamond_apply_schemes()).

Two paths give the same result:
- when no due scheme has a size limit in force or a core filter, no region
  can be split during the walk, so the walk is done scheme by scheme on
  whole columns (the common case: ``stat`` schemes of live reports);
- otherwise the kernel's region-by-region walk is followed exactly, over the
  regions that match at least one due scheme.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .attrs import MIN_REGION
from .damos import Action, DamosFilter, FilterType, Scheme, TriedRegion
from .quota import adjust_quota
from .regions import align_down

if TYPE_CHECKING:
    from .context import Context
    from .target import Target


class WalkControl:
    """A pending damos_walk(): collect tried regions until each scheme applied once."""

    def __init__(self, nr_schemes: int):
        self.completed = [False] * nr_schemes
        self.regions: list[list[TriedRegion]] = [[] for _ in range(nr_schemes)]

    @property
    def done(self) -> bool:
        return all(self.completed)


def pattern_mask(regions, scheme: Scheme) -> np.ndarray:
    p = scheme.pattern
    sz = regions.sizes
    nr = regions.nr_accesses_bp // 10000
    age = regions.age
    return (
        (p.min_sz_region <= sz) & (sz <= p.max_sz_region)
        & (p.min_nr_accesses <= nr) & (nr <= p.max_nr_accesses)
        & (p.min_age_region <= age) & (age <= p.max_age_region)
    )


def _score_mask(ctx: Context, t: Target, mask: np.ndarray, scheme: Scheme) -> np.ndarray:
    """Pattern mask narrowed to regions at or above the quota's min_score."""
    if not scheme.quota_state.esz or not mask.any():
        return mask
    r = t.regions
    idx = np.nonzero(mask)[0]
    scores = ctx.ops.scheme_scores(ctx, r.nr_accesses_bp[idx] // 10000, r.age[idx], scheme)
    out = np.zeros_like(mask)
    out[idx[scores >= scheme.quota_state.min_score]] = True
    return out


def apply_schemes(ctx: Context, walk: WalkControl | None) -> None:
    passed = ctx.passed_sample_intervals
    due = [s for s in ctx.schemes if passed >= s.next_apply_sis and s.activated]
    if not due:
        return
    for s in due:
        if s.quota.enabled:
            adjust_quota(ctx, s, [pattern_mask(t.regions, s) for t in ctx.targets])
    simple = all(
        not s.quota_state.esz and not s.core_filters and s.quota_state.charge_target_from is None
        for s in due
    )
    if simple:
        for s in due:
            _apply_vectorized(ctx, s, walk)
    else:
        for ti, t in enumerate(ctx.targets):
            _apply_exact(ctx, ti, t, due, walk)
    for i, s in enumerate(ctx.schemes):
        if passed < s.next_apply_sis:
            continue
        if walk is not None:
            walk.completed[i] = True
        ctx.set_next_apply_sis(s)


def _index_of(ctx: Context, s: Scheme) -> int:
    for i, x in enumerate(ctx.schemes):
        if x is s:
            return i
    return -1


def _record_walk(walk: WalkControl | None, si: int, t: Target, idx, passed) -> None:
    if walk is None or walk.completed[si]:
        return
    r = t.regions
    out = walk.regions[si]
    for i, sz_passed in zip(np.atleast_1d(idx).tolist(), np.atleast_1d(passed).tolist(), strict=True):
        out.append(
            TriedRegion(int(r.start[i]), int(r.end[i]), int(r.nr_accesses_bp[i] // 10000),
                        int(r.age[i]), int(sz_passed))
        )


def _apply_vectorized(ctx: Context, s: Scheme, walk: WalkControl | None) -> None:
    si = _index_of(ctx, s)
    for t in ctx.targets:
        r = t.regions
        mask = _score_mask(ctx, t, pattern_mask(r, s), s)
        idx = np.nonzero(mask)[0]
        if len(idx) == 0:
            continue
        sizes = r.sizes[idx]
        if s.action is Action.STAT and not s.ops_filters:
            # stat applies nothing: nr_applied/sz_applied stay 0, as in the kernel
            s.stats.nr_tried += len(idx)
            s.stats.sz_tried += int(sizes.sum())
            s.stats.sz_ops_filter_passed += int(sizes.sum())
            _record_walk(walk, si, t, idx, sizes)
            continue
        passed_list = []
        for i, sz in zip(idx.tolist(), sizes.tolist(), strict=True):
            applied, passed = _ops_apply(ctx, t, i, s)
            _update_stat(s, sz, applied, passed)
            passed_list.append(passed)
        if s.action is not Action.STAT:
            r.age[idx] = 0
        _record_walk(walk, si, t, idx, passed_list)


def _ops_apply(ctx: Context, t: Target, i: int, s: Scheme) -> tuple[int, int]:
    r = t.regions
    t0 = ctx.clock.now_ns()
    if s.action is Action.STAT and not s.ops_filters:
        applied, passed = 0, int(r.end[i] - r.start[i])
    else:
        applied, passed = ctx.ops.apply_scheme(ctx, t, int(r.start[i]), int(r.end[i]), s)
    s.quota_state.total_charged_ns += ctx.clock.now_ns() - t0
    return applied, passed


def _update_stat(s: Scheme, sz_tried: int, sz_applied: int, sz_passed: int) -> None:
    st = s.stats
    st.nr_tried += 1
    st.sz_tried += sz_tried
    if sz_applied:
        st.nr_applied += 1
    st.sz_applied += sz_applied
    st.sz_ops_filter_passed += sz_passed


def _apply_exact(ctx: Context, ti: int, t: Target, due: list[Scheme],
                 walk: WalkControl | None) -> None:
    """Region-major walk with quota cuts, charge skipping and core filters."""
    union = np.zeros(len(t.regions), dtype=bool)
    for s in due:
        union |= pattern_mask(t.regions, s)
    if not union.any():
        return
    # Walk by start address; splits insert regions, so positions are re-found.
    starts = t.regions.start[union].tolist()
    for start in starts:
        i = int(np.searchsorted(t.regions.start, start))
        if i >= len(t.regions) or t.regions.start[i] != start:
            continue
        for s in due:
            i = _do_apply_one(ctx, ti, t, i, s, walk)
            if i < 0:
                break


def _do_apply_one(ctx: Context, ti: int, t: Target, i: int, s: Scheme,
                  walk: WalkControl | None) -> int:
    """damon_do_apply_schemes() for one scheme; returns the region index now in play."""
    qs = s.quota_state
    if qs.esz and qs.charged_sz >= qs.esz:
        return i
    i, skip = _skip_charged_region(ti, t, i, s)
    if skip:
        return i
    r = t.regions
    if not _valid_target(ctx, t, i, s):
        return i
    sz = int(r.end[i] - r.start[i])
    applied = passed = 0
    if qs.esz and qs.charged_sz + sz > qs.esz:
        sz = align_down(qs.esz - qs.charged_sz, MIN_REGION)
        if not sz:
            _update_stat(s, 0, 0, 0)
            return i
        r.split_at(i, sz)
    if _core_filters_out(ctx, ti, t, i, s):
        return i
    r = t.regions
    applied, passed = _ops_apply(ctx, t, i, s)
    _record_walk(walk, _index_of(ctx, s), t, i, passed)
    qs.charged_sz += sz
    if qs.esz and qs.charged_sz >= qs.esz:
        qs.charge_target_from = ti
        qs.charge_addr_from = int(t.regions.end[i]) + 1
    if s.action is not Action.STAT:
        t.regions.age[i] = 0
    _update_stat(s, sz, applied, passed)
    return i


def _valid_target(ctx: Context, t: Target, i: int, s: Scheme) -> bool:
    r = t.regions
    one = r.take(np.array([i]))
    if not pattern_mask(one, s)[0]:
        return False
    if not s.quota_state.esz:
        return True
    score = ctx.ops.scheme_scores(ctx, one.nr_accesses_bp // 10000, one.age, s)[0]
    return int(score) >= s.quota_state.min_score


def _skip_charged_region(ti: int, t: Target, i: int, s: Scheme) -> tuple[int, bool]:
    qs = s.quota_state
    if qs.charge_target_from is None:
        return i, False
    if ti != qs.charge_target_from:
        return i, True
    r = t.regions
    if i == len(r) - 1:
        qs.charge_target_from = None
        qs.charge_addr_from = 0
        return i, True
    if qs.charge_addr_from and r.end[i] <= qs.charge_addr_from:
        return i, True
    if qs.charge_addr_from and r.start[i] < qs.charge_addr_from:
        sz_to_skip = align_down(qs.charge_addr_from - int(r.start[i]), MIN_REGION)
        if not sz_to_skip:
            if r.end[i] - r.start[i] <= MIN_REGION:
                return i, True
            sz_to_skip = MIN_REGION
        r.split_at(i, sz_to_skip)
        i += 1
    qs.charge_target_from = None
    qs.charge_addr_from = 0
    return i, False


def _filter_match(ti: int, t: Target, i: int, f: DamosFilter) -> bool:
    r = t.regions
    if f.type is FilterType.TARGET:
        matched = ti == f.target_idx
    elif f.type is FilterType.ADDR:
        start, end = align_down(f.addr_start), align_down(f.addr_end)
        rs, re = int(r.start[i]), int(r.end[i])
        if start <= rs and re <= end:
            matched = True
        elif re <= start or end <= rs:
            matched = False
        elif rs < start:
            r.split_at(i, start - rs)
            matched = False
        else:
            r.split_at(i, end - rs)
            matched = True
    else:
        return False
    return matched == f.matching


def _core_filters_out(ctx: Context, ti: int, t: Target, i: int, s: Scheme) -> bool:
    for f in s.core_filters:
        if _filter_match(ti, t, i, f):
            return not f.allow
    core = s.core_filters
    if not core or s.ops_filters:
        return False
    return core[-1].allow
