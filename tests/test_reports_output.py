"""Reports: access layout and sorting, heat map values and images, wss, nr_regions, raw."""

import numpy as np
import pytest

from pydamon.records import Intervals, Record, Snapshot
from pydamon.reports.access import report_access, temperature
from pydamon.reports.heatmap import (
    address_spans,
    build_heatmap,
    hottest_span,
    render_terminal,
    save_png,
)
from pydamon.reports.raw import report_raw
from pydamon.reports.wss import report_nr_regions, report_wss, wss_series

IV = Intervals(5_000, 100_000, 1_000_000)
MiB = 1 << 20


def record(nr=20, hot_acc=20) -> Record:
    """Three spans far apart; the hot 4 MiB sits in the second one."""
    rec = Record(target_id=0, intervals=IV)
    a, b, c = 0x10000000, 0x7F0000000000, 0x7FFF00000000
    for i in range(nr):
        rec.snapshots.append(Snapshot(
            i * 100_000_000, (i + 1) * 100_000_000,
            np.array([a, b, b + 4 * MiB, c]), np.array([a + 8 * MiB, b + 4 * MiB, b + 64 * MiB,
                                                         c + MiB]),
            np.array([0, hot_acc, 1 if i % 2 else 0, 0]), np.array([i, i, 1, i])))
    return rec


def test_access_layout_and_sort():
    text = report_access([record()])
    lines = text.splitlines()
    assert lines[0].startswith("kdamond 0 / context 0 / target id 0 / 20 snapshots")
    assert lines[1] == "snapshot time: [1.900 s, 2 s] (100 ms)"
    rows = [line for line in lines if line[:1].isdigit()]
    assert rows[0].split()[:7] == ["0", "addr", "256.000", "MiB", "size", "8.000", "MiB"]
    assert "access   0 %" in rows[0] and "age 1.900 s" in rows[0]
    assert "access 100 %" in rows[1]
    assert "access   5 %" in rows[2]  # 1 of 20 samples
    by_access = report_access([record()], sort_by="access_rate", reverse=True).splitlines()
    assert "access 100 %" in [r for r in by_access if r[:1].isdigit()][0]
    by_temp = [r for r in report_access([record()], sort_by="temperature",
                                         reverse=True).splitlines() if r[:1].isdigit()]
    assert "access 100 %" in by_temp[0] and "age 1.900 s" in by_temp[-1]
    raw = report_access([record()], raw_numbers=True, snapshot_index=0)
    assert "addr 268435456 size 8388608 access 0 samples age 0 aggr" in raw
    filtered = [r for r in report_access([record()], min_access_pct=50).splitlines()
                if r[:1].isdigit()]
    assert len(filtered) == 1
    with pytest.raises(IndexError, match="out of range"):
        report_access([record()], snapshot_index=99)


def test_temperature_cold_gets_colder_with_age():
    s = record().snapshots[-1]
    t = temperature(s, IV)
    assert t[1] > t[2] > t[0]  # hot > barely touched young > cold old


def test_heatmap_finds_hot_span_and_is_not_black():
    rec = record()
    assert len(address_spans(rec)) == 3
    lo, hi = hottest_span(rec)
    assert (lo, hi) == (0x7F0000000000, 0x7F0000000000 + 64 * MiB)
    hm = build_heatmap(rec, nr_time_bins=10, nr_addr_bins=16)
    assert hm.values.shape == (10, 16)
    # the first 4 MiB of 64 are the hot bin: 100%; the rest averages 2.5% (1 of 20 samples,
    # every other snapshot)
    assert np.allclose(hm.values[:, 0], 100.0)
    assert np.allclose(hm.values[:, 1:], 2.5)
    text = render_terminal(hm, color=False)
    rows = [line for line in text.splitlines() if not line.startswith("#")]
    assert all(r.startswith("9") and set(r[1:]) == {"1"} for r in rows), rows
    colored = render_terminal(hm, color=True)
    assert "\x1b[48;5;" in colored


def test_heatmap_ranges_and_all():
    rec = record()
    hm = build_heatmap(rec, addr_range=(0x10000000, 0x10000000 + 8 * MiB), nr_addr_bins=8)
    assert hm.max_value == 0
    assert "no access was seen" in render_terminal(hm, color=False)
    hm = build_heatmap(rec, draw_range="all", nr_addr_bins=100)
    assert hm.addr_start == 0x10000000 and hm.addr_end == 0x7FFF00000000 + MiB
    hm = build_heatmap(rec, time_range_ns=(500_000_000, 1_000_000_000), nr_time_bins=100)
    assert hm.values.shape[0] == 5  # 5 snapshots in that half second
    with pytest.raises(ValueError, match="no snapshot in the time range"):
        build_heatmap(rec, time_range_ns=(10_000_000_000, 20_000_000_000))


def test_heatmap_png_is_not_black(tmp_path):
    plt = pytest.importorskip("matplotlib.pyplot")
    path = tmp_path / "heat.png"
    save_png([build_heatmap(record(), nr_time_bins=10, nr_addr_bins=16)], str(path))
    img = plt.imread(path)
    assert img.shape[0] > 100
    rgb = img[..., :3]
    # inferno's bright end is yellow-white: the hot band must be there
    assert (rgb.min(axis=2) > 0.7).sum() > 100


def test_wss_and_nr_regions():
    rec = record()
    series = wss_series(rec)
    assert series[0] == 4 * MiB and series[1] == 64 * MiB
    text = report_wss([rec], raw_numbers=True)
    assert f"# avr:\t{34 * MiB}" in text
    assert f"  0 {4 * MiB:>14}" in text and f"100 {64 * MiB:>14}" in text
    assert "no snapshot" in report_wss([rec], exclude_samples=50)
    ts = report_wss([rec], time_series=True).splitlines()
    assert ts[1] == "# <time> <wss>" and ts[2].split() == ["100", "ms", "4.000", "MiB"]
    assert report_wss([rec], acc_thres=2, raw_numbers=True).count(f"{4 * MiB}") >= 5
    nr = report_nr_regions([rec])
    assert "# avr:\t4" in nr


def test_raw():
    lines = list(report_raw([record(nr=2)]))
    assert lines[0] == "base_time_absolute: 0 ns"
    assert "nr_regions: 4" in lines
    assert "7f0000000000-7f0000400000 (   4.000 MiB)          20     0" in lines
