"""Host tests of the Linux wrappers: parsing and batching over made-up files.

The real kernel paths run in the guest (tests/kernel); here every wrapper
reads ordinary files laid out like the kernel's, so the batching rules
(which entries one call covers, how many calls a sample costs) are checked
exactly.
"""

from __future__ import annotations

import errno
import os
import random
from array import array

import numpy as np
import pytest

from fake_kernel import FakeKernel, write_entries
from pydamon.core.context import Context
from pydamon.core.damos import Action, DamosFilter, FilterType, Scheme
from pydamon.core.regions import RegionArray
from pydamon.core.target import Target
from pydamon.errors import DamonError
from pydamon.linux import batching, caps, page_idle, pagemap, pidfd, procfs, syscount
from pydamon.linux.batching import group_runs
from pydamon.linux.uring import Uring
from pydamon.ops.paddr import PaddrOps
from pydamon.ops.vaddr import FvaddrOps, ProcessHandle, VaddrOps, open_process

MAPS = """\
55d0c0000000-55d0c0021000 r--p 00000000 08:01 131 /usr/bin/python3.11
55d0c0021000-55d0c0300000 r-xp 00021000 08:01 131 /usr/bin/python3.11
55d0c1000000-55d0c1400000 rw-p 00000000 00:00 0 [heap]
7f0000000000-7f0040000000 rw-p 00000000 00:00 0
7f0040000000-7f0040001000 r--p 00000000 08:01 99 /usr/lib/libc.so.6 (deleted)
7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0 [stack]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
"""

IOMEM = """\
00000000-00000fff : Reserved
00001000-0009fbff : System RAM
000a0000-000bffff : PCI Bus 0000:00
00100000-7ffdffff : System RAM
  01000000-01ffffff : Kernel code
  02000000-0fffffff : System RAM
100000000-17fffffff : System RAM
fd000000-fdffffff : PCI Bus 0000:00
"""

MEMINFO = """\
MemTotal:        2000000 kB
MemFree:          500000 kB
MemAvailable:    1500000 kB
"""

STATUS = """\
Name:\tpython3
VmRSS:\t  1048576 kB
VmSwap:\t    65536 kB
Threads:\t1
"""


# -- procfs ---------------------------------------------------------------------------
def test_parse_maps_ranges_and_paths():
    maps = procfs.parse_maps(MAPS)
    assert len(maps) == 7
    assert maps[2].path == "[heap]" and maps[2].perms == "rw-p"
    assert maps[4].path == "/usr/lib/libc.so.6 (deleted)"
    ranges = procfs.maps_ranges(MAPS)
    assert ranges[0] == (0x55D0C0000000, 0x55D0C0021000)
    assert ranges == sorted(ranges)
    # the vsyscall page is no VMA: it must not make the biggest gap
    assert len(ranges) == 6 and ranges[-1][1] == 0x7FFC00021000
    assert procfs.parse_maps("garbage\n\n") == []


def test_biggest_system_ram_skips_nested_and_hidden():
    # the nested "System RAM" line is larger than nothing but is not top level
    assert procfs.biggest_system_ram(IOMEM) == (0x100000000, 0x180000000)
    hidden = "00000000-00000000 : System RAM\n00000000-00000000 : System RAM\n"
    assert procfs.biggest_system_ram(hidden) is None
    assert procfs.biggest_system_ram("00000000-00000fff : Reserved\n") is None


def test_free_mem_rate_is_per_mille():
    assert procfs.free_mem_rate_of(MEMINFO) == 250
    assert procfs.free_mem_rate_of("MemFree: 1 kB\n") is None


def test_status_and_stat_parsing():
    st = procfs.parse_kb_file(STATUS)
    assert st["VmRSS"] == 1048576 and st["VmSwap"] == 65536
    stat = "1234 (kdamond.0 (x) y) S 2 0 0 0 -1 2129984 0 0 0 0 17 42 0 0 20 0 1 0"
    assert procfs.parse_stat_cpu_ticks(stat) == 59


# -- batching -------------------------------------------------------------------------
def test_group_runs_joins_within_gap_and_length():
    assert group_runs([], 3, 10) == []
    assert group_runs([5], 0, 10) == [(5, 1, 0, 1)]
    # 1,2 adjacent; 4 is one unused entry past 2 (gap 1 allowed); 10 too far
    assert group_runs([1, 2, 4, 10], 1, 100) == [(1, 4, 0, 3), (10, 1, 3, 4)]
    assert group_runs([1, 2, 4, 10], 0, 100) == [(1, 2, 0, 2), (4, 1, 2, 3), (10, 1, 3, 4)]
    # the length limit cuts a dense stretch
    assert group_runs(list(range(10)), 0, 4) == [(0, 4, 0, 4), (4, 4, 4, 8), (8, 2, 8, 10)]
    # repeats share their entry; a step backwards starts a new run
    assert group_runs([3, 3, 4, 2], 0, 10) == [(3, 2, 0, 3), (2, 1, 3, 4)]
    with pytest.raises(ValueError):
        group_runs([1], 0, 0)


def test_group_runs_covers_every_key_greedily():
    rng = random.Random(7)
    for _ in range(300):
        keys = sorted(rng.sample(range(5000), rng.randint(1, 200)))
        gap, max_len = rng.randint(0, 20), rng.randint(1, 600)
        runs = group_runs(keys, gap, max_len)
        # the numpy grouping of large batches makes the same runs
        planned = [a.tolist() for a in batching.run_arrays(keys, gap, max_len)]
        assert runs == list(zip(*planned, strict=True))
        assert runs[0][2] == 0 and runs[-1][3] == len(keys)
        for (first, n, i, j), nxt in zip(runs, runs[1:] + [None], strict=True):
            assert first == keys[i] and first + n - 1 == keys[j - 1] and n <= max_len
            assert all(keys[k + 1] - keys[k] <= gap + 1 for k in range(i, j - 1))
            if nxt is not None:
                # greedy: the next key could not have joined this run
                k = keys[j]
                assert k - keys[j - 1] > gap + 1 or k - first >= max_len


# -- fake kernel files (tests/fake_kernel.py) ---------------------------------------------
@pytest.fixture
def ring():
    """An io_uring; the test is skipped where io_uring is refused."""
    r = Uring.open()
    if r is None:
        pytest.skip("io_uring is refused on this machine")
    yield r
    r.close()


@pytest.fixture(params=["sync", "io_uring"])
def io(request):
    """Each batching test runs with one call per read and with io_uring batches."""
    if request.param == "sync":
        return None
    r = request.getfixturevalue("ring")
    r.min_batch = 1  # every batch through the ring, however small
    return r


def assert_calls(io, ops_by_kind: dict[str, int]) -> None:
    """The file operations made, and the system calls they took: one each
    without io_uring, only io_uring_enter with it."""
    assert {k: syscount.ops[k] for k in ops_by_kind} == ops_by_kind
    if io is None:
        assert {k: syscount.counts[k] for k in ops_by_kind} == ops_by_kind
    else:
        assert set(syscount.counts) <= {"io_uring_enter"}


@pytest.mark.parametrize("py_keys", [0, 10_000])
def test_scattered_reads_follow_run_arrays_whichever_path_plans_them(tmp_path, io, py_keys,
                                                                       monkeypatch):
    """Batches planned in plain Python (fewer than PY_KEYS keys) and with numpy
    make the reads run_arrays plans and return the same entries."""
    monkeypatch.setattr(batching, "PY_KEYS", py_keys)
    path = tmp_path / "entries"
    write_entries(path, {i: (i * 2654435761) & ((1 << 64) - 1) for i in range(3000)}, 3000)
    fd = os.open(path, os.O_RDONLY)
    rng = random.Random(3)
    try:
        for _ in range(100):
            keys = [rng.randrange(3100) for _ in range(rng.randrange(1, 150))]
            gap, max_len = rng.randrange(0, 40), rng.randrange(1, 80)
            syscount.reset()
            got = batching.read_scattered(fd, keys, gap, max_len, "x", io=io)
            want = [(k * 2654435761) & ((1 << 64) - 1) if k < 3000 else 0 for k in keys]
            assert got.dtype == np.uint64 and got.tolist() == want
            planned = batching.run_arrays(np.sort(np.array(keys)), gap, max_len)[0]
            assert syscount.ops["x"] == len(planned)
            assert_calls(io, {"x": len(planned)})
    finally:
        os.close(fd)


def test_uring_run_raises_only_untolerated_failures_and_keeps_the_ring_usable(tmp_path, ring):
    from pydamon.linux import uring

    path = tmp_path / "f"
    path.write_bytes(bytes(range(32)))
    wronly = os.open(path, os.O_WRONLY)
    rdonly = os.open(path, os.O_RDONLY)
    try:
        buf, addr = ring.scratch(4)
        args = ([0, 8, 16], [addr, addr + 8, addr + 16], [8, 8, 8])
        # reading a write-only descriptor fails with EBADF, every operation
        with pytest.raises(OSError) as e:
            ring.run(uring.IORING_OP_READ, wronly, *args, tolerate=frozenset())
        assert e.value.errno == errno.EBADF
        ring.run(uring.IORING_OP_READ, wronly, *args, tolerate=frozenset({errno.EBADF}))
        ring.run(uring.IORING_OP_READ, wronly, *args, tolerate=None)
        # the failed batches' completions were consumed: the next batch reads right
        for _ in range(ring.sq_entries // 3 + 2):  # around the ring's end too
            buf[:3] = 0
            ring.run(uring.IORING_OP_READ, rdonly, *args, tolerate=frozenset())
        assert buf[:3].tolist() == [int.from_bytes(bytes(range(i, i + 8)), "little")
                                    for i in (0, 8, 16)]
        assert ring.submit(uring.IORING_OP_READ, rdonly, *args).tolist() == [8, 8, 8]
    finally:
        os.close(wronly)
        os.close(rdonly)


def test_uring_issues_inline_only_the_reads_it_was_told_to(tmp_path, ring):
    from pydamon.linux import uring

    path = tmp_path / "f"
    path.write_bytes(bytes(range(16)))
    fd = os.open(path, os.O_RDWR)
    try:
        ring.issue_inline(uring.IORING_OP_READ, fd)
        buf, addr = ring.scratch(2)

        def flags_of_last_sqe() -> int:
            slot = (ring._sq_tail.value - 1) & ring._sq_mask
            return int(ring._sqes[slot, 0]) >> 8 & 0xFF

        assert ring.submit(uring.IORING_OP_READ, fd, np.array([8]), np.array([addr]),
                           np.array([8])).tolist() == [8]
        assert flags_of_last_sqe() == 0 and buf[0] == int.from_bytes(bytes(range(8, 16)),
                                                                     "little")
        assert ring.submit(uring.IORING_OP_WRITE, fd, np.array([0]), np.array([addr]),
                           np.array([8])).tolist() == [8]
        assert flags_of_last_sqe() == uring.IOSQE_ASYNC
        assert path.read_bytes() == bytes(range(8, 16)) * 2
    finally:
        os.close(fd)


def test_batches_smaller_than_min_batch_are_plain_calls(tmp_path, ring):
    path = tmp_path / "pagemap"
    write_entries(path, {k: pagemap.PM_PRESENT | (100 + k) for k in range(0, 4000, 100)}, 4000)
    fd = os.open(path, os.O_RDONLY)
    try:
        reader = pagemap.PagemapReader(fd, max_gap_pages=0, io=ring)
        ring.min_batch = 5
        syscount.reset()
        assert reader.frames(np.array([100, 300, 500, 700], np.int64) << 12).tolist() == [
            200, 400, 600, 800]
        assert syscount.counts == {"pagemap": 4}  # 4 < 5: one pread each
        syscount.reset()
        pages = np.arange(0, 1000, 100, dtype=np.int64)
        assert reader.frames(pages << 12).tolist() == (pages + 100).tolist()
        assert syscount.ops["pagemap"] == 10 and set(syscount.counts) == {"io_uring_enter"}
    finally:
        os.close(fd)


def test_pagemap_reader_batches_adjacent_pages(tmp_path, io):
    present = pagemap.PM_PRESENT
    entries = {10: present | 1000, 11: present | 1001, 20: present | 7, 40: pagemap.PM_SWAP | 5}
    path = tmp_path / "pagemap"
    write_entries(path, entries, 64)
    fd = os.open(path, os.O_RDONLY)
    try:
        reader = pagemap.PagemapReader(fd, max_gap_pages=8, io=io)
        assert pagemap.DEFAULT_MAX_GAP_PAGES >= 8
        syscount.reset()
        addrs = [10 << 12, (11 << 12) + 123, 20 << 12, 40 << 12, 63 << 12, 500 << 12]
        assert reader.frames(addrs).tolist() == [1000, 1001, 7, -1, -1, -1]
        # 10,11,20 in one read (gap 8), 40, 63, 500 alone: 4 reads; 500 is past the end
        assert_calls(io, {"pagemap": 4})
        reader.max_gap_pages = 0
        syscount.reset()
        # unsorted addresses come back in their order
        assert reader.frames(addrs[::-1]).tolist() == [-1, -1, -1, 7, 1001, 1000]
        assert_calls(io, {"pagemap": 5})
    finally:
        os.close(fd)


def test_pagemap_read_range_reads_bounded_runs_and_zeros_past_the_end(tmp_path):
    present = pagemap.PM_PRESENT
    path = tmp_path / "pagemap"
    write_entries(path, {0: present | 9, 5: present | 10, 99: present | 11}, 100)
    fd = os.open(path, os.O_RDONLY)
    try:
        reader = pagemap.PagemapReader(fd)
        syscount.reset()
        got = reader.read_range(0, 100)
        assert got.dtype == np.uint64 and syscount.counts["pagemap"] == 1
        assert pagemap.frames_of(got[[0, 1, 5, 99]]).tolist() == [9, -1, 10, 11]
        # past the end of the file (the address space): zeros
        got = reader.read_range(90, 300)
        assert len(got) == 300 and pagemap.frames_of(got[9:10])[0] == 11 and not got[10:].any()
        syscount.reset()
        assert not reader.read_range(1 << 20, 2 * pagemap.MAX_RUN_PAGES).any()
        assert syscount.counts["pagemap"] == 2  # one read per MAX_RUN_PAGES entries
    finally:
        os.close(fd)


def split_spans(spans) -> list[tuple[int, np.ndarray]]:
    """(byte offset, words) of each write of page_idle.build_write_spans."""
    offsets, counts, words = spans
    bounds = counts.cumsum().tolist()
    return [(o, words[b - c:b]) for o, c, b in zip(offsets.tolist(), counts.tolist(), bounds,
                                                     strict=True)]


def test_bitmap_write_spans_set_only_sampled_bits():
    pfns = [3, 64 + 5, 64 * 40, 64 * 40 + 63, -1, 3]
    spans = split_spans(page_idle.build_write_spans(pfns, max_gap_words=50))
    assert len(spans) == 1
    offset, words = spans[0]
    assert offset == 0 and len(words) == 41
    assert words[0] == 1 << 3 and words[1] == 1 << 5 and words[40] == (1 << 63) | 1
    assert sum(bin(w).count("1") for w in words.tolist()) == 4
    spans = split_spans(page_idle.build_write_spans(pfns, max_gap_words=0))
    assert [(o, len(w)) for o, w in spans] == [(0, 2), (40 * 8, 1)]
    # a write never exceeds one page of bitmap
    far = [0, 64 * 511, 64 * 512]
    spans = split_spans(page_idle.build_write_spans(far, max_gap_words=10_000))
    assert [len(w) for _, w in spans] == [512, 1]
    assert all(o % 8 == 0 for o, _ in spans)


def test_bitmap_writes_planned_in_python_match_numpy(monkeypatch):
    """A few frames' writes are planned in plain Python: the same writes as numpy's."""
    rng = np.random.default_rng(11)
    for _ in range(200):
        n = int(rng.integers(0, 120))
        pfns = rng.integers(-3, 1 << int(rng.integers(7, 20)), n)
        if n and rng.random() < 0.3:
            pfns[-1] = pfns[0] + 63 - pfns[0] % 64  # bit 63 of a word: a mask above 2**63
        gap = int(rng.integers(0, 60))
        monkeypatch.setattr(batching, "PY_KEYS", 10_000)
        listed = page_idle.build_write_spans(pfns, max_gap_words=gap)
        monkeypatch.setattr(batching, "PY_KEYS", 0)
        vectorized = page_idle.build_write_spans(pfns, max_gap_words=gap)
        for a, b in zip(listed, vectorized, strict=True):
            assert a.dtype == b.dtype and a.tolist() == b.tolist()


def test_frames_left_to_mark_are_the_same_planned_in_python_or_numpy(monkeypatch):
    rng = np.random.default_rng(5)
    for _ in range(100):
        pfns = rng.integers(-2, 1 << int(rng.integers(3, 30)), int(rng.integers(1, 300)))
        drop = np.unique(pfns[rng.random(len(pfns)) < rng.random()])
        drop = drop[drop >= 0]
        want = [p for p in pfns.tolist() if p not in set(drop.tolist())]
        for py_keys in (10_000, 0):
            monkeypatch.setattr(batching, "PY_KEYS", py_keys)
            assert np.asarray(page_idle._without(pfns, drop)).tolist() == want


def test_bitmap_write_budget_splits_at_the_largest_gaps():
    words = [0, 10, 11, 200, 205, 1000, 1003, 3000]
    assert page_idle.gap_for_budget(words, 2, 100) == 2
    # 4 calls: split at the three largest gaps (1996, 794, 188), carry the rest
    gap = page_idle.gap_for_budget(words, 2, 4)
    runs = group_runs(words, gap, 10_000)
    assert len(runs) == 4 and [r[0] for r in runs] == [0, 200, 1000, 3000]
    pfns = [w * 64 for w in words]
    spans = split_spans(page_idle.build_write_spans(pfns, max_gap_words=2, calls_per_frame=0.5))
    assert len(spans) == 4
    spans = split_spans(page_idle.build_write_spans(pfns, max_gap_words=2, calls_per_frame=None))
    assert len(spans) == 6


def test_bitmap_roundtrip_reads_only_needed_words(tmp_path, io):
    path = tmp_path / "bitmap"
    path.write_bytes(bytes(8 * 1024))
    fd = os.open(path, os.O_RDWR)
    try:
        bm = page_idle.IdleBitmap(fd, write_max_gap_words=1000, write_calls_per_frame=None,
                                  io=io)
        pfns = [5, 70, 64 * 100 + 1, 64 * 900 + 2]
        syscount.reset()
        bm.mark_idle(pfns)
        if io is None:
            # words 0..100 fit one page of bitmap, word 900 needs a second write
            assert_calls(io, {"bitmap_write": 2})
        else:
            # with io_uring writes are not system calls: a gap of 98 words costs
            # the kernel more carried than written apart
            assert page_idle.URING_WRITE_MAX_GAP_WORDS < 98
            assert_calls(io, {"bitmap_write": 3})
        # an access clears a frame's idle bit (the kernel does it on the rmap walk)
        raw = array("Q", path.read_bytes())
        raw[1] &= ~(1 << 6)
        path.write_bytes(raw.tobytes())
        syscount.reset()
        idle = bm.read_idle(pfns + [-1])
        assert idle.tolist() == [True, False, True, True, False]
        # words 0, 1 are consecutive: one read; 100 and 900 alone
        assert_calls(io, {"bitmap_read": 3})
    finally:
        os.close(fd)


def test_block_info_finds_heads_and_whole_pmd_folios():
    head, tail = page_idle.KPF_COMPOUND_HEAD, page_idle.KPF_COMPOUND_TAIL
    whole = [head] + [tail] * 511
    assert page_idle.block_info_of(512, whole, 512 + 300) == (512, True)
    assert page_idle.block_info_of(512, whole, 512) == (512, True)
    # four 128-frame folios (mTHP): the head is found, the block is not one folio
    mthp = ([head] + [tail] * 127) * 4
    assert page_idle.block_info_of(0, mthp, 300) == (256, False)
    assert page_idle.block_info_of(0, [tail] * 512, 5) == (None, False)


def test_folio_heads_of_many_windows_at_once_agree_with_a_scan():
    head, tail = page_idle.KPF_COMPOUND_HEAD, page_idle.KPF_COMPOUND_TAIL
    rng = random.Random(7)
    layouts = [[head] + [tail] * 511, ([head] + [tail] * 127) * 4, [0] * 512,
               [0] * 100 + [head] + [tail] * 411]
    starts, rows, pfns = [], [], []
    for _ in range(40):
        starts.append(512 * rng.randrange(1000))
        rows.append(rng.choice(layouts))
        pfns.append(starts[-1] + rng.randrange(512))
    heads, whole = page_idle.folio_heads(np.array(starts), np.array(rows, np.uint64),
                                         np.array(pfns))
    for s0, row, p, h, w in zip(starts, rows, pfns, heads.tolist(), whole.tolist(), strict=True):
        before = [i for i in range(p - s0 + 1) if row[i] & head]
        assert h == (s0 + before[-1] if before else -1)
        assert w == (row is layouts[0])


@pytest.fixture
def fake_vaddr(tmp_path, io):
    k = FakeKernel(tmp_path)
    for v in range(0, 100):
        k.map_small(v, 5000 + 3 * v)
    k.map_huge(512, 1024)  # virtual pages 512..1023 on frames 1024..1535
    pm, _, _ = k.files()
    ops = VaddrOps()
    ops.frames = k.frame_checker(io)
    pm_fd = os.open(pm, os.O_RDONLY)
    own = pidfd.pidfd_open(os.getpid())
    proc_dir = os.open("/proc/self", os.O_RDONLY | os.O_DIRECTORY)
    t = Target(pid=os.getpid())
    t.handle = ProcessHandle(os.getpid(), own, proc_dir, pm_fd,
                             pagemap.PagemapReader(pm_fd, io=io))
    # this test process's faults are not the fake pages': unknown, so kept
    # ABSENT pages are never trusted unless a test counts faults itself
    t.handle.fault_count = lambda: None
    yield k, ops, t
    ops.detach(t)
    ops.frames.close()


def test_vaddr_checks_huge_pages_through_their_head(fake_vaddr):
    k, ops, t = fake_vaddr
    addrs = np.array([(5 << 12) + 17, (600 << 12) + 5, (700 << 12), 300 << 12], np.int64)
    syscount.reset()
    ops.prepare_access_checks(t, addrs)
    # small page checked itself, both huge-page samples through the head frame,
    # the unmapped page not at all
    assert t.handle.check_pfns.tolist() == [5015, 1024, 1024, -1]
    assert (k.bitmap_words()[1024 >> 6] >> (1024 & 63)) & 1  # the head is marked idle
    # discovery: the small frame's own flags, and the huge page's 512-frame
    # window in one read (its frame sits where a PMD-mapped page's would)
    assert syscount.ops["kpageflags"] == 2
    assert ops.check_accesses(t, addrs).tolist() == [False, False, False, False]
    k.touch(1024)
    assert ops.check_accesses(t, addrs).tolist() == [False, True, True, False]
    # the next sample knows both blocks: no kpageflags read, and the huge
    # page is translated through its first page
    syscount.reset()
    ops.prepare_access_checks(t, np.array([(7 << 12), (900 << 12)], np.int64))
    assert t.handle.check_pfns.tolist() == [5021, 1024]
    assert "kpageflags" not in syscount.ops
    assert t.handle.blocks == {0: 0, 1: 1}


def test_vaddr_huge_blocks_are_relearned_with_the_rotation_after_their_ttl(fake_vaddr):
    k, ops, t = fake_vaddr
    ops.verify_every = 2  # samples 0, 2, 4... are the rotation's
    clock = [0]
    ops._now_ns = lambda: clock[0]
    ops.prepare_access_checks(t, np.array([600 << 12], np.int64))
    assert t.handle.blocks == {1: 1}
    clock[0] = int(ops.block_kind_ttl_s * 1e9) + 1
    samples = np.array([600 << 12, 700 << 12], np.int64)
    # stale, but not a rotation's sample: still checked through its head, unread
    syscount.reset()
    ops.prepare_access_checks(t, samples)
    assert "kpageflags" not in syscount.ops and "pagemap" not in syscount.ops
    assert t.handle.check_pfns.tolist() == [1024, 1024]
    assert t.handle.kinds.entries(np.array([1]))[2].tolist() == [0]
    # the rotation: both samples hit the stale block, which is re-learned once
    syscount.reset()
    ops.prepare_access_checks(t, samples)
    assert syscount.ops["kpageflags"] == 1
    assert t.handle.check_pfns.tolist() == [1024, 1024]
    assert t.handle.kinds.entries(np.array([1]))[2].tolist() == [clock[0]]


def test_vaddr_learns_the_blocks_next_to_a_sampled_one_in_the_same_pass(tmp_path):
    k = FakeKernel(tmp_path, nr_frames=1 << 16)
    for b in range(1, 11):  # blocks 1..10: huge pages on frames 512 * (2b + 10)
        k.map_huge(512 * b, 512 * (2 * b + 10))
    for v in range(30):  # block 11: small pages
        k.map_small(512 * 11 + v, 60000 + v)
    pm, _, _ = k.files()
    ops = VaddrOps()
    ops.frames = k.frame_checker()
    ops.verify_every = 1 << 30  # no rotation
    ops.learn_ahead_min = 8  # two steps to each side of the two samples
    pm_fd = os.open(pm, os.O_RDONLY)
    t = Target(pid=os.getpid())
    t.handle = ProcessHandle(os.getpid(), pidfd.pidfd_open(os.getpid()),
                             os.open("/proc/self", os.O_RDONLY | os.O_DIRECTORY), pm_fd,
                             pagemap.PagemapReader(pm_fd))
    block = 512 << 12
    try:
        # two regions, blocks [1, 5) and [5, 12); one sample each, in blocks 2 and 9
        t.regions = RegionArray.from_ranges([(1 * block, 5 * block), (5 * block, 12 * block)])
        syscount.reset()
        ops.prepare_access_checks(t, np.array([2 * block + 4096, 9 * block], np.int64))
        assert t.handle.check_pfns.tolist() == [512 * 14, 512 * 28]
        # the samples' blocks and their neighbours within their regions: 3, 1,
        # 4 (0 is outside) around block 2; 10, 8, 11, 7 around block 9
        assert t.handle.blocks == {1: 1, 2: 1, 3: 1, 4: 1, 7: 1, 8: 1, 9: 1, 10: 1, 11: 0}
        assert t.handle.kinds.entries(np.array([7, 10]))[1].tolist() == [512 * 24, 512 * 30]
        # in the one pass: a pagemap entry a block, and kpageflags of a frame
        # window a huge block (one whole folio) and of the small block's frame
        assert syscount.ops["pagemap"] == 9 and syscount.ops["kpageflags"] == 9
        # a sample in a block learned ahead is checked through its head, no read
        syscount.reset()
        ops.prepare_access_checks(t, np.array([3 * block, 10 * block + 8192], np.int64))
        assert t.handle.check_pfns.tolist() == [512 * 16, 512 * 30]
        assert "pagemap" not in syscount.ops and "kpageflags" not in syscount.ops
        # without the regions (the addresses are not one per region) nothing is
        # learned ahead
        syscount.reset()
        ops.prepare_access_checks(t, np.array([4 * block, 5 * block, 6 * block], np.int64))
        assert set(t.handle.blocks) == {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}
        assert syscount.ops["kpageflags"] == 2  # blocks 5 and 6
    finally:
        ops.detach(t)
        ops.frames.close()


def test_vaddr_notices_a_collapse_and_a_moved_huge_page(tmp_path):
    k = FakeKernel(tmp_path)
    for v in range(512):  # block 0: small pages, scattered frames
        k.map_small(v, 20000 + 7 * v)
    k.map_huge(512, 1024)
    pm, _, _ = k.files()
    ops = VaddrOps()
    ops.frames = k.frame_checker()
    pm_fd = os.open(pm, os.O_RDONLY)
    t = Target(pid=os.getpid())
    t.handle = ProcessHandle(os.getpid(), pidfd.pidfd_open(os.getpid()),
                             os.open("/proc/self", os.O_RDONLY | os.O_DIRECTORY), pm_fd,
                             pagemap.PagemapReader(pm_fd))
    try:
        ops.prepare_access_checks(t, np.array([3 << 12, 513 << 12], np.int64))
        assert t.handle.blocks == {0: 0, 1: 1}
        # khugepaged collapses block 0 into a huge page at frames 2048..2559, and
        # the huge page of block 1 moves to frames 3072..3583
        for v in range(512):
            k.flags.pop(20000 + 7 * v)
        k.map_huge(0, 2048)
        k.map_huge(512, 3072)
        k.files()
        ops.verify_every = 1 << 30  # no rotation: the head is trusted until it reads accessed
        samples = np.array([9 << 12, 600 << 12], np.int64)
        ops.prepare_access_checks(t, samples)
        # the collapse shows at once (a new aligned frame in a small block); the
        # moved huge page is still checked through its old head...
        assert t.handle.check_pfns.tolist() == [2048, 1024]
        assert t.handle.blocks == {0: 1, 1: 1}
        # ...whose frame, freed, lost its idle flag: it reads accessed, the pagemap
        # shows another frame, so the sample is not accessed and the block forgotten
        k.touch(1024)
        assert ops.check_accesses(t, samples).tolist() == [False, False]
        assert t.handle.blocks == {0: 1}
        ops.prepare_access_checks(t, samples)
        assert t.handle.check_pfns.tolist() == [2048, 3072]
        assert t.handle.kinds.entries(np.array([0, 1]))[1].tolist() == [2048, 3072]
        # known again: no more kpageflags reads
        syscount.reset()
        ops.prepare_access_checks(t, np.array([100 << 12, 1000 << 12], np.int64))
        assert t.handle.check_pfns.tolist() == [2048, 3072] and "kpageflags" not in syscount.ops
    finally:
        ops.detach(t)
        ops.frames.close()


def test_vaddr_remembered_huge_heads_skip_the_pagemap_but_in_the_rotation(fake_vaddr):
    k, ops, t = fake_vaddr
    ops.verify_every = 4
    samples = np.array([(512 + 64 * i) << 12 for i in range(8)], np.int64)  # all in block 1
    ops.prepare_access_checks(t, samples)  # sample 0: learns the block
    ops.check_accesses(t, samples)
    syscount.reset()
    ops.prepare_access_checks(t, samples)  # sample 1: through the head, no read
    assert t.handle.check_pfns.tolist() == [1024] * 8
    assert "pagemap" not in syscount.ops and len(t.handle.unverified) == 8
    # idle heads need no confirmation; an accessed one is confirmed once per sample
    syscount.reset()
    assert not ops.check_accesses(t, samples).any()
    assert "pagemap" not in syscount.ops
    ops.prepare_access_checks(t, samples)  # sample 2
    k.touch(1024)
    syscount.reset()
    assert ops.check_accesses(t, samples).all()
    assert syscount.ops["pagemap"] == 1 and t.handle.blocks[1] == 1
    ops.prepare_access_checks(t, samples)  # sample 3
    ops.check_accesses(t, samples)
    # sample 4, the rotation: every sample is translated, in one read (they all
    # read the block's first page), and none is left to confirm
    syscount.reset()
    ops.prepare_access_checks(t, samples)
    assert t.handle.check_pfns.tolist() == [1024] * 8
    assert syscount.ops["pagemap"] == 1 and len(t.handle.unverified) == 0


def _pages(*vpages: int) -> np.ndarray:
    return np.array([v << 12 for v in vpages], np.int64)


def test_vaddr_keeps_the_translations_of_small_blocks_sampled_again(fake_vaddr):
    k, ops, t = fake_vaddr  # pages 0..99 on frames 5000 + 3v (block 0)
    ops.verify_every = 1 << 30  # no rotation
    ops.prepare_access_checks(t, _pages(5))  # learns the block: one entry, its kpageflags
    assert t.handle.kinds.nr_translated == 0
    syscount.reset()
    ops.prepare_access_checks(t, _pages(6))  # known small: all 512 entries in one read
    assert syscount.ops["pagemap"] == 1 and t.handle.kinds.nr_translated == 1
    assert t.handle.check_pfns.tolist() == [5018]
    samples = _pages(7, 50, 99, 200)
    syscount.reset()
    ops.prepare_access_checks(t, samples)
    # kept frames are used as they are; page 200 (not present) is translated again
    assert t.handle.check_pfns.tolist() == [5021, 5150, 5297, -1]
    assert syscount.ops["pagemap"] == 1 and t.handle.unverified.tolist() == [0, 1, 2]
    # idle readings need no confirmation; an accessed one is confirmed
    syscount.reset()
    k.touch(5150)
    assert ops.check_accesses(t, samples).tolist() == [False, True, False, False]
    assert syscount.ops["pagemap"] == 1 and t.handle.kinds.nr_translated == 1


def test_vaddr_absent_pages_are_trusted_until_the_process_faults(fake_vaddr):
    from pydamon.ops.block_kinds import SMALL

    k, ops, t = fake_vaddr
    faults = [10]
    t.handle.fault_count = lambda: faults[0]
    clock = iter(range(1, 1 << 30))  # each sample later than the one before
    ops._now_ns = lambda: next(clock)
    ops.verify_every = 1 << 30
    ops.translate_share = 1.0  # as many whole blocks as samples
    ops.prepare_access_checks(t, _pages(5))  # learns block 0 (pages 0..99 mapped)
    ops.prepare_access_checks(t, _pages(6, 2000))  # block 0 read whole; block 3 is empty
    assert t.handle.blocks[3] == SMALL
    ops.prepare_access_checks(t, _pages(7, 2001))  # block 3 read whole
    assert t.handle.kinds.nr_translated == 2
    syscount.reset()
    ops.prepare_access_checks(t, _pages(200, 2005))
    assert t.handle.check_pfns.tolist() == [-1, -1] and "pagemap" not in syscount.ops
    assert ops.check_accesses(t, _pages(200, 2005)).tolist() == [False, False]
    # the process faults page 200 in: kept ABSENT pages are read again, as whole blocks
    k.map_small(200, 9000)
    k.files()
    faults[0] += 1
    syscount.reset()
    ops.prepare_access_checks(t, _pages(200, 2005))
    assert t.handle.check_pfns.tolist() == [9000, -1] and syscount.ops["pagemap"] == 2
    syscount.reset()
    ops.prepare_access_checks(t, _pages(200, 2005))
    assert t.handle.check_pfns.tolist() == [9000, -1] and "pagemap" not in syscount.ops
    # a page made present without a fault of the process (a collapse by
    # khugepaged, a write through /proc/PID/mem): the rotation sees it
    k.map_small(2005, 9100)
    k.files()
    ops.verify_every = 1
    ops.prepare_access_checks(t, _pages(2005))
    assert t.handle.check_pfns.tolist() == [9100] and t.handle.kinds.nr_translated == 1


def test_vaddr_kept_translations_that_went_wrong_are_dropped(fake_vaddr):
    k, ops, t = fake_vaddr
    ops.verify_every = 1 << 30
    ops.prepare_access_checks(t, _pages(5))
    ops.prepare_access_checks(t, _pages(6))
    assert t.handle.kinds.nr_translated == 1
    # page 50 moves to frame 7000 (migrated, or swapped out and in again)
    k.map_small(50, 7000)
    k.files()
    ops.prepare_access_checks(t, _pages(50))
    assert t.handle.check_pfns.tolist() == [5150]  # the old frame, trusted
    k.touch(5150)  # freed, it lost its idle flag: it reads accessed
    assert ops.check_accesses(t, _pages(50)).tolist() == [False]  # confirmed: not there
    assert 0 not in t.handle.blocks and t.handle.kinds.nr_translated == 0
    # relearned, then kept again with the new frame
    ops.prepare_access_checks(t, _pages(50))
    ops.prepare_access_checks(t, _pages(50))
    assert t.handle.check_pfns.tolist() == [7000] and t.handle.kinds.nr_translated == 1
    # a move whose old frame still reads idle is caught by the rotation
    k.map_small(61, 7006)
    k.files()
    ops.verify_every = 1
    ops.prepare_access_checks(t, _pages(61))
    assert t.handle.check_pfns.tolist() == [7006] and t.handle.kinds.nr_translated == 0
    assert t.handle.blocks[0] == 0


def test_block_kinds_keep_translations_of_the_newest_blocks():
    from pydamon.ops.block_kinds import BLOCK_PAGES, HUGE, SMALL, BlockKinds

    c = BlockKinds(max_translated=2)
    c.learn(np.array([1, 2, 3], np.int64), np.full(3, SMALL), np.full(3, -1, np.int64), 0)

    def frames_of_block(b: int) -> list[int]:
        return c.pool[c.row[c.lookup(np.array([b]))][0]].tolist()

    for b, when in ((1, 5), (2, 6), (3, 7)):
        c.translate(c.lookup(np.array([b])), np.full((1, BLOCK_PAGES), 10 * b), when)
    # room for two: the oldest (block 1) made room
    assert c.nr_translated == 2 and frames_of_block(1) == [-1] * BLOCK_PAGES
    assert frames_of_block(3) == [30] * BLOCK_PAGES
    c.forget(np.array([2], np.int64))  # frees its row
    c.translate(c.lookup(np.array([1])), np.full((1, BLOCK_PAGES), 11), 8)
    assert frames_of_block(1) == [11] * BLOCK_PAGES and frames_of_block(3) == [30] * BLOCK_PAGES
    # a block learned again loses its translations
    c.learn(np.array([3], np.int64), np.array([HUGE]), np.array([1536], np.int64), 9)
    assert c.nr_translated == 1 and frames_of_block(3) == [-1] * BLOCK_PAGES
    assert c.as_dict() == {1: SMALL, 3: HUGE}


def test_block_kinds_lookup_learn_forget():
    from pydamon.ops.block_kinds import HUGE, SMALL, UNKNOWN, BlockKinds

    c = BlockKinds()
    kind, frame, _ = c.entries(np.array([5, 1], np.int64))
    assert kind.tolist() == [UNKNOWN, UNKNOWN] and frame.tolist() == [-1, -1]
    c.learn(np.array([9, 2, 9], np.int64), np.array([SMALL, HUGE, HUGE]),
            np.array([-1, 512, 1024], np.int64), 7)
    assert c.as_dict() == {2: HUGE, 9: HUGE}  # a block given twice keeps its last entry
    kind, frame, learned = c.entries(np.array([9, 3, 2], np.int64))
    assert kind.tolist() == [HUGE, UNKNOWN, HUGE] and frame.tolist() == [1024, -1, 512]
    assert learned.tolist() == [7, 0, 7]
    c.learn(np.array([3], np.int64), np.array([SMALL]), np.array([-1], np.int64), 8)
    c.forget(np.array([2, 4], np.int64))
    assert c.as_dict() == {3: SMALL, 9: HUGE}


def test_vaddr_zero_page_and_off_lru_frames_are_not_accessed(tmp_path):
    k = FakeKernel(tmp_path)
    k.page_of[1] = 77
    k.flags[77] = page_idle.KPF_ZERO_PAGE  # not LRU
    k.map_small(2, 90)
    k.files()
    frames = k.frame_checker()
    try:
        check, pmd = frames.resolve([77, 90])
        assert check.tolist() == [-1, 90] and pmd.tolist() == [False, False]
        assert frames.zero_pfns == {77}
        frames.mark(check)
        assert frames.accessed(check).tolist() == [False, False]
    finally:
        frames.close()


def small_frames(tmp_path, *frames: int) -> tuple[FakeKernel, page_idle.FrameChecker]:
    """A fake kernel whose virtual page i maps the small frame ``frames[i]``,
    and a FrameChecker over it."""
    k = FakeKernel(tmp_path)
    for vpage, frame in enumerate(frames):
        k.map_small(vpage, frame)
    k.files()
    return k, k.frame_checker()


def test_a_frame_read_idle_is_not_marked_again_for_the_next_sample(tmp_path):
    """Reading an idle frame leaves its folio as a mark would: the next sample's
    mark skips it when the read is recent, so an access between the read and
    that mark counts."""
    a, b, c = 100, 20000, 20001
    k, frames = small_frames(tmp_path, a, b, c)
    now = [0]

    def sample(marked, read, took_ns=10):
        frames.mark(np.array(marked), now[0], reuse_reads_ns=100)
        now[0] += 1000  # the sampling interval
        got = frames.accessed(np.array(read), now[0]).tolist()
        now[0] += took_ns  # from the check to the next marks
        return got

    try:
        frames.mark(np.array([a, b]))
        k.touch(b)
        assert frames.accessed(np.array([a, b]), now[0]).tolist() == [False, True]
        k.touch(a)  # after the read, before the next mark
        assert sample([a, b, c], [a, b, c]) == [True, False, False]

        # nothing to write when every frame was just read idle
        syscount.reset()
        frames.mark(np.array([b]), now[0], reuse_reads_ns=100)
        assert syscount.ops["bitmap_write"] == 0
        now[0] += 1000
        assert frames.accessed(np.array([b]), now[0]).tolist() == [False]

        # only the checks just before count: a frame read idle two samples ago is marked
        assert sample([a], [a]) == [False]  # a was read accessed, then not read at all
        assert sample([c], [c]) == [False]
        k.touch(b)  # b was read idle two checks ago, not in the last one
        assert sample([b], [b], took_ns=200) == [False]

        # ... and only when they were read recently (here 200 ns ago, more than 100)
        k.touch(b)
        assert sample([b], [b]) == [False]
        # without a time, nothing is relied on
        k.touch(b)
        frames.mark(np.array([b]))
        assert frames.accessed(np.array([b])).tolist() == [False]

        # a DAMOS action that frees or moves frames: everything is marked again
        assert sample([b], [b]) == [False]
        k.touch(b)
        frames.forget_reads()
        assert sample([b], [b]) == [False]
    finally:
        frames.close()


def test_a_believed_idle_frame_that_reads_idle_is_marked_by_that_read(tmp_path):
    """With probing on, a mark first reads the frames believed idle (marked or
    read idle before, not read accessed since): those still idle are not
    written, the rest are. The belief only saves writes; an access is never
    missed, whatever was believed."""
    a, b, c = 100, 20000, 30000
    k, frames = small_frames(tmp_path, a, b, c)
    frames.probe_believed_idle = True
    frames.probe_min_frames = 1
    frames.bitmap.write_calls_per_frame = None  # a write per frame: they are far apart

    def writes_and_reads(marked):
        syscount.reset()
        frames.mark(np.array(marked))
        return syscount.ops["bitmap_write"], syscount.ops["bitmap_read"]

    try:
        assert writes_and_reads([a, b]) == (2, 0)  # nothing believed yet: written
        assert frames.believed_idle.get(np.array([a, b, c])).tolist() == [True, True, False]
        k.touch(b)
        assert frames.accessed(np.array([a, b])).tolist() == [False, True]
        assert frames.believed_idle.get(np.array([a, b])).tolist() == [True, False]
        # a is read (idle: that read was its mark), b and c are written
        assert writes_and_reads([a, b, c]) == (2, 1)
        k.touch(a)
        k.touch(b)
        assert frames.accessed(np.array([a, b, c])).tolist() == [True, True, False]
        # a was believed idle until read accessed: now written without a read
        assert writes_and_reads([a, c]) == (1, 1)
        k.touch(c)  # accessed after the last mark: the read finds it, it is written
        assert writes_and_reads([a, c]) == (1, 2)  # a, marked last, read idle
        assert frames.accessed(np.array([a, c])).tolist() == [False, False]
        k.touch(c)
        assert frames.accessed(np.array([a, c])).tolist() == [False, True]
        # one frame alone, or frames whose writes share a call: written, no read
        assert writes_and_reads([a]) == (1, 0)
        assert frames.accessed(np.array([a])).tolist() == [False]
    finally:
        frames.close()


def test_believed_idle_frames_close_together_are_written_not_read(tmp_path):
    """Frames a few bitmap words apart share one write: reading them first
    would cost more calls than it saves. Frames far apart are read."""
    near = [100, 100 + 64 * 3, 100 + 64 * 6]  # words two apart
    far = [10000, 20000, 30000]
    k, frames = small_frames(tmp_path, *near, *far)
    frames.probe_believed_idle = True
    frames.probe_min_frames = 1
    frames.bitmap.write_calls_per_frame = None

    def calls_of_second_mark(group):
        frames.mark(np.array(group))  # believed idle from here
        assert frames.accessed(np.array(group)).tolist() == [False] * len(group)
        syscount.reset()
        frames.mark(np.array(group))
        return syscount.ops["bitmap_write"], syscount.ops["bitmap_read"]

    try:
        assert calls_of_second_mark(near) == (1, 0)
        assert calls_of_second_mark(far) == (0, 3)  # a read each, all idle: no write
    finally:
        frames.close()


def test_believed_idle_frames_are_read_first_only_when_enough_of_them(tmp_path):
    """Reading first is a batch of its own: with fewer believed-idle frames
    than ``probe_min_frames`` the marks are writes only, however far apart."""
    far = [5000, 12000, 20000, 30000]
    k, frames = small_frames(tmp_path, *far)
    frames.probe_believed_idle = True
    frames.probe_min_frames = 3
    frames.bitmap.write_calls_per_frame = None

    def writes_and_reads(group):
        syscount.reset()
        frames.mark(np.array(group))
        return syscount.ops["bitmap_write"], syscount.ops["bitmap_read"]

    try:
        assert writes_and_reads(far[:2]) == (2, 0)
        assert frames.accessed(np.array(far[:2])).tolist() == [False, False]
        # two believed idle (and a third frame, not believed): too few to read first
        assert writes_and_reads(far[:3]) == (3, 0)
        assert frames.accessed(np.array(far[:3])).tolist() == [False, False, False]
        # three believed idle: read, found idle, not written; the fourth is written
        assert writes_and_reads(far) == (1, 3)
        k.touch(far[0])
        assert frames.accessed(np.array(far)).tolist() == [True, False, False, False]
    finally:
        frames.close()


def test_reads_of_every_target_of_a_sample_count_for_every_target_s_marks(tmp_path):
    """Two targets (one shared frame): all checks of a sample come before all
    marks, and a frame is in the marked state whichever target's check read it."""
    shared, a, b = 100, 20000, 30000
    k, frames = small_frames(tmp_path, shared, a, b)
    try:
        frames.mark(np.array([shared, a]), 0, 100)  # target 1
        frames.mark(np.array([b]), 0, 100)  # target 2
        assert frames.accessed(np.array([shared, a]), 1000).tolist() == [False, False]
        assert frames.accessed(np.array([b]), 1000).tolist() == [False]
        for f in (shared, a, b):
            k.touch(f)  # accessed after the reads
        frames.mark(np.array([b]), 1010, 100)  # target 1 now samples b and
        frames.mark(np.array([shared]), 1010, 100)  # target 2 the shared frame
        assert frames.accessed(np.array([b]), 2010).tolist() == [True]
        assert frames.accessed(np.array([shared]), 2010).tolist() == [True]
    finally:
        frames.close()


def test_ops_rely_on_reads_within_a_tenth_of_the_sampling_interval(tmp_path):
    from types import SimpleNamespace

    ops = PaddrOps()
    k, ops.frames = small_frames(tmp_path, 300)
    clock = [0]
    ops._ctx = SimpleNamespace(clock=SimpleNamespace(now_ns=lambda: clock[0]),
                               sample_interval=lambda: 1000)  # 1 ms: reads trusted 100 us
    t = Target()
    ops.attach(t)
    addrs = np.array([300 << 12], np.int64)

    def sample(then_ns):
        ops.prepare_access_checks(t, addrs)
        clock[0] += 1_000_000
        got = ops.check_accesses(t, addrs).tolist()
        clock[0] += then_ns
        k.touch(300)  # an access after the read
        return got

    try:
        assert sample(90_000) == [False]
        assert sample(110_000) == [True]  # read 90 us before the mark: not marked again
        assert sample(110_000) == [False]  # read accessed: marked
        assert sample(0) == [False]  # read 110 us before the mark: marked
    finally:
        ops.frames.close()


# -- process handles, capability errors, actions ------------------------------------------
def test_open_process_rejects_dead_and_bad_pids():
    with pytest.raises(DamonError) as e:
        open_process(None)
    assert e.value.errno == errno.EINVAL
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    with pytest.raises(DamonError) as e:
        open_process(pid)
    assert e.value.errno == errno.EINVAL and str(pid) in str(e.value)


def child_waiting_on_a_pipe() -> tuple[int, int, int]:
    """(pid, read end, write end): a child that exits once a byte is written."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.read(r, 1)
        os._exit(0)
    return pid, r, w


def test_pidfd_sees_exit_of_a_child():
    pid, r, w = child_waiting_on_a_pipe()
    fd = pidfd.pidfd_open(pid)
    try:
        assert not pidfd.pidfd_exited(fd)
        os.write(w, b"x")
        os.waitpid(pid, 0)
        assert pidfd.pidfd_exited(fd)
    finally:
        os.close(fd)
        os.close(r)
        os.close(w)


def test_missing_idle_page_tracking_names_the_kernel_option(tmp_path):
    with pytest.raises(DamonError) as e:
        caps.check_idle_page_tracking(str(tmp_path / "nope"))
    assert "CONFIG_IDLE_PAGE_TRACKING" in str(e.value) and "\n" not in str(e.value)


def test_pagemap_without_frames_is_a_clear_error(tmp_path):
    hidden = tmp_path / "pagemap"
    hidden.write_bytes(bytes(8 << 20))  # every entry zero, as for an unprivileged reader
    with pytest.raises(DamonError) as e:
        caps.check_pagemap_frames(str(hidden))
    assert "frame numbers" in str(e.value)


def test_not_root_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(DamonError) as e:
        caps.check_root()
    assert e.value.errno == errno.EPERM and "root" in str(e.value)


@pytest.mark.skipif(os.path.exists(page_idle.BITMAP_PATH), reason="this kernel has page_idle")
def test_start_without_idle_page_tracking_fails_at_attach():
    from pydamon.core.kdamond import Kdamond

    ctx = Context("vaddr", targets=[Target(pid=os.getpid())])
    with pytest.raises(DamonError) as e:
        Kdamond(ctx).run(nr_samples=1)
    assert "CONFIG_IDLE_PAGE_TRACKING" in str(e.value)


@pytest.mark.parametrize("action", [Action.NOHUGEPAGE, Action.LRU_PRIO, Action.LRU_DEPRIO])
def test_vaddr_rejects_actions_it_cannot_apply(action, caplog):
    for ops in (VaddrOps(), FvaddrOps()):
        ctx = Context(ops, targets=[Target(pid=1)], schemes=[Scheme(action=action)])
        with pytest.raises(DamonError) as e:
            ctx.validate()
        assert e.value.errno == errno.EINVAL and action.value in str(e.value)
    assert any(action.value in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("action", [Action.STAT, Action.WILLNEED, Action.COLD,
                                    Action.PAGEOUT, Action.HUGEPAGE])
def test_vaddr_accepts_actions_with_a_remote_mechanism(action):
    Context(VaddrOps(), targets=[Target(pid=1)], schemes=[Scheme(action=action)]).validate()


def test_paddr_accepts_only_stat_without_ops_filters(caplog):
    Context(PaddrOps(), targets=[Target()], schemes=[Scheme(action=Action.STAT)]).validate()
    for s in (Scheme(action=Action.PAGEOUT), Scheme(action=Action.LRU_PRIO),
              Scheme(action=Action.STAT, filters=[DamosFilter(FilterType.ANON)])):
        with pytest.raises(DamonError) as e:
            Context(PaddrOps(), targets=[Target()], schemes=[s]).validate()
        assert e.value.errno == errno.EINVAL
    assert sum("rejecting" in r.getMessage() for r in caplog.records) == 3


def test_paddr_default_region_is_biggest_system_ram(tmp_path):
    p = tmp_path / "iomem"
    p.write_text(IOMEM)
    assert [(r.start, r.end) for r in PaddrOps(str(p)).default_ranges(Target())] == [
        (0x100000000, 0x180000000)]


def test_vaddr_apply_counts_only_what_the_kernel_accepted():
    """process_madvise on our own process: a hole makes the kernel refuse (ENOMEM)."""
    import mmap

    m = mmap.mmap(-1, 8 << 12)
    addr = np.frombuffer(m, np.uint8).ctypes.data
    ops = VaddrOps()
    t = Target(pid=os.getpid())
    own = pidfd.pidfd_open(os.getpid())
    proc_dir = os.open("/proc/self", os.O_RDONLY | os.O_DIRECTORY)
    pm_fd = os.open("/proc/self/pagemap", os.O_RDONLY)
    t.handle = ProcessHandle(os.getpid(), own, proc_dir, pm_fd, pagemap.PagemapReader(pm_fd))
    try:
        ctx = Context(ops, targets=[t])
        s = Scheme(action=Action.COLD)
        assert ops.apply_scheme(ctx, t, addr, addr + (8 << 12), s) == (8 << 12, 0)
        # an unmapped page right after the buffer: nothing counts as applied
        assert ops.apply_scheme(ctx, t, addr, addr + (1 << 30), s)[0] == 0
        # a pageout forgets what was remembered of the blocks it covers, not others
        from pydamon.ops.block_kinds import SMALL

        b = addr >> 21
        t.handle.kinds.learn(np.array([b - 1, b, b + 1, b + 2], np.int64), np.full(4, SMALL),
                             np.full(4, -1, np.int64), 0)
        ops.apply_scheme(ctx, t, addr, addr + (8 << 12), Scheme(action=Action.PAGEOUT))
        last = (addr + (8 << 12) - 1) >> 21  # the buffer may straddle two blocks
        assert sorted(t.handle.blocks) == [x for x in (b - 1, b, b + 1, b + 2) if x > last
                                           or x < b]
    finally:
        ops.detach(t)
        del addr
        m.close()


def test_vaddr_target_lifecycle_on_a_child_process():
    """Mappings, exit detection and descriptor release, on the host (no page_idle needed)."""
    pid, r, w = child_waiting_on_a_pipe()
    fds_before = set(os.listdir("/proc/self/fd"))
    ops = VaddrOps()
    t = Target(pid=pid)
    try:
        t.handle = open_process(pid)
        assert ops.target_valid(t)
        maps = ops.target_mappings(t)
        assert maps and maps == sorted(maps)
        assert all(end <= 1 << 47 for _, end in maps)  # no [vsyscall]
        os.write(w, b"x")
        os.waitpid(pid, 0)
        assert not ops.target_valid(t)
        assert ops.target_mappings(t) == []
        # an exited target samples as not accessed, without touching the kernel files
        addrs = np.array([maps[0][0]], np.int64)
        ops.prepare_access_checks(t, addrs)
        assert list(ops.check_accesses(t, addrs)) == [False]
    finally:
        ops.detach(t)
        os.close(r)
        os.close(w)
    # the listing's own descriptor takes the lowest free number: compare counts
    assert len(os.listdir("/proc/self/fd")) == len(fds_before) - 2


def test_io_uring_batches_beyond_its_ring_and_reports_errors(tmp_path):
    from pydamon.linux import batching

    try:
        ring = Uring(entries=8)
    except OSError as e:
        pytest.skip(f"io_uring is refused on this machine: {e}")
    path = tmp_path / "entries"
    values = np.arange(4096, dtype=np.uint64) * np.uint64(3)
    path.write_bytes(values.tobytes())
    fd = os.open(path, os.O_RDWR)
    try:
        keys = np.array(sorted(random.Random(1).sample(range(4096), 50)), np.int64)
        runs = batching.run_arrays(keys, 0, 512)
        syscount.reset()
        got = batching.read_entries(fd, keys, runs, "test", io=ring)
        assert got.tolist() == values[keys].tolist()
        # 50 reads through an 8-entry ring: 7 batches, one io_uring_enter each
        assert syscount.ops["test"] == len(runs[0]) and syscount.counts["io_uring_enter"] == 7
        batching.write_words(fd, np.array([8, 800]), np.array([2, 1]),
                             np.array([7, 8, 9], np.uint64), "test", frozenset(), io=ring)
        now = np.frombuffer(path.read_bytes(), np.uint64)
        assert now[1:3].tolist() == [7, 8] and now[100] == 9 and now[0] == 0
        # a failed operation: minus its errno, raised unless tolerated
        ro = os.open(path, os.O_RDONLY)
        try:
            with pytest.raises(OSError) as e:
                batching.write_words(ro, np.array([0]), np.array([1]), np.array([1], np.uint64),
                                     "test", frozenset(), io=ring)
            assert e.value.errno == errno.EBADF
            batching.write_words(ro, np.array([0]), np.array([1]), np.array([1], np.uint64),
                                 "test", frozenset({errno.EBADF}), io=ring)
        finally:
            os.close(ro)
    finally:
        os.close(fd)
        ring.close()


def test_io_uring_rings_close_without_leaking_descriptors_or_mappings():
    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    def maps() -> int:
        with open("/proc/self/maps") as f:
            return sum("anon_inode:[io_uring]" in line for line in f)

    first = Uring.open()
    if first is None:
        pytest.skip("io_uring is refused on this machine")
    first.close()
    before = fds(), maps()
    for _ in range(20):
        ring = Uring.open()
        ring.close()
    assert (fds(), maps()) == before


def test_pydamon_io_sync_turns_io_uring_off(monkeypatch):
    monkeypatch.setenv("PYDAMON_IO", "sync")
    assert Uring.open() is None
