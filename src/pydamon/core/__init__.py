"""The DAMON engine: regions, contexts, the kdamond loop and DAMOS.

Knows nothing of files, FUSE or Linux; address spaces come in through an
operations set: the interface is :mod:`pydamon.core.operations`, the
implementations live in :mod:`pydamon.ops`.
"""

from .attrs import MIN_REGION, IntervalsGoal, MonitoringAttrs
from .clock import Clock, RealClock, VirtualClock
from .context import Callbacks, Context
from .damos import (
    DBGFS_ACTIONS,
    AccessPattern,
    Action,
    DamosFilter,
    FilterType,
    Quota,
    QuotaGoal,
    QuotaGoalMetric,
    Scheme,
    SchemeStats,
    TriedRegion,
    WatermarkMetric,
    Watermarks,
)
from .events import AggregatedEvent
from .kdamond import Kdamond, nr_running_kdamonds, start_kdamonds
from .operations import Operations, available_ops, make_ops, register_ops, unregister_ops
from .regions import AddrRange, Region, RegionArray
from .target import Target

__all__ = [
    "MIN_REGION", "IntervalsGoal", "MonitoringAttrs", "Clock", "RealClock", "VirtualClock",
    "Callbacks", "Context", "DBGFS_ACTIONS", "AccessPattern", "Action", "DamosFilter",
    "FilterType", "Quota", "QuotaGoal", "QuotaGoalMetric", "Scheme", "SchemeStats",
    "TriedRegion", "WatermarkMetric", "Watermarks", "AggregatedEvent", "Kdamond",
    "nr_running_kdamonds", "start_kdamonds", "Operations", "available_ops", "make_ops",
    "register_ops", "unregister_ops", "AddrRange", "Region", "RegionArray", "Target",
]
