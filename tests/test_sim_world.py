"""The simulated world: processes, memory state, faults, free memory, interval sets."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pydamon.ops.sim import (
    FIRST_SIM_PID,
    IntervalSet,
    SimWorld,
    Workload,
    access_probability,
    builtin_workload,
    physical_workload_from_iomem,
    workload_from_maps,
)

MiB = 1 << 20
GiB = 1 << 30
PAGE = 4096


# -- interval sets against a brute-force page set ------------------------------------

ops_strategy = st.lists(
    st.tuples(st.sampled_from(["add", "remove"]), st.integers(0, 40), st.integers(0, 12)),
    max_size=30,
)


@settings(max_examples=150, deadline=None)
@given(ops_strategy, st.lists(st.tuples(st.integers(0, 40), st.integers(1, 6)), max_size=6))
def test_interval_set_matches_page_set(ops, pieces):
    iset, pages = IntervalSet(), set()
    for op, start, length in ops:
        s, e = start * PAGE, (start + length) * PAGE
        span = set(range(start, start + length))
        if op == "add":
            assert iset.add(s, e) == len(span - pages) * PAGE
            pages |= span
        else:
            assert iset.remove(s, e) == len(span & pages) * PAGE
            pages -= span
        assert iset.total_bytes == len(pages) * PAGE
        # sorted, disjoint and never touching (always merged)
        assert np.all(iset.starts < iset.ends)
        assert np.all(iset.ends[:-1] < iset.starts[1:])
    probe = np.arange(0, 60, dtype=np.int64) * PAGE + 5
    assert iset.contains(probe).tolist() == [i in pages for i in range(60)]
    assert iset.overlap(np.array([0]), np.array([20 * PAGE]))[0] == len(
        [p for p in pages if p < 20]) * PAGE
    # remove_pieces with sorted disjoint pieces
    cuts, pos = [], 0
    for gap, length in pieces:
        s = pos + gap
        cuts.append((s, s + length))
        pos = s + length
    if cuts:
        starts = np.array([c[0] for c in cuts], dtype=np.int64) * PAGE
        ends = np.array([c[1] for c in cuts], dtype=np.int64) * PAGE
        cut_pages = {p for a, b in cuts for p in range(a, b)}
        assert iset.remove_pieces(starts, ends) == len(cut_pages & pages) * PAGE
        pages -= cut_pages
        assert iset.total_bytes == len(pages) * PAGE
        assert iset.contains(probe).tolist() == [i in pages for i in range(60)]


def test_access_probability():
    p = access_probability(np.array([0.0, np.inf, 100.0]), 5_000_000)
    assert p[0] == 0.0 and p[1] == 1.0
    assert p[2] == pytest.approx(1 - np.exp(-0.5))
    assert access_probability(np.array([np.inf, 3.0]), 0).tolist() == [1.0, 0.0]


# -- processes ------------------------------------------------------------------------


def test_spawn_gives_fake_pids_and_lookup():
    world = SimWorld(seed=1)
    a = world.spawn(builtin_workload("hotcold"))
    b = world.spawn("zipf")
    assert a >= FIRST_SIM_PID and b >= FIRST_SIM_PID and a != b
    assert world.process(b).name == "zipf"
    with pytest.raises(KeyError):
        world.process(12345)
    with pytest.raises(ValueError):
        world.spawn("hotcold", pid=a)


def _real_maps(pid: int) -> list[tuple[int, int]]:
    out = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            if hi < 1 << 63:
                out.append((lo, hi))
    return out


def test_get_or_create_takes_real_layout():
    sleep = shutil.which("sleep")
    if sleep is None:
        pytest.skip("needs the sleep command")
    child = subprocess.Popen([sleep, "30"])
    try:
        # wait for the exec, so that its maps are sleep's, not a copy of ours
        deadline = time.monotonic() + 10
        while os.path.realpath(f"/proc/{child.pid}/exe") != os.path.realpath(sleep):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        # and for the dynamic loader to finish mapping libraries
        real = _real_maps(child.pid)
        while True:
            time.sleep(0.05)
            again = _real_maps(child.pid)
            if again == real:
                break
            assert time.monotonic() < deadline
            real = again
        world = SimWorld()
        proc = world.get_or_create(child.pid)
        assert world.get_or_create(child.pid) is proc
    finally:
        child.kill()
        child.wait()
    assert proc.mappings == real
    hot = proc.hot_ranges(0)
    largest = max(real, key=lambda r: r[1] - r[0])
    assert len(hot) == 1 and largest[0] <= hot[0][0] < hot[0][1] <= largest[1]


def test_get_or_create_falls_back_to_default_workload():
    world = SimWorld()
    pid = FIRST_SIM_PID + 999_999  # no such real process
    assert not os.path.exists(f"/proc/{pid}")
    assert world.get_or_create(pid).name == "hotcold"


def test_workload_from_maps_skips_vsyscall():
    text = (
        "00400000-00452000 r-xp 00000000 08:02 173521 /usr/bin/prog\n"
        "01000000-02000000 rw-p 00000000 00:00 0 [heap]\n"
        "7f0000000000-7f0040000000 rw-p 00000000 00:00 0\n"
        "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0 [vsyscall]\n"
    )
    wl = workload_from_maps(text)
    assert wl is not None and len(wl.layout) == 3
    assert not wl.layout[0].anon and wl.layout[2].anon
    assert workload_from_maps("garbage\n") is None


def test_pageout_refault_and_resident():
    world = SimWorld(seed=0)
    proc = world.process(world.spawn("hotcold"))
    anon = proc.workload.mapping("anon")
    hot_s, hot_e = proc.hot_ranges(0)[0]
    mapped = proc.mapped_bytes()
    assert proc.resident_bytes() == mapped
    # a region spanning an unmapped gap pages out only mapped memory
    heap = proc.workload.mapping("heap")
    assert proc.page_out(heap.start - 8 * MiB, heap.start + MiB) == MiB
    assert proc.page_out(anon.start, anon.start + 512 * MiB) == 512 * MiB
    assert proc.page_out(anon.start, anon.start + 512 * MiB) == 0  # already out
    assert proc.paged_out_bytes() == 513 * MiB
    assert proc.resident_bytes() == mapped - 513 * MiB
    # the hot part is touched every sample: it comes back at the next run, wholly
    proc.advance(0)
    proc.advance(5_000_000)
    assert proc.paged_out_bytes() == 513 * MiB - (hot_e - hot_s)
    assert proc.refault_bytes == hot_e - hot_s and proc.nr_faults == (hot_e - hot_s) // PAGE
    assert proc.paged_out_ranges() == [(heap.start, heap.start + MiB),
                                       (anon.start, hot_s), (hot_e, anon.start + 512 * MiB)]
    # willneed brings pages back
    assert proc.bring_in(anon.start, anon.start + MiB) == MiB
    assert proc.paged_out_bytes() == 512 * MiB - (hot_e - hot_s)


def test_finite_rate_refaults_follow_binomial():
    wl = Workload.from_dict({
        "layout": [{"name": "a", "start": "0x100000", "size": "400MiB"}],
        "patterns": [{"type": "range", "mapping": "a", "rate": 10}],
    })
    world = SimWorld(seed=3)
    proc = world.process(world.spawn(wl))
    proc.page_out(0x100000, 0x100000 + 400 * MiB)
    proc.advance(0)
    proc.advance(100_000_000)  # 0.1 s at 10/s: each page touched with p = 1 - e^-1
    nr_pages = 400 * MiB // PAGE
    expected = nr_pages * (1 - np.exp(-1.0))
    assert abs(proc.nr_faults - expected) < 5 * np.sqrt(nr_pages * 0.25)
    assert len(proc.paged_out) == 1  # kept as one interval, not a page bitmap


def test_sampled_accesses_fault_pages_in():
    world = SimWorld(seed=0)
    proc = world.process(world.spawn("hotcold"))
    hot_s, _ = proc.hot_ranges(0)[0]
    proc.page_out(hot_s, hot_s + MiB)
    accessed = proc.sample_accesses(np.array([hot_s + 5], dtype=np.int64), 0, 5_000_000)
    assert accessed.tolist() == [True]
    assert proc.paged_out_bytes() == MiB - PAGE and proc.nr_faults == 1


def test_exit_frees_memory_and_free_mem_rate():
    world = SimWorld(seed=0, total_memory="4GiB")
    base = world.free_mem_rate()
    used_by_system = world.physical.resident_bytes()
    assert base == (world.total_memory - used_by_system) * 1000 // world.total_memory
    proc = world.process(world.spawn("hotcold"))
    after = world.free_mem_rate()
    assert after == (world.total_memory - used_by_system - proc.mapped_bytes()) * 1000 \
        // world.total_memory
    anon = proc.workload.mapping("anon")
    proc.page_out(anon.start, anon.end)
    assert world.free_mem_rate() > after
    proc.exit()
    assert not proc.alive and proc.resident_bytes() == 0
    assert world.free_mem_rate() == base


def test_physical_memory_layout():
    world = SimWorld(total_memory="2GiB")
    phys = world.physical
    assert world.total_memory == 2 * GiB
    start, end = phys.biggest_system_ram()
    assert end - start > GiB and all(kind == "System RAM" for *_, kind in phys.iomem())
    assert phys.hot_ranges(0) and phys.resident_bytes() < world.total_memory


def test_physical_memory_from_iomem():
    iomem = (
        "00000000-00000fff : Reserved\n"
        "00001000-0009efff : System RAM\n"
        "000a0000-000fffff : Reserved\n"
        "00100000-bffdffff : System RAM\n"
        "  01000000-01e00000 : Kernel code\n"
        "100000000-23fffffff : System RAM\n"
    )
    wl = physical_workload_from_iomem(iomem)
    assert wl is not None
    assert wl.mappings == [(0x1000, 0x9F000), (0x100000, 0xBFFE0000), (0x100000000, 0x240000000)]
    world = SimWorld(physical=wl)
    assert world.total_memory == sum(e - s for s, e in wl.mappings)
    assert world.physical.biggest_system_ram() == (0x100000000, 0x240000000)
    (hot,) = world.physical.hot_ranges(0)
    assert 0x100000000 <= hot[0] < hot[1] <= 0x240000000
    # unprivileged readers see zeros: no usable layout
    assert physical_workload_from_iomem("00000000-00000000 : System RAM\n") is None
