"""vaddr and fvaddr on a real kernel (run inside the guest; see conftest.py)."""

from __future__ import annotations

import errno
import os
import time

import numpy as np
import pytest
from kernel_helpers import hot_mask, run_kdamond, start_workload, truth_mask

from pydamon.core.attrs import MonitoringAttrs
from pydamon.core.context import Context
from pydamon.core.kdamond import Kdamond
from pydamon.core.target import Target
from pydamon.errors import DamonError
from pydamon.linux import syscount
from pydamon.ops.block_kinds import HUGE
from pydamon.ops.vaddr import FvaddrOps, VaddrOps

MIB = 1 << 20
# TCG runs code 10-20x slower than hardware: intervals 10x the kernel's defaults
ATTRS = dict(sample_us=50_000, aggr_us=500_000, update_us=5_000_000)
SAMPLES_PER_AGGR = 10


AGGREGATIONS = 5


def found_hot(workload, nr_regions: int = 100, aggregations: int = AGGREGATIONS):
    ops = VaddrOps()
    attrs = MonitoringAttrs(**ATTRS, min_nr_regions=nr_regions, max_nr_regions=nr_regions)
    ctx = Context(ops, attrs, [Target(pid=workload.pid)], seed=3)
    blocks_seen: dict[int, int] = {}
    ctx.callbacks.after_sampling = lambda c: blocks_seen.update(c.targets[0].handle.blocks)
    syscount.reset()
    snaps = run_kdamond(ctx, aggregations * SAMPLES_PER_AGGR)[0]
    hot = hot_mask(snaps, workload.addr, workload.addr + workload.size, SAMPLES_PER_AGGR // 4)
    return hot, truth_mask(workload), blocks_seen, syscount.snapshot()


def assert_found(hot: np.ndarray, truth: np.ndarray) -> None:
    recall = (hot & truth).sum() / truth.sum()
    false_mib = (hot & ~truth).sum() * 4096 / MIB
    assert recall >= 0.8, f"only {recall:.0%} of the hot 64 MiB found"
    # regions are ~10 MiB: the two edge regions may be partly cold
    assert false_mib <= 0.05 * len(truth) * 4096 / MIB, f"{false_mib:.0f} MiB false hot"


def test_vaddr_finds_hot_64m_of_1g_on_4k_pages(workloads_1g):
    small, _ = workloads_1g
    hot, truth, blocks, calls = found_hot(small)
    assert_found(hot, truth)
    lo, hi = small.addr >> 21, (small.addr + small.size) >> 21
    in_buffer = [k for b, k in blocks.items() if lo <= b < hi]
    assert in_buffer and HUGE not in in_buffer  # the buffer is MADV_NOHUGEPAGE
    # pagemap, bitmap read, a share of a bitmap write (+ a first kpageflags per block)
    assert sum(calls.values()) / (AGGREGATIONS * SAMPLES_PER_AGGR * 100) <= 2.6, calls


def test_vaddr_finds_hot_64m_of_1g_on_thp(workloads_1g):
    _, huge = workloads_1g
    hot, truth, blocks, calls = found_hot(huge)
    # were the huge pages seen as such (checked through their heads)? Tail
    # pages would make the whole buffer read as accessed.
    lo, hi = huge.addr >> 21, (huge.addr + huge.size) >> 21
    huge_blocks = [b for b, k in blocks.items() if k == HUGE and lo <= b < hi]
    assert len(huge_blocks) >= 50, blocks
    assert hot.sum() < 0.2 * len(hot), "most of the THP buffer read as hot"
    assert_found(hot, truth)


def test_fvaddr_watches_given_ranges(workloads_1g):
    small, _ = workloads_1g
    hot_range = (small.hot_start, small.hot_end)
    cold_range = (small.addr, small.addr + 64 * MIB)
    attrs = MonitoringAttrs(**{**ATTRS, "update_us": 500_000}, min_nr_regions=4,
                            max_nr_regions=20)
    t = Target(pid=small.pid, init_regions=[cold_range, hot_range])
    ctx = Context(FvaddrOps(), attrs, [t], seed=5)
    snaps = run_kdamond(ctx, 4 * SAMPLES_PER_AGGR)[0]
    last = snaps[-1]
    # regions stay inside the given ranges even across update intervals
    inside = ((last.start >= cold_range[0]) & (last.end <= cold_range[1])) | (
        (last.start >= hot_range[0]) & (last.end <= hot_range[1]))
    assert inside.all()
    hot_sel = last.start >= hot_range[0]
    assert last.nr_accesses[hot_sel].min() >= SAMPLES_PER_AGGR // 2
    assert last.nr_accesses[~hot_sel].max() <= 1


def test_dead_pid_is_einval_at_start():
    w = start_workload(4, 0, 1, thp=False, duration=0)
    w.proc.wait()
    ctx = Context("vaddr", MonitoringAttrs(**ATTRS), [Target(pid=w.pid)])
    with pytest.raises(DamonError) as e:
        Kdamond(ctx).run(nr_samples=1)
    assert e.value.errno == errno.EINVAL and str(w.pid) in str(e.value)


def test_target_exit_stops_the_kdamond_without_leaks():
    fds_before = len(os.listdir("/proc/self/fd"))
    w = start_workload(16, 0, 4, thp=False, duration=4)
    ctx = Context("vaddr", MonitoringAttrs(**ATTRS), [Target(pid=w.pid)])
    kd = Kdamond(ctx)
    kd.start()
    w.proc.wait()
    deadline = time.monotonic() + 60
    while kd.running and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not kd.running, "the kdamond kept running after its only target exited"
    assert kd.error is None
    assert len(os.listdir("/proc/self/fd")) == fds_before
