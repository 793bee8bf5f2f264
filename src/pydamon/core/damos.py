"""DAMOS: DAMON-based Operation Schemes (what to do to which memory, and how much).

These are the parameters a user gives plus the runtime state the kdamond
keeps per scheme (quota charging, watermark activation, stats). The rules
that use them live in :mod:`pydamon.core.schemes_apply`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from ..errors import einval
from .attrs import UINT_MAX, ULONG_MAX


class KeywordEnum(enum.Enum):
    """An enum whose values are the keywords the sysfs files take."""

    @classmethod
    def parse(cls, keyword: str):
        """The member for ``keyword`` (trailing whitespace allowed), else EINVAL."""
        try:
            return cls(keyword.strip())
        except ValueError:
            raise einval(f"unknown {cls.__name__} keyword {keyword!r}") from None


class Action(KeywordEnum):
    """DAMOS actions, in the kernel's enum order; values are the sysfs keywords."""

    WILLNEED = "willneed"
    COLD = "cold"
    PAGEOUT = "pageout"
    HUGEPAGE = "hugepage"
    NOHUGEPAGE = "nohugepage"
    LRU_PRIO = "lru_prio"
    LRU_DEPRIO = "lru_deprio"
    MIGRATE_HOT = "migrate_hot"
    MIGRATE_COLD = "migrate_cold"
    STAT = "stat"


# The debugfs ``schemes`` file numbers only six actions, not in enum order.
DBGFS_ACTIONS: tuple[Action, ...] = (
    Action.WILLNEED,
    Action.COLD,
    Action.PAGEOUT,
    Action.HUGEPAGE,
    Action.NOHUGEPAGE,
    Action.STAT,
)


@dataclass
class AccessPattern:
    """Closed ranges of region size (bytes), nr_accesses (samples) and age (aggregations)."""

    min_sz_region: int = 0
    max_sz_region: int = ULONG_MAX
    min_nr_accesses: int = 0
    max_nr_accesses: int = UINT_MAX
    min_age_region: int = 0
    max_age_region: int = UINT_MAX


class QuotaGoalMetric(KeywordEnum):
    USER_INPUT = "user_input"
    SOME_MEM_PSI_US = "some_mem_psi_us"
    NODE_MEM_USED_BP = "node_mem_used_bp"
    NODE_MEM_FREE_BP = "node_mem_free_bp"


@dataclass
class QuotaGoal:
    metric: QuotaGoalMetric = QuotaGoalMetric.USER_INPUT
    target_value: int = 0
    current_value: int = 0
    nid: int = 0
    # runtime: PSI total seen at the last window, for some_mem_psi_us
    last_psi_total: int = 0


@dataclass
class Quota:
    """Time (ms) and size (bytes) quotas per reset interval, and priority weights.

    Weights are per-mille, as the sysfs files take them.
    """

    ms: int = 0
    sz: int = 0
    reset_interval_ms: int = 0
    weight_sz: int = 0
    weight_nr_accesses: int = 0
    weight_age: int = 0
    goals: list[QuotaGoal] = field(default_factory=list)

    @property
    def enabled(self) -> bool:
        return bool(self.ms or self.sz or self.goals)


class WatermarkMetric(KeywordEnum):
    NONE = "none"
    FREE_MEM_RATE = "free_mem_rate"


@dataclass
class Watermarks:
    """Activate the scheme while the metric is between low and mid, hold until high."""

    metric: WatermarkMetric = WatermarkMetric.NONE
    interval_us: int = 0
    high: int = 0
    mid: int = 0
    low: int = 0


class FilterType(KeywordEnum):
    ANON = "anon"
    ACTIVE = "active"
    MEMCG = "memcg"
    YOUNG = "young"
    HUGEPAGE_SIZE = "hugepage_size"
    UNMAPPED = "unmapped"
    ADDR = "addr"
    TARGET = "target"

    @property
    def handled_by_core(self) -> bool:
        return self in (FilterType.ADDR, FilterType.TARGET)


@dataclass
class DamosFilter:
    """Include or exclude memory of a kind from a scheme's action.

    ``matching``: the filter applies to memory that matches (True) or that
    does not (False). ``allow``: what happens to memory the filter applies to.
    """

    type: FilterType
    matching: bool = True
    allow: bool = False
    addr_start: int = 0
    addr_end: int = 0
    target_idx: int = 0
    memcg_path: str = ""
    sz_min: int = 0
    sz_max: int = 0


@dataclass
class SchemeStats:
    nr_tried: int = 0
    sz_tried: int = 0
    nr_applied: int = 0
    sz_applied: int = 0
    qt_exceeds: int = 0
    sz_ops_filter_passed: int = 0


@dataclass
class TriedRegion:
    start: int
    end: int
    nr_accesses: int
    age: int
    sz_filter_passed: int = 0


@dataclass
class QuotaState:
    """What the kdamond keeps to charge a quota (the kernel's private fields)."""

    esz: int = 0  # effective size quota of this window; 0 means unlimited
    esz_bp: int = 0
    charged_sz: int = 0
    charged_from_ns: int | None = None  # None: no window opened yet
    total_charged_sz: int = 0
    total_charged_ns: int = 0
    charge_target_from: int | None = None  # target index
    charge_addr_from: int = 0
    min_score: int = 0


@dataclass
class Scheme:
    """A DAMOS scheme: pattern, action, quota, watermarks, filters, and its runtime state."""

    pattern: AccessPattern = field(default_factory=AccessPattern)
    action: Action = Action.STAT
    apply_interval_us: int = 0
    quota: Quota = field(default_factory=Quota)
    wmarks: Watermarks = field(default_factory=Watermarks)
    target_nid: int = -1
    filters: list[DamosFilter] = field(default_factory=list)
    # --- runtime state, kept across commits like the kernel keeps it ---
    stats: SchemeStats = field(default_factory=SchemeStats)
    activated: bool = True
    next_apply_sis: int = 0
    quota_state: QuotaState = field(default_factory=QuotaState)
    #: regions of the last completed walk (Kdamond.walk_schemes()), the
    #: kernel's tried_regions
    tried_regions: list[TriedRegion] = field(default_factory=list)

    @property
    def tried_bytes(self) -> int:
        """Total size of :attr:`tried_regions` (the sysfs ``total_bytes``)."""
        return sum(r.end - r.start for r in self.tried_regions)

    @property
    def core_filters(self) -> list[DamosFilter]:
        return [f for f in self.filters if f.type.handled_by_core]

    @property
    def ops_filters(self) -> list[DamosFilter]:
        return [f for f in self.filters if not f.type.handled_by_core]

    def validate(self) -> None:
        """Raise EINVAL for inputs the core rejects (ranges are checked by debugfs only)."""
        if not isinstance(self.action, Action):
            raise einval(f"unknown action {self.action!r}")
        for f in self.filters:
            if f.type is FilterType.ADDR and f.addr_end < f.addr_start:
                raise einval("addr filter end is smaller than its start")

    def commit_from(self, src: Scheme) -> None:
        """Take the user parameters of ``src``, keep the runtime state (damos_commit)."""
        self.pattern = src.pattern
        self.action = src.action
        self.apply_interval_us = src.apply_interval_us
        old_goals = self.quota.goals
        self.quota = Quota(
            ms=src.quota.ms,
            sz=src.quota.sz,
            reset_interval_ms=src.quota.reset_interval_ms,
            weight_sz=src.quota.weight_sz,
            weight_nr_accesses=src.quota.weight_nr_accesses,
            weight_age=src.quota.weight_age,
            goals=_commit_goals(old_goals, src.quota.goals),
        )
        self.wmarks = src.wmarks
        self.target_nid = src.target_nid
        self.filters = list(src.filters)


def _commit_goals(dst: list[QuotaGoal], src: list[QuotaGoal]) -> list[QuotaGoal]:
    out = []
    for i, s in enumerate(src):
        if i < len(dst):
            d = dst[i]
            d.metric = s.metric
            d.target_value = s.target_value
            d.nid = s.nid
            if d.metric is QuotaGoalMetric.USER_INPUT:
                d.current_value = s.current_value
            out.append(d)
        else:
            out.append(
                QuotaGoal(s.metric, s.target_value, s.current_value, s.nid)
            )
    return out
