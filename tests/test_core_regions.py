"""Region layouts: the vaddr three regions, even init split, damon_set_regions()."""

import numpy as np

from pydamon.core.regions import (
    AddrRange,
    RegionArray,
    init_regions_evenly,
    set_regions,
    split_evenly,
    three_regions,
)
from toy_ops import LAYOUT


def test_three_regions_cut_the_two_biggest_gaps():
    got = three_regions(LAYOUT)
    # biggest gaps: heap end .. 1 GiB area start, and libs end .. stack start
    assert got == [
        AddrRange(0x400000, 0x1400000),
        AddrRange(0x7F0000000000, 0x7F0080400000),
        AddrRange(0x7FFF00000000, 0x7FFF00100000),
    ]


def test_three_regions_aligns_up_to_pages():
    maps = [(0x400100, 0x401000), (0x10000000, 0x10000800), (0x7F0000000010, 0x7F0000001000)]
    got = three_regions(maps)
    assert all(r.start % 4096 == 0 and r.end % 4096 == 0 for r in got)
    assert got[0] == AddrRange(0x401000, 0x401000) or got[0].start == 0x401000


def test_three_regions_needs_two_gaps():
    assert three_regions([(0, 4096)]) is None
    assert three_regions([(0, 4096), (4096, 8192)]) is None
    assert three_regions([(0, 4096), (8192, 12288)]) is None
    assert three_regions([]) is None


def test_split_evenly_last_piece_takes_remainder():
    pieces = split_evenly(0, 10 * 4096 + 100, 3)
    assert [p.size for p in pieces] == [3 * 4096, 3 * 4096, 4 * 4096 + 100]
    assert split_evenly(0, 4096, 4) == [AddrRange(0, 4096)]  # pieces would be empty


def test_init_regions_evenly_respects_min_nr_regions():
    ranges = three_regions(LAYOUT)
    regions = init_regions_evenly(ranges, 10)
    assert len(regions) >= 10 - 3
    assert regions.total_size == sum(r.size for r in ranges)
    assert np.all(regions.start[1:] >= regions.end[:-1])


def test_set_regions_keeps_counters_of_kept_regions_and_fills_holes():
    regions = RegionArray.from_ranges([(0, 4096), (4096, 8192), (16384, 20480), (40960, 45056)])
    regions.nr_accesses[:] = [1, 2, 3, 4]
    regions.age[:] = [5, 6, 7, 8]
    out = set_regions(regions, [AddrRange(1000, 24576)])
    # the region at 40960 is outside every range: dropped
    assert out.start.tolist() == [0, 4096, 8192, 16384]
    assert out.end.tolist() == [4096, 8192, 16384, 24576]
    # kept regions keep counters; the hole filler starts from zero
    assert out.nr_accesses.tolist() == [1, 2, 0, 3]
    assert out.age.tolist() == [5, 6, 0, 7]


def test_set_regions_adds_a_region_for_an_untouched_range():
    regions = RegionArray.from_ranges([(0, 4096)])
    out = set_regions(regions, [AddrRange(0, 4096), AddrRange(10000, 20000)])
    assert out.ranges() == [AddrRange(0, 4096), AddrRange(8192, 20480)]


def test_split_at_keeps_counters_on_both_sides():
    regions = RegionArray.from_ranges([(0, 8 * 4096)])
    regions.nr_accesses[:] = 7
    regions.age[:] = 3
    regions.split_at(0, 3 * 4096)
    assert regions.ranges() == [AddrRange(0, 3 * 4096), AddrRange(3 * 4096, 8 * 4096)]
    assert regions.nr_accesses.tolist() == [7, 7]
    assert regions.age.tolist() == [3, 3]
