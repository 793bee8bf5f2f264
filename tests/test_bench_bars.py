"""The side-by-side benchmark's bar checks: what it reports as missed is what
issue 3's bars say, judged on rows of made-up measurements."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench_kernel_side_by_side.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_kernel_side_by_side", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def row(bench, pages="THP", size_mib=1024, n=1000, pydamon_cpu_ms=80.0, kernel_cpu_ms=8.0,
        syscalls=0.02, **over):
    """A row that meets every bar unless told otherwise."""
    values = {f.name: 0 for f in dataclasses.fields(bench.Row)}
    values.update(pages=pages, size_mib=size_mib, n=n, pydamon_cpu_ms=pydamon_cpu_ms,
                  kernel_cpu_ms=kernel_cpu_ms, cpu_ratio=pydamon_cpu_ms / kernel_cpu_ms,
                  syscalls_per_region_sample=syscalls, found_bar=True, false_bar=True,
                  syscalls={}, ops={}, kernel_cpu_ms_runs=[], pydamon_cpu_ms_runs=[])
    values.update(over)
    return bench.Row(**values)


def test_size_pairs_are_consecutive_sizes_of_one_page_kind_and_n(bench):
    rows = [row(bench, size_mib=s, n=n) for s in (1024, 4096, 8192) for n in (100, 1000)]
    rows.append(row(bench, pages="4KiB", size_mib=4096, n=100))  # no 1 GiB run to pair with
    pairs = {(a.pages, a.n, a.size_mib, b.size_mib) for a, b in bench.size_pairs(rows)}
    assert pairs == {("THP", n, a, b) for n in (100, 1000)
                     for a, b in ((1024, 4096), (4096, 8192))}


def test_growth_past_1_2x_is_a_missed_bar_that_names_the_kernels_ratio(bench):
    rows = [row(bench, size_mib=1024, pydamon_cpu_ms=80.0, kernel_cpu_ms=8.0),
            row(bench, size_mib=4096, pydamon_cpu_ms=104.0, kernel_cpu_ms=12.0),
            row(bench, size_mib=8192, pydamon_cpu_ms=112.0, kernel_cpu_ms=12.0)]
    fails = bench.check_bars(rows)
    assert len(fails) == 1
    assert "4096 MiB > 1.2x 80.00 ms at 1024 MiB" in fails[0]
    assert "1.50x" in fails[0]  # the kernel's 12/8
    rows[1] = row(bench, size_mib=4096, pydamon_cpu_ms=95.0, kernel_cpu_ms=12.0)
    assert bench.check_bars(rows) == []


def test_cpu_ratio_syscalls_and_accuracy_bars(bench):
    ok = [row(bench, pages="4KiB", size_mib=1024, syscalls=2.4),
          row(bench, pages="THP", size_mib=1024, syscalls=2.9)]
    assert bench.check_bars(ok) == []
    assert any("CPU ratio 36.0 > 35" in f for f in
               bench.check_bars([row(bench, pydamon_cpu_ms=288.0, kernel_cpu_ms=8.0)]))
    # the syscall bars are averages over the rows of a page kind
    two = [row(bench, pages="4KiB", syscalls=2.0), row(bench, pages="4KiB", n=100, syscalls=3.2)]
    assert bench.check_bars(two) == ["4KiB: syscalls per region-sample 2.60 > 2.5"]
    missed = bench.check_bars([row(bench, found_bar=False, false_bar=False)])
    assert len(missed) == 2
    assert "overlap" in missed[0] and "false hot" in missed[1]
