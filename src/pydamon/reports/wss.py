"""``report wss`` and ``report nr_regions``: distributions and time series per target.

The working set size of a snapshot is the total size of its regions that
were accessed at least ``acc_thres`` times (samples) and are at least
``sz_thres`` bytes, as damo computes it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..cli.units import format_size, format_time_ns
from ..records import Record

DEFAULT_PERCENTILES = (0, 25, 50, 75, 100)


def wss_series(rec: Record, acc_thres: int = 1, sz_thres: int = 1) -> np.ndarray:
    out = np.zeros(len(rec.snapshots), dtype=np.int64)
    for i, s in enumerate(rec.snapshots):
        sizes = s.sizes
        out[i] = int(sizes[(s.nr_accesses >= acc_thres) & (sizes >= sz_thres)].sum())
    return out


def nr_regions_series(rec: Record) -> np.ndarray:
    return np.array([s.nr_regions for s in rec.snapshots], dtype=np.int64)


def percentile_values(values: np.ndarray, percentiles: Sequence[int]) -> list[tuple[int, int]]:
    arr = np.sort(values)
    return [(p, int(arr[min(len(arr) - 1, len(arr) * p // 100)])) for p in percentiles]


def _render(records: Sequence[Record], series_fn, title: str, fmt, *, exclude_samples: int,
            percentiles: Sequence[int], time_series: bool) -> str:
    lines = []
    for rec in records:
        values = series_fn(rec)[exclude_samples:]
        lines.append(f"# target_id\t{rec.target_id}")
        if len(values) == 0:
            lines.append(f"# no snapshot (the record has {len(rec.snapshots)}; "
                         f"lower --exclude_samples)")
            continue
        if time_series:
            base = rec.snapshots[0].start_ns
            lines.append(f"# <time> <{title}>")
            for snap, v in zip(rec.snapshots[exclude_samples:], values, strict=True):
                lines.append(f"{format_time_ns(snap.end_ns - base):>12} {fmt(int(v))}")
            continue
        lines.append(f"# <percentile> <{title}>")
        lines.append(f"# avr:\t{fmt(float(values.mean()))}")
        top = max(int(values.max()), 1)
        for p, v in percentile_values(values, percentiles):
            bar = "*" * int(round(v * 50 / top))
            lines.append(f"{p:>3} {fmt(v):>14} |{bar:<50}|")
    return "\n".join(lines) + "\n"


def report_wss(records: Sequence[Record], *, acc_thres: int = 1, sz_thres: int = 1,
               exclude_samples: int = 0, percentiles: Sequence[int] = DEFAULT_PERCENTILES,
               time_series: bool = False, raw_numbers: bool = False) -> str:
    fmt = (lambda v: str(int(v))) if raw_numbers else format_size
    return _render(records, lambda r: wss_series(r, acc_thres, sz_thres), "wss", fmt,
                   exclude_samples=exclude_samples, percentiles=percentiles,
                   time_series=time_series)


def report_nr_regions(records: Sequence[Record], *, exclude_samples: int = 0,
                      percentiles: Sequence[int] = DEFAULT_PERCENTILES,
                      time_series: bool = False) -> str:
    return _render(records, nr_regions_series, "# regions", lambda v: f"{v:.0f}" if isinstance(v, float) else str(v),
                   exclude_samples=exclude_samples, percentiles=percentiles,
                   time_series=time_series)


def plot_series(records: Sequence[Record], path: str, *, what: str = "wss",
                acc_thres: int = 1) -> None:
    """A PNG of the time series (matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    for rec in records:
        base = rec.snapshots[0].start_ns if rec.snapshots else 0
        t = [(s.end_ns - base) / 1e9 for s in rec.snapshots]
        if what == "wss":
            ax.plot(t, wss_series(rec, acc_thres) / (1 << 20), label=f"target {rec.target_id}")
        else:
            ax.plot(t, nr_regions_series(rec), label=f"target {rec.target_id}")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("working set size (MiB)" if what == "wss" else "number of regions")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
