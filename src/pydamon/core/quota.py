"""DAMOS quotas and watermarks: how much a scheme may do, and when it is active."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .attrs import ULONG_MAX
from .damos import QuotaGoalMetric, Scheme, WatermarkMetric
from .score import min_score_for_quota

if TYPE_CHECKING:
    from .context import Context

PAGE_SIZE = 4096


def feed_loop_next_input(last_input: int, score: int) -> int:
    """Next input of the proportional feedback loop aiming at score 10000.

    next = last * (1 + (goal - score) / goal), bounded below by 10000 and
    dropping to the minimum once the score is twice the goal.
    """
    goal = 10000
    min_input = 10000
    if score == goal:
        return last_input
    if score >= goal * 2:
        return min_input
    over = score > goal
    diff = score - goal if over else goal - score
    compensation = last_input * diff // goal
    if over:
        return max(last_input - compensation, min_input)
    return min(last_input + compensation, ULONG_MAX)


def goal_score(ctx: Context, scheme: Scheme) -> int:
    """Highest goal achievement (bp of target) among the quota goals: the least aggressive wins."""
    best = 0
    for g in scheme.quota.goals:
        if g.metric is QuotaGoalMetric.SOME_MEM_PSI_US:
            now = ctx.ops.some_mem_psi_total_us()
            g.current_value = now - g.last_psi_total
            g.last_psi_total = now
        elif g.metric in (QuotaGoalMetric.NODE_MEM_USED_BP, QuotaGoalMetric.NODE_MEM_FREE_BP):
            rate = ctx.ops.free_mem_rate()  # per mille of the whole system
            if rate is not None:
                free_bp = rate * 10
                used = g.metric is QuotaGoalMetric.NODE_MEM_USED_BP
                g.current_value = 10000 - free_bp if used else free_bp
        if g.target_value:
            best = max(best, g.current_value * 10000 // g.target_value)
    return best


def set_effective_quota(ctx: Context, scheme: Scheme) -> None:
    q, qs = scheme.quota, scheme.quota_state
    if not q.ms and not q.goals:
        qs.esz = q.sz
        return
    esz = ULONG_MAX
    if q.goals:
        qs.esz_bp = feed_loop_next_input(max(qs.esz_bp, 10000), goal_score(ctx, scheme))
        esz = qs.esz_bp // 10000
    if q.ms:
        if qs.total_charged_ns:
            throughput = qs.total_charged_sz * 1_000_000 // qs.total_charged_ns
        else:
            throughput = PAGE_SIZE * 1024
        esz = min(throughput * q.ms, esz)
    if q.sz and q.sz < esz:
        esz = q.sz
    qs.esz = esz


def adjust_quota(ctx: Context, scheme: Scheme, valid_masks: list[np.ndarray]) -> None:
    """Open a new charge window if due, then set min_score from the score histogram.

    ``valid_masks`` holds, per target, which regions match the access pattern.
    """
    q, qs = scheme.quota, scheme.quota_state
    if not q.enabled:
        return
    now = ctx.clock.now_ns()
    if qs.charged_from_ns is None or now >= qs.charged_from_ns + q.reset_interval_ms * 1_000_000:
        if qs.esz and qs.charged_sz >= qs.esz:
            scheme.stats.qt_exceeds += 1
        qs.total_charged_sz += qs.charged_sz
        qs.charged_from_ns = now
        qs.charged_sz = 0
        set_effective_quota(ctx, scheme)
    scores, sizes = [], []
    for t, mask in zip(ctx.targets, valid_masks, strict=True):
        if not mask.any():
            continue
        r = t.regions
        nr = r.nr_accesses_bp[mask] // 10000
        scores.append(ctx.ops.scheme_scores(ctx, nr, r.age[mask], scheme))
        sizes.append(r.sizes[mask])
    if scores:
        qs.min_score = min_score_for_quota(
            np.concatenate(scores).astype(np.int64), np.concatenate(sizes), qs.esz
        )
    else:
        qs.min_score = 0


def wmark_wait_us(ctx: Context, scheme: Scheme) -> int:
    """0 if the scheme is (now) active, else how long to wait before checking again."""
    w = scheme.wmarks
    if w.metric is WatermarkMetric.NONE:
        return 0
    metric = ctx.ops.free_mem_rate()
    if metric is None:
        return 0
    if metric > w.high or metric < w.low:
        scheme.activated = False
        return w.interval_us
    if w.mid <= metric <= w.high and not scheme.activated:
        return w.interval_us
    scheme.activated = True
    return 0
