"""Monitoring attributes: intervals and the bounds on the number of regions."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import einval

# Every region boundary is a multiple of this (the kernel's DAMON_MIN_REGION).
MIN_REGION = 4096
ULONG_MAX = (1 << 64) - 1
UINT_MAX = (1 << 32) - 1


@dataclass
class IntervalsGoal:
    """Goal of the sampling/aggregation intervals auto-tuning (0 aggrs: off)."""

    access_bp: int = 0
    aggrs: int = 0
    min_sample_us: int = 0
    max_sample_us: int = 0


@dataclass
class MonitoringAttrs:
    """The kernel's ``struct damon_attrs``; all intervals in microseconds."""

    sample_us: int = 5_000
    aggr_us: int = 100_000
    update_us: int = 60_000_000
    min_nr_regions: int = 10
    max_nr_regions: int = 1_000
    intervals_goal: IntervalsGoal = field(default_factory=IntervalsGoal)

    @property
    def max_nr_accesses(self) -> int:
        """Samples per aggregation: the largest value nr_accesses can reach."""
        return min(self.aggr_us // (self.sample_us or 1), UINT_MAX)

    @property
    def aggr_samples(self) -> int:
        return self.aggr_us // (self.sample_us or 1)

    def validate(self) -> None:
        """Raise EINVAL where the kernel's damon_set_attrs() would."""
        goal = self.intervals_goal
        if goal.aggrs:
            if goal.min_sample_us > goal.max_sample_us:
                raise einval("intervals goal: min_sample_us > max_sample_us")
            if not goal.min_sample_us <= self.sample_us <= goal.max_sample_us:
                raise einval("sample interval outside the intervals goal range")
        if self.min_nr_regions < 3:
            raise einval("min_nr_regions must be at least 3")
        if self.min_nr_regions > self.max_nr_regions:
            raise einval("min_nr_regions is larger than max_nr_regions")
        if self.sample_us > self.aggr_us:
            raise einval("sampling interval is longer than the aggregation interval")
        for name in ("sample_us", "aggr_us", "update_us"):
            if getattr(self, name) < 0:
                raise einval(f"{name} must not be negative")
