"""paddr on a real kernel (run inside the guest; see conftest.py)."""

from __future__ import annotations

import numpy as np
from kernel_helpers import run_kdamond

from pydamon.core.attrs import MonitoringAttrs
from pydamon.core.context import Context
from pydamon.core.target import Target
from pydamon.linux import pagemap
from pydamon.ops.paddr import PaddrOps

HUGE = 2 << 20
SAMPLES_PER_AGGR = 10


def huge_page_frames(pid: int, start: int, end: int) -> list[int]:
    """First frame of each 2 MiB huge page of [start, end) of a process."""
    with open(f"/proc/{pid}/pagemap", "rb", buffering=0) as f:
        reader = pagemap.PagemapReader(f.fileno())
        frames = reader.frames(list(range(start, end, HUGE))).tolist()
    return [p for p in frames if p >= 0 and p % 512 == 0]


def test_paddr_default_region_is_the_biggest_system_ram():
    ranges = PaddrOps().default_ranges(Target())
    assert len(ranges) == 1 and ranges[0].end - ranges[0].start >= 1 << 30


def test_paddr_finds_hot_physical_ranges(workloads_1g):
    _, huge = workloads_1g
    hot = huge_page_frames(huge.pid, huge.hot_start, huge.hot_end)[:8]
    cold = huge_page_frames(huge.pid, huge.addr, huge.addr + (128 << 20))[:8]
    assert len(hot) == 8 and len(cold) == 8, "the THP workload has no huge pages"
    ranges = sorted((p << 12, (p << 12) + HUGE) for p in hot + cold)
    attrs = MonitoringAttrs(sample_us=50_000, aggr_us=500_000, update_us=5_000_000,
                            min_nr_regions=16, max_nr_regions=64)
    ctx = Context(PaddrOps(), attrs, [Target(init_regions=ranges)], seed=9)
    snaps = run_kdamond(ctx, 4 * SAMPLES_PER_AGGR)[0]
    last = snaps[-1]
    hot_starts = {p << 12 for p in hot}
    in_hot = np.array([any(a <= s < a + HUGE for a in hot_starts) for s in last.start.tolist()])
    assert last.nr_accesses[in_hot].min() >= SAMPLES_PER_AGGR // 2, last
    assert last.nr_accesses[~in_hot].max() <= 1, last
