"""``report access``: the regions of one snapshot, in damo's layout.

One line per region: index, start address, size, access rate (percent of
the samples of an aggregation interval) and age, e.g.
``0   addr 16.052 GiB   size 5.985 GiB   access 0 %   age 5.900 s``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..cli.units import format_size, format_time_ns
from ..records import Intervals, Record, Snapshot

SORT_KEYS = ("address", "access_rate", "age", "size", "temperature")


def access_percent(snap: Snapshot, intervals: Intervals) -> np.ndarray:
    return snap.nr_accesses * 100.0 / intervals.max_nr_accesses


def temperature(snap: Snapshot, intervals: Intervals, weights: tuple[int, int, int] = (0, 100, 100)
                ) -> np.ndarray:
    """Hotness of each region: weighted size, access rate and age; cold regions get colder
    with age (their age counts negatively), hot ones hotter."""
    w_sz, w_acc, w_age = weights
    pct = access_percent(snap, intervals)
    age = snap.age.astype(np.float64)
    signed_age = np.where(snap.nr_accesses > 0, age, -age)
    return w_sz * snap.sizes.astype(np.float64) + w_acc * pct + w_age * signed_age


def sorted_order(snap: Snapshot, intervals: Intervals, key: str, reverse: bool) -> np.ndarray:
    if key == "address":
        keys = snap.start
    elif key == "access_rate":
        keys = snap.nr_accesses
    elif key == "age":
        keys = snap.age
    elif key == "size":
        keys = snap.sizes
    elif key == "temperature":
        keys = temperature(snap, intervals)
    else:
        raise ValueError(f"unknown sort key {key!r}; use one of {', '.join(SORT_KEYS)}")
    order = np.argsort(keys, kind="stable")
    return order[::-1] if reverse else order


def pick_snapshot(rec: Record, index: int | None) -> Snapshot:
    if not rec.snapshots:
        raise IndexError(f"target {rec.target_id} has no snapshot")
    i = len(rec.snapshots) - 1 if index is None else index
    if not -len(rec.snapshots) <= i < len(rec.snapshots):
        raise IndexError(f"snapshot index {index} is out of range "
                         f"(the record has {len(rec.snapshots)} snapshots: 0..{len(rec.snapshots) - 1})")
    return rec.snapshots[i]


def report_access(records: Sequence[Record], *, snapshot_index: int | None = None,
                  sort_by: str = "address", reverse: bool = False,
                  min_access_pct: float = 0.0, raw_numbers: bool = False) -> str:
    lines: list[str] = []
    for rec in records:
        intervals = rec.intervals or Intervals()
        snap = pick_snapshot(rec, snapshot_index)
        base = rec.snapshots[0].start_ns
        lines.append(f"kdamond {rec.kdamond_idx} / context {rec.context_idx} / "
                     f"target id {rec.target_id} / {len(rec.snapshots)} snapshots")
        lines.append(f"snapshot time: [{format_time_ns(snap.start_ns - base)}, "
                     f"{format_time_ns(snap.end_ns - base)}] "
                     f"({format_time_ns(snap.end_ns - snap.start_ns)})")
        if rec.intervals is None:
            lines.append("intervals: unknown (record without intervals); assuming sample 5 ms "
                         "aggr 100 ms")
        else:
            lines.append(f"intervals: sample {format_time_ns(intervals.sample_us * 1000)} "
                         f"aggr {format_time_ns(intervals.aggr_us * 1000)} "
                         f"(max nr_accesses {intervals.max_nr_accesses})")
        pct = access_percent(snap, intervals)
        ages_ns = snap.age * intervals.aggr_us * 1000
        shown = 0
        for i in sorted_order(snap, intervals, sort_by, reverse):
            if pct[i] < min_access_pct:
                continue
            if raw_numbers:
                lines.append(f"{shown:<3} addr {int(snap.start[i])} size {int(snap.sizes[i])} "
                             f"access {int(snap.nr_accesses[i])} samples "
                             f"age {int(snap.age[i])} aggr")
            else:
                lines.append(f"{shown:<3} addr {format_size(int(snap.start[i])):<12} "
                             f"size {format_size(int(snap.sizes[i])):<12} "
                             f"access {pct[i]:>3.0f} %   age {format_time_ns(int(ages_ns[i]))}")
            shown += 1
        wss = int(snap.sizes[snap.nr_accesses > 0].sum())
        lines.append(f"total size: {format_size(snap.total_bytes)}  accessed (working set): "
                     f"{format_size(wss)}  regions: {snap.nr_regions}")
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"
