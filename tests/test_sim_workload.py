"""Workloads as data: parsing, errors, and the exact rates they define."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pydamon.ops.sim import (
    EVERY_SAMPLE,
    Workload,
    WorkloadError,
    builtin_workload,
    list_builtin_workloads,
    load_workload,
    parse_size,
    resolve_workload,
)
from pydamon.ops.sim.workload import RateMap

GiB = 1 << 30
MiB = 1 << 20

LAYOUT = [
    {"name": "text", "start": "0x400000", "size": "2MiB", "kind": "file"},
    {"name": "heap", "gap": "16MiB", "size": "64MiB"},
    {"name": "anon", "start": "0x7f0000000000", "size": "1GiB"},
    {"name": "stack", "start": "0x7ffffe000000", "size": "8MiB"},
]
ANON = 0x7F0000000000


def make(patterns=None, **extra) -> Workload:
    doc = {"layout": LAYOUT, **extra}
    if patterns is not None:
        doc["patterns"] = patterns
    return Workload.from_dict(doc, "test")


def test_parse_size_units():
    assert parse_size(4096) == 4096
    assert parse_size("0x1000") == 4096
    assert parse_size("64MiB") == 64 * MiB
    assert parse_size("1TiB") == 1 << 40
    assert parse_size("2G") == 2 * GiB
    assert parse_size("1.5KiB") == 1536
    with pytest.raises(WorkloadError, match="not a size"):
        parse_size("lots")
    with pytest.raises(WorkloadError, match="negative"):
        parse_size(-1)


def test_builtins_present_and_loadable():
    names = list_builtin_workloads()
    for required in ("hotcold", "moving", "phases", "zipf", "huge"):
        assert required in names
    for name in names:
        wl = builtin_workload(name)
        assert wl.name == name
        # at least two big gaps, so that the three-regions init leaves the holes out
        maps = wl.mappings
        gaps = sorted(b[0] - a[1] for a, b in zip(maps, maps[1:], strict=False))
        assert len(gaps) >= 2 and gaps[-2] >= 64 * MiB


def test_unknown_builtin_lists_names():
    with pytest.raises(WorkloadError, match="hotcold"):
        builtin_workload("nope")


def test_hotcold_truth():
    wl = builtin_workload("hotcold")
    anon = wl.mapping("anon")
    assert anon.size == GiB
    rmap = wl.rate_map(0)
    assert rmap.ranges_above(0.0) == [(anon.start + 256 * MiB, anon.start + 320 * MiB)]
    rates = rmap.rate_at(np.array([anon.start, anon.start + 256 * MiB, anon.start + 320 * MiB - 1,
                                   anon.start + 320 * MiB, 0], dtype=np.int64))
    assert rates.tolist() == [0.0, math.inf, math.inf, 0.0, 0.0]


def test_huge_is_one_tib_with_same_shape():
    huge, small = builtin_workload("huge"), builtin_workload("hotcold")
    assert huge.mapping("anon").size == 1 << 40
    h = huge.rate_map(0).ranges_above(0.0)
    s = small.rate_map(0).ranges_above(0.0)
    assert len(h) == len(s) == 1
    hot_share = (h[0][1] - h[0][0]) / huge.mapping("anon").size
    assert hot_share == (s[0][1] - s[0][0]) / small.mapping("anon").size


def test_overlapping_patterns_add_up_and_every_sample_dominates():
    wl = make([
        {"type": "range", "mapping": "anon", "rate": 10},
        {"type": "range", "mapping": "anon", "offset": "4KiB", "size": "8KiB", "rate": 5},
        {"type": "range", "mapping": "anon", "offset": "8KiB", "size": "8KiB", "rate": "every_sample"},
    ])
    rates = wl.rate_map(0).rate_at(np.array([ANON, ANON + 4096, ANON + 8192, ANON + 16384]))
    assert rates.tolist() == [10.0, 15.0, EVERY_SAMPLE, 10.0]


def test_ratemap_no_float_residue():
    rm = RateMap.from_pieces([(0, 8192, 1 / 3), (4096, 8192, 0.1), (8192, 12288, 7.0)])
    # after every piece ends, the rate is exactly 0, not a tiny residue
    assert rm.rate_at(np.array([12288, 1 << 40])).tolist() == [0.0, 0.0]
    assert rm.ranges_above(0.0) == [(0, 12288)]


def test_moving_window_moves_and_wraps():
    wl = make([{"type": "moving", "mapping": "anon", "window": "64MiB", "speed": "32MiB",
                "rate": "every_sample"}])
    assert wl.rate_map(0).ranges_above(0) == [(ANON, ANON + 64 * MiB)]
    assert wl.rate_map(10 * 10**9).ranges_above(0) == [(ANON + 320 * MiB, ANON + 384 * MiB)]
    # at 31 s the window starts at 992 MiB: 32 MiB at the end, 32 MiB wrapped to the start
    assert wl.rate_map(31 * 10**9).ranges_above(0) == [
        (ANON, ANON + 32 * MiB), (ANON + 992 * MiB, ANON + GiB)]
    # a full lap (32 s) brings it back
    assert wl.rate_map(32 * 10**9).ranges_above(0) == wl.rate_map(0).ranges_above(0)


def test_zipf_rates_are_skewed_and_shuffled_deterministically():
    wl = make([{"type": "zipf", "mapping": "anon", "size": "512MiB", "buckets": 8,
                "exponent": 1.0, "max_rate": 800, "shuffle_seed": 3}])
    step = 64 * MiB
    rates = wl.rate_map(0).rate_at(ANON + np.arange(8, dtype=np.int64) * step)
    assert sorted(rates.tolist(), reverse=True) == [800 / k for k in range(1, 9)]
    assert rates.tolist() != sorted(rates.tolist(), reverse=True)  # shuffled
    again = make([{"type": "zipf", "mapping": "anon", "size": "512MiB", "buckets": 8,
                   "exponent": 1.0, "max_rate": 800, "shuffle_seed": 3}])
    assert again.rate_map(0).rate_at(ANON + np.arange(8) * step).tolist() == rates.tolist()
    assert wl.rate_map(0).rate_at(np.array([ANON + 512 * MiB])).tolist() == [0.0]


def test_phases_cycle():
    wl = make(phases=[
        {"duration_s": 1, "patterns": [{"type": "range", "mapping": "heap", "rate": 1}]},
        {"duration_s": 2, "patterns": [{"type": "range", "mapping": "anon", "rate": 2}]},
    ])
    heap, anon = wl.mapping("heap"), wl.mapping("anon")
    assert wl.rate_map(500_000_000).ranges_above(0) == [(heap.start, heap.end)]
    assert wl.rate_map(1_000_000_000).ranges_above(0) == [(anon.start, anon.end)]
    assert wl.rate_map(3_500_000_000).ranges_above(0) == [(heap.start, heap.end)]
    once = make(repeat=False, phases=[
        {"duration_s": 1, "patterns": [{"type": "range", "mapping": "heap", "rate": 1}]},
        {"duration_s": 2, "patterns": [{"type": "range", "mapping": "anon", "rate": 2}]},
    ])
    assert once.rate_map(100 * 10**9).ranges_above(0) == [(anon.start, anon.end)]


def test_populated_subset():
    wl = make([], populated=[{"mapping": "anon", "size": "1MiB"}])
    assert wl.populated == [(ANON, ANON + MiB)]


def test_load_file_and_resolve(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"layout": LAYOUT, "patterns": [
        {"type": "range", "mapping": "heap", "size": "4MiB", "rate": "every_sample"}]}))
    wl = load_workload(path)
    assert wl.name == "mine"
    assert resolve_workload(str(path)).mappings == wl.mappings
    assert resolve_workload("zipf").name == "zipf"
    with pytest.raises(WorkloadError, match="neither a built-in"):
        resolve_workload(str(tmp_path / "missing.json"))


@pytest.mark.parametrize("doc, message", [
    ({"patterns": []}, "'layout' must be a non-empty list"),
    ({"layout": [{"name": "a", "start": "0x1000"}]}, r"layout\[0\] \(a\): 'size' is missing"),
    ({"layout": [{"name": "a", "start": "0x1001", "size": 4096}]}, "multiples of 4096"),
    ({"layout": [{"name": "a", "start": "0x10000", "size": 4096},
                 {"name": "b", "start": "0x1000", "size": 4096}]}, "sorted and disjoint"),
    ({"layout": [{"name": "a", "size": 4096}, {"name": "a", "size": 4096}]}, "used twice"),
    ({"layout": LAYOUT, "patterns": [{"type": "range", "mapping": "nope", "rate": 1}]},
     "no mapping named 'nope'"),
    ({"layout": LAYOUT, "patterns": [{"type": "range", "mapping": "heap", "size": "1GiB",
                                      "rate": 1}]}, "does not fit in mapping 'heap'"),
    ({"layout": LAYOUT, "patterns": [{"type": "range", "mapping": "heap", "rate": "often"}]},
     "not a rate"),
    ({"layout": LAYOUT, "patterns": [{"type": "spiral", "mapping": "heap"}]},
     "unknown pattern type 'spiral'"),
    ({"layout": LAYOUT, "patterns": [{"type": "moving", "mapping": "heap", "window": "1GiB",
                                      "speed": 1, "rate": 1}]}, "window must be"),
    ({"layout": LAYOUT, "patterns": [], "phases": []}, "either 'patterns' or 'phases'"),
    ({"layout": LAYOUT, "phases": [{"duration_s": -1, "patterns": []}]}, "positive number"),
    ({"layout": LAYOUT, "colour": "red"}, r"unknown key\(s\) \['colour'\]"),
])
def test_invalid_workloads_give_clear_errors(tmp_path, doc, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(WorkloadError, match=message) as info:
        load_workload(path)
    assert str(path) in str(info.value)


def test_invalid_json_and_missing_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"layout": [')
    with pytest.raises(WorkloadError, match="not valid JSON"):
        load_workload(path)
    with pytest.raises(WorkloadError, match="cannot read"):
        load_workload(tmp_path / "absent.json")


piece_strategy = st.lists(
    st.tuples(st.integers(0, 30), st.integers(1, 8),
              st.one_of(st.sampled_from([0.0, 1.0, 2.5, 1 / 3, math.inf]),
                        st.floats(0.001, 1000.0))),
    max_size=10,
)


@settings(max_examples=200, deadline=None)
@given(piece_strategy)
def test_ratemap_equals_sum_of_covering_pieces(pieces):
    abs_pieces = [(s * 4096, (s + n) * 4096, r) for s, n, r in pieces]
    rmap = RateMap.from_pieces(abs_pieces)
    probe = np.arange(0, 42 * 4096, 2048, dtype=np.int64)
    got = rmap.rate_at(probe)
    for addr, rate in zip(probe.tolist(), got.tolist(), strict=True):
        covering = [r for s, e, r in abs_pieces if s <= addr < e]
        if any(math.isinf(r) for r in covering):
            assert math.isinf(rate)
        else:
            assert rate == pytest.approx(sum(covering), rel=1e-12, abs=0)
    # hot ranges are exactly the addresses with a positive rate
    hot = rmap.ranges_above(0.0)
    in_hot = [any(s <= a < e for s, e in hot) for a in probe.tolist()]
    assert in_hot == (got > 0).tolist()
