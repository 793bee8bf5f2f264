"""DAMOS prioritization scores (the kernel's damon_hot_score/damon_cold_score), vectorized."""

from __future__ import annotations

import numpy as np

from .attrs import MonitoringAttrs
from .damos import Quota

MAX_SCORE = 99


def hot_scores(
    nr_accesses: np.ndarray, age: np.ndarray, attrs: MonitoringAttrs, quota: Quota
) -> np.ndarray:
    """Hotness in [0, 99] per region from access frequency and age.

    Frequent and old means hot; for idle regions age counts the other way,
    so an old idle region is the coldest.
    """
    max_nr = max(attrs.max_nr_accesses, 1)
    freq_subscore = nr_accesses * 100 // max_nr
    age_in_sec = age * attrs.aggr_us // 1_000_000
    # number of right shifts until zero, i.e. bit length, capped at 32
    age_in_log = np.minimum(_bit_length(age_in_sec), 32)
    age_in_log = np.where(freq_subscore == 0, -age_in_log, age_in_log)
    age_subscore = (age_in_log + 32) * 100 // 32 // 2
    w_freq, w_age = quota.weight_nr_accesses, quota.weight_age
    hotness = w_freq * freq_subscore + w_age * age_subscore
    if w_freq + w_age:
        hotness = hotness // (w_freq + w_age)
    # C integer division truncates toward zero; inputs here are non-negative
    hotness = hotness * MAX_SCORE // 100
    return np.clip(hotness, 0, MAX_SCORE)


def cold_scores(
    nr_accesses: np.ndarray, age: np.ndarray, attrs: MonitoringAttrs, quota: Quota
) -> np.ndarray:
    return MAX_SCORE - hot_scores(nr_accesses, age, attrs, quota)


def _bit_length(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.int64)
    out = np.zeros(x.shape, dtype=np.int64)
    pos = x > 0
    if np.any(pos):
        out[pos] = np.floor(np.log2(x[pos])).astype(np.int64) + 1
    return out


def min_score_for_quota(scores: np.ndarray, sizes: np.ndarray, esz: int) -> int:
    """The score threshold so that the hottest-first regions fill ``esz`` (damos_adjust_quota)."""
    if len(scores) == 0:
        return 0
    hist = np.bincount(scores, weights=sizes.astype(np.float64), minlength=MAX_SCORE + 1)
    max_score = int(scores.max())
    cumulated = 0.0
    score = max_score
    while True:
        cumulated += hist[score]
        if cumulated >= esz or score == 0:
            return score
        score -= 1
