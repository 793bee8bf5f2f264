"""``report heatmap``: access frequency over time and address.

The map is a matrix of time bins by address bins; each cell is the access
rate (percent of the samples of an aggregation interval) averaged over the
bytes of the address bin and the snapshots of the time bin. Colours are
scaled to the largest cell, so a map of a record with any access is never
all black (the old damo complaint when a huge cold range dwarfs a hot one).

By default the map covers the "hottest" contiguous address span of the
record (vaddr records hold three far-apart spans; drawing them together
would squeeze each into a few pixels); ``draw_range="all"`` or an explicit
address range overrides it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..cli.units import format_size, format_time_ns
from ..records import Intervals, Record, Snapshot

# black -> dark red -> red -> orange -> yellow -> white: 10 levels in the xterm 256 palette
_PALETTE = (16, 52, 88, 124, 160, 196, 208, 214, 226, 231)


@dataclass
class HeatMap:
    values: np.ndarray  # [time bin, address bin], access rate in percent
    addr_start: int
    addr_end: int
    time_start_ns: int  # relative to the record's first snapshot start
    time_end_ns: int
    target_id: int

    @property
    def max_value(self) -> float:
        return float(self.values.max()) if self.values.size else 0.0


def address_spans(rec: Record, max_snapshots: int = 2000) -> list[tuple[int, int]]:
    """Contiguous address spans covered by the record's regions (a sample of snapshots)."""
    snaps = rec.snapshots
    if not snaps:
        return []
    step = max(1, len(snaps) // max_snapshots)
    starts = np.concatenate([s.start for s in snaps[::step]])
    ends = np.concatenate([s.end for s in snaps[::step]])
    order = np.argsort(starts, kind="stable")
    starts, ends = starts[order], ends[order]
    spans: list[tuple[int, int]] = []
    cur_s, cur_e = int(starts[0]), int(ends[0])
    for s, e in zip(starts[1:].tolist(), ends[1:].tolist(), strict=True):
        if s <= cur_e:
            cur_e = max(cur_e, e)
        else:
            spans.append((cur_s, cur_e))
            cur_s, cur_e = s, e
    spans.append((cur_s, cur_e))
    return spans


def _access_bytes(snap: Snapshot, lo: int, hi: int) -> float:
    s = np.clip(snap.start, lo, hi)
    e = np.clip(snap.end, lo, hi)
    return float(((e - s) * snap.nr_accesses).sum())


def hottest_span(rec: Record) -> tuple[int, int]:
    spans = address_spans(rec)
    if len(spans) <= 1:
        return spans[0] if spans else (0, 0)
    step = max(1, len(rec.snapshots) // 500)
    heat = [sum(_access_bytes(s, lo, hi) for s in rec.snapshots[::step]) for lo, hi in spans]
    if max(heat) <= 0:
        # nothing accessed: show the biggest span
        return max(spans, key=lambda sp: sp[1] - sp[0])
    return spans[int(np.argmax(heat))]


def _row(snap: Snapshot, edges: np.ndarray, max_nr: int) -> np.ndarray:
    """Mean access rate (percent) of each address bin ``[edges[i], edges[i+1])``."""
    n = snap.nr_regions
    if n == 0:
        return np.zeros(len(edges) - 1)
    rate = snap.nr_accesses.astype(np.float64) * 100.0 / max_nr
    rate = np.maximum(rate, 0)
    sizes = (snap.end - snap.start).astype(np.float64)
    before = np.concatenate([[0.0], np.cumsum(sizes * rate)[:-1]])
    # the integral of the rate is piecewise linear: at a region's start it is the
    # sum of the regions before, at its end that plus the region's share
    points = np.empty(2 * n, dtype=np.float64)
    integral = np.empty(2 * n, dtype=np.float64)
    points[0::2] = snap.start
    points[1::2] = snap.end
    integral[0::2] = before
    integral[1::2] = before + sizes * rate
    f = np.interp(edges.astype(np.float64), points, integral)
    widths = np.diff(edges).astype(np.float64)
    return np.diff(f) / np.maximum(widths, 1)


def build_heatmap(rec: Record, *, nr_time_bins: int = 40, nr_addr_bins: int = 80,
                  addr_range: tuple[int, int] | None = None,
                  time_range_ns: tuple[int, int] | None = None,
                  draw_range: str = "hottest") -> HeatMap:
    """The heat map of one record; times in ``time_range_ns`` are relative to its start."""
    if not rec.snapshots:
        raise ValueError(f"target {rec.target_id} has no snapshot to draw")
    intervals = rec.intervals or Intervals()
    base = rec.snapshots[0].start_ns
    if addr_range is None:
        if draw_range == "all":
            spans = address_spans(rec)
            addr_range = (spans[0][0], spans[-1][1])
        else:
            addr_range = hottest_span(rec)
    lo, hi = addr_range
    if hi <= lo:
        raise ValueError(f"empty address range {lo}-{hi}")
    t_lo, t_hi = time_range_ns if time_range_ns else (0, rec.snapshots[-1].end_ns - base)
    snaps = [s for s in rec.snapshots if t_lo < s.end_ns - base and s.start_ns - base < t_hi]
    if not snaps:
        raise ValueError(f"no snapshot in the time range {format_time_ns(t_lo)}.."
                         f"{format_time_ns(t_hi)} (the record spans "
                         f"{format_time_ns(rec.snapshots[-1].end_ns - base)})")
    nr_time_bins = max(1, min(nr_time_bins, len(snaps)))
    nr_addr_bins = max(1, min(nr_addr_bins, (hi - lo) // 4096 or 1))
    edges = np.linspace(lo, hi, nr_addr_bins + 1).round().astype(np.int64)
    values = np.zeros((nr_time_bins, nr_addr_bins))
    counts = np.zeros(nr_time_bins)
    span_ns = max(t_hi - t_lo, 1)
    for s in snaps:
        mid = (max(s.start_ns - base, t_lo) + min(s.end_ns - base, t_hi)) / 2
        b = min(nr_time_bins - 1, int((mid - t_lo) * nr_time_bins / span_ns))
        values[b] += _row(s, edges, intervals.max_nr_accesses)
        counts[b] += 1
    nonempty = counts > 0
    values[nonempty] /= counts[nonempty][:, None]
    # a time bin no snapshot fell in takes its predecessor's row, not black
    for b in range(1, nr_time_bins):
        if not nonempty[b]:
            values[b] = values[b - 1]
    return HeatMap(values, lo, hi, t_lo, t_hi, rec.target_id)


def render_terminal(hm: HeatMap, color: bool = True) -> str:
    """Rows are time (top: oldest), columns address (left: lowest); digits 0-9 are levels."""
    top = hm.max_value
    lines = [f"# target {hm.target_id}  address {hm.addr_start:#x}-{hm.addr_end:#x} "
             f"({format_size(hm.addr_end - hm.addr_start)}, "
             f"{format_size((hm.addr_end - hm.addr_start) / hm.values.shape[1])} per column)",
             f"# time {format_time_ns(hm.time_start_ns)} - {format_time_ns(hm.time_end_ns)} "
             f"({format_time_ns((hm.time_end_ns - hm.time_start_ns) / hm.values.shape[0])} "
             f"per row)  max access rate {top:.1f} %"]
    if top <= 0:
        lines.append("# no access was seen in this range and time; every cell is 0")
    levels = (np.zeros_like(hm.values, dtype=int) if top <= 0
              else np.minimum((hm.values / top * 9.999).astype(int), 9))
    # a cell with any access shows at least level 1, so that rare accesses stay visible
    levels[(hm.values > 0) & (levels == 0)] = 1
    for row in levels:
        if color:
            cells = "".join(f"\x1b[48;5;{_PALETTE[v]}m\x1b[38;5;{244 if v < 6 else 16}m{v}"
                            for v in row.tolist())
            lines.append(cells + "\x1b[0m")
        else:
            lines.append("".join(str(v) for v in row.tolist()))
    lines.append(f"# levels 0-9 scale to the max access rate ({top:.1f} %)")
    return "\n".join(lines) + "\n"


def save_png(maps: Sequence[HeatMap], path: str, title: str = "") -> None:
    """A PNG (matplotlib): x time, y address; colour scaled to each map's own maximum."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(maps), 1, figsize=(9, 4 * len(maps)), squeeze=False)
    for ax, hm in zip(axes[:, 0], maps, strict=True):
        vmax = hm.max_value if hm.max_value > 0 else 1.0
        extent = (hm.time_start_ns / 1e9, hm.time_end_ns / 1e9, 0,
                  (hm.addr_end - hm.addr_start) / (1 << 20))
        img = ax.imshow(hm.values.T, origin="lower", aspect="auto", cmap="inferno",
                        vmin=0, vmax=vmax, extent=extent, interpolation="nearest")
        ax.set_xlabel("time (s)")
        ax.set_ylabel(f"address - {hm.addr_start:#x} (MiB)")
        ax.set_title(title or f"target {hm.target_id}: access rate (% of samples)")
        fig.colorbar(img, ax=ax, label="access rate (%)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
