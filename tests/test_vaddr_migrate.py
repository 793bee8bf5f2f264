"""migrate_hot / migrate_cold of vaddr through move_pages(2), on the host.

The process is made of files (tests/fake_kernel.py: its pagemap and maps,
the machine's kpageflags); ``move_pages`` is :class:`FakeNuma`, which
keeps a node per page and follows the kernel's rules (mm/migrate.c
``do_pages_move``): a folio moves whole, whatever page of it is given; a
page already on the target node reports that node; a second page of a
folio already queued is -EBUSY; a stretch that fails part-way stops the
call with the number of pages not migrated and leaves status unwritten.
The real system call runs in the guest (tests/kernel/guest_actions.py).
"""

from __future__ import annotations

import errno
import logging
import os

import numpy as np
import pytest

from fake_kernel import FakeKernel
from pydamon.core.attrs import MonitoringAttrs
from pydamon.core.context import Context
from pydamon.core.damos import Action, DamosFilter, FilterType, Quota, Scheme
from pydamon.core.target import Target
from pydamon.errors import DamonError
from pydamon.linux import numa, page_idle, pagemap, syscount
from pydamon.ops.paddr import PaddrOps
from pydamon.ops.vaddr import (
    FvaddrOps,
    ProcessHandle,
    VaddrOps,
    migrate_batch,
    migration_chunks,
)

PAGE = 4096
HUGE = 2 << 20
MIGRATE = (Action.MIGRATE_HOT, Action.MIGRATE_COLD)


class FakeNuma:
    """move_pages of one process: a node per virtual page, folios moved whole."""

    def __init__(self, node_of: dict[int, int], huge_blocks: set[int] = frozenset(),
                 online=(0, 1), free: dict[int, int] | None = None,
                 shared: set[int] = frozenset(), no_huge: set[int] = frozenset(),
                 stuck: set[int] = frozenset()):
        self.node_of = dict(node_of)  # virtual page -> node
        self.huge_blocks = set(huge_blocks)  # 2 MiB blocks (vpage >> 9) that are one folio
        self.online = set(online)
        self.free = dict(free) if free is not None else {n: 1 << 30 for n in online}
        self.shared = set(shared)  # pages another process maps too (EACCES)
        # nodes without a free huge page: a huge folio is split and its pages
        # moved one by one, the split counted as a failure (migrate_pages_batch)
        self.no_huge = set(no_huge)
        self.stuck = set(stuck)  # pages that fail to migrate (pinned)
        self.gone = False
        self.calls: list[tuple[str, int]] = []

    def folio(self, vpage: int) -> tuple[int, ...]:
        b = vpage >> 9
        return tuple(range(b << 9, (b + 1) << 9)) if b in self.huge_blocks else (vpage,)

    def page_nodes(self, pid, addrs):
        self.calls.append(("query", len(addrs)))
        if self.gone:
            raise OSError(errno.ESRCH, "no such process")
        return np.array([self.node_of.get(int(a) >> 12, -errno.ENOENT) for a in addrs],
                        np.int32)

    def move_pages(self, pid, addrs, node, flags=numa.MPOL_MF_MOVE):
        assert len(addrs) <= numa.MAX_PAGES_PER_CALL
        self.calls.append(("move", len(addrs)))
        status = np.full(len(addrs), numa.STATUS_UNSET, np.int32)
        if self.gone:
            raise numa.MovePagesError(errno.ESRCH, "no such process", status)
        if node not in self.online:
            raise numa.MovePagesError(errno.ENODEV, "no such device", status)
        queued: list[tuple[int, tuple[int, ...]]] = []
        queued_folios: set[tuple[int, ...]] = set()

        def flush() -> int:
            failed = 0
            for _, f in queued:
                if len(f) > 1 and node in self.no_huge:
                    failed += 1  # the split
                    parts = [(p,) for p in f]
                else:
                    parts = [f]
                for part in parts:
                    if self.free[node] >= len(part) and not self.stuck & set(part):
                        self.free[node] -= len(part)
                        for p in part:
                            self.node_of[p] = node
                    else:
                        failed += len(part)
            if not failed:
                for i, _ in queued:
                    status[i] = node
            queued.clear()
            queued_folios.clear()
            return failed

        for i, a in enumerate(int(x) for x in addrs):
            vp = a >> 12
            if vp not in self.node_of:
                err = -errno.ENOENT
            else:
                f = self.folio(vp)
                if f in queued_folios:
                    err = -errno.EBUSY
                elif self.node_of[vp] == node:
                    err = 0
                elif vp in self.shared:
                    err = -errno.EACCES
                else:
                    queued.append((i, f))
                    queued_folios.add(f)
                    continue
            status[i] = err if err else node
            failed = flush()
            if failed:
                return failed + len(addrs) - i - 1, status
        failed = flush()
        return failed, status

    def install(self, monkeypatch) -> FakeNuma:
        monkeypatch.setattr(numa, "page_nodes", self.page_nodes)
        monkeypatch.setattr(numa, "move_pages", self.move_pages)
        return self

    def moves(self) -> list[int]:
        return [n for kind, n in self.calls if kind == "move"]


def write_maps(path, ranges: list[tuple[int, int]]) -> None:
    path.write_text("".join(f"{lo << 12:x}-{hi << 12:x} rw-p 00000000 00:00 0\n"
                            for lo, hi in ranges))


class Proc:
    """A fake process: its files, a VaddrOps holding it, and its kpageflags."""

    def __init__(self, tmp_path, k: FakeKernel, maps: list[tuple[int, int]]):
        pm, kpf, bm = k.files()
        write_maps(tmp_path / "maps", maps)
        self.ops = VaddrOps()
        self.ops.frames = page_idle.FrameChecker(
            page_idle.IdleBitmap(os.open(bm, os.O_RDWR)),
            page_idle.KPageFlags(os.open(kpf, os.O_RDONLY)))
        pm_fd = os.open(pm, os.O_RDONLY)
        proc_dir = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
        self.handle = ProcessHandle(4242, -1, proc_dir, pm_fd, pagemap.PagemapReader(pm_fd))
        self.target = Target(pid=4242)
        self.target.handle = self.handle
        self.ctx = Context(self.ops, targets=[self.target])

    def apply(self, start_page: int, end_page: int, nid: int = 1,
              action: Action = Action.MIGRATE_COLD) -> tuple[int, int]:
        s = Scheme(action=action, target_nid=nid)
        return self.ops.apply_scheme(self.ctx, self.target, start_page << 12, end_page << 12, s)

    def close(self) -> None:
        for fd in (self.handle.pagemap_fd, self.handle.proc_dir):
            os.close(fd)
        self.ops.frames.close()


@pytest.fixture
def mixed(tmp_path):
    """Small pages 16..115; a THP at 512..1023; 512 small pages on consecutive,
    aligned frames at 1536..2047 (no compound page: must not pass for a THP);
    the zero page at 2100; 2101.. not present."""
    k = FakeKernel(tmp_path)
    for v in range(16, 116):
        k.map_small(v, 5000 + 3 * v)
    k.map_huge(512, 1024)
    for v in range(1536, 2048):
        k.map_small(v, 2048 + (v - 1536))
    k.page_of[2100] = 77
    k.flags[77] = page_idle.KPF_ZERO_PAGE
    p = Proc(tmp_path, k, [(16, 116), (512, 2200)])
    p.ops.frames.zero_pfns.add(77)
    node_of = {v: 0 for v in k.page_of if v != 2100}
    yield p, node_of
    p.close()


def test_chunks_take_present_pages_and_one_address_per_huge_page(mixed):
    p, _ = mixed
    kpf = p.ops.frames.kpageflags
    got = list(migration_chunks(p.handle.pagemap, kpf, {77}, 0, 3000 << 12, 512 << 12,
                                2200 << 12))
    addrs = np.concatenate([a for a, _ in got]) >> 12
    sizes = np.concatenate([s for _, s in got])
    assert addrs.tolist() == [512] + list(range(1536, 2048))
    assert sizes.tolist() == [HUGE] + [PAGE] * 512
    # a range covering the second half of the huge page takes the whole folio
    got = list(migration_chunks(p.handle.pagemap, kpf, set(), 768 << 12, 1024 << 12,
                                512 << 12, 2200 << 12))
    assert [(a.tolist(), s.tolist()) for a, s in got] == [([512 << 12], [HUGE])]
    # without kpageflags nothing passes for a huge page: every page is itself
    got = list(migration_chunks(p.handle.pagemap, None, set(), 512 << 12, 1024 << 12,
                                512 << 12, 2200 << 12))
    assert sum(len(a) for a, _ in got) == 512


def test_chunks_read_pagemap_in_bounded_reads(mixed):
    p, _ = mixed
    syscount.reset()
    got = list(migration_chunks(p.handle.pagemap, None, set(), 512 << 12, 2200 << 12,
                                512 << 12, 2200 << 12, chunk_pages=1024))
    # chunks end on multiples of 1024 pages: [512, 1024), [1024, 2048), [2048, 2200);
    # 512 + 512 small pages and (no zero frames given) the zero page
    assert syscount.counts["pagemap"] == 3
    assert sum(len(a) for a, _ in got) == 1025
    assert all(len(a) <= 1024 for a, _ in got)


def test_migrate_counts_what_moved_and_passes_what_is_elsewhere(mixed, monkeypatch):
    p, node_of = mixed
    for v in range(16, 26):
        node_of[v] = 1  # already on the target node: not passed, not counted
    fake = FakeNuma(node_of, huge_blocks={1}).install(monkeypatch)
    syscount.reset()
    applied, passed = p.apply(0, 3000)
    assert applied == 90 * PAGE + HUGE + 512 * PAGE and passed == 0
    # one batch: where are the 613 candidates, move the 603 elsewhere, and
    # is the huge page's last page there too
    assert fake.calls == [("query", 613), ("move", 603), ("query", 1)]
    assert all(n == 1 for v, n in fake.node_of.items())
    # nothing left to move: nothing counted
    assert p.apply(0, 3000) == (0, 0)
    assert fake.moves() == [603]


def ten_thousand_small_pages(tmp_path) -> tuple[FakeKernel, Proc]:
    """A process with small pages 1000..10999 mapped."""
    k = FakeKernel(tmp_path, nr_frames=1 << 16)
    for v in range(1000, 11_000):
        k.map_small(v, 3 * v)
    return k, Proc(tmp_path, k, [(1000, 11_000)])


def test_migrate_batches_at_most_4096_pages_a_call(tmp_path, monkeypatch):
    k, p = ten_thousand_small_pages(tmp_path)
    try:
        fake = FakeNuma({v: 0 for v in k.page_of}).install(monkeypatch)
        assert p.apply(0, 20_000)[0] == 10_000 * PAGE
        assert fake.moves() == [4096, 4096, 1808]
        assert max(n for _, n in fake.calls) <= numa.MAX_PAGES_PER_CALL
    finally:
        p.close()


def test_a_stretch_that_fails_counts_only_the_pages_that_got_there(mixed, monkeypatch):
    p, node_of = mixed
    # room for 50 pages on node 1: the call stops with status unwritten,
    # and the pages that did move are found by asking again
    fake = FakeNuma(node_of, huge_blocks={1}, free={0: 1 << 30, 1: 50}).install(monkeypatch)
    applied, _ = p.apply(16, 116)
    assert applied == 50 * PAGE
    assert sum(fake.node_of[v] == 1 for v in range(16, 116)) == 50
    assert fake.calls == [("query", 100), ("move", 100), ("query", 100)]


def test_a_huge_page_split_before_the_call_is_not_counted_whole(mixed, monkeypatch):
    p, node_of = mixed
    # kpageflags still shows one compound page, but by the time of the call
    # the block is small pages: only the page passed moves
    fake = FakeNuma(node_of, huge_blocks=set()).install(monkeypatch)
    assert p.apply(512, 1024)[0] == 0
    assert fake.node_of[512] == 1 and fake.node_of[1023] == 0


def test_a_huge_page_split_on_the_way_counts_the_pages_that_moved(mixed, monkeypatch):
    p, node_of = mixed
    # node 1 has no free huge page: the folio is split, its pages move one by
    # one and one in the middle does not; the call reports a failure and
    # leaves status unwritten. Its first and last page moved: counting the
    # huge page whole would count a page that did not move.
    fake = FakeNuma(node_of, huge_blocks={1}, no_huge={1}, stuck={700}).install(monkeypatch)
    assert p.apply(512, 1024)[0] == 511 * PAGE
    assert fake.node_of[512] == fake.node_of[1023] == 1 and fake.node_of[700] == 0
    assert fake.calls == [("query", 1), ("move", 1), ("query", 512)]
    # split, and every page moved: the call still reports the split as a
    # failure; asked page by page, all 2 MiB count
    fake = FakeNuma(node_of, huge_blocks={1}, no_huge={1}).install(monkeypatch)
    assert p.apply(512, 1024)[0] == HUGE
    assert fake.calls == [("query", 1), ("move", 1), ("query", 512)]


def test_shared_and_missing_pages_are_not_counted(mixed, monkeypatch):
    p, node_of = mixed
    fake = FakeNuma(node_of, shared={20, 21, 22}).install(monkeypatch)
    del fake.node_of[30]  # unmapped between pagemap and the call
    assert p.apply(16, 116)[0] == 96 * PAGE
    assert [fake.node_of[v] for v in (20, 21, 22)] == [0, 0, 0]


def test_migrate_batch_counts_nothing_for_a_node_gone_offline(monkeypatch):
    fake = FakeNuma({v: 0 for v in range(8)}, online=(0,)).install(monkeypatch)
    addrs = np.arange(8, dtype=np.uint64) << np.uint64(12)
    assert migrate_batch(1, addrs, np.full(8, PAGE, np.int64), 1) == 0
    assert fake.calls == [("query", 8), ("move", 8), ("query", 8)]


def test_a_process_gone_counts_nothing_and_is_logged(mixed, monkeypatch, caplog):
    p, node_of = mixed
    fake = FakeNuma(node_of).install(monkeypatch)
    fake.gone = True
    with caplog.at_level(logging.DEBUG, logger="pydamon.ops.vaddr"):
        assert p.apply(16, 116) == (0, 0)
    assert p.handle.migrate_errors == 1
    assert any("migrate_cold" in r.getMessage() for r in caplog.records)


def test_what_moved_before_the_process_went_still_counts(tmp_path, monkeypatch):
    k, p = ten_thousand_small_pages(tmp_path)
    try:
        fake = FakeNuma({v: 0 for v in k.page_of}).install(monkeypatch)
        moves = fake.move_pages

        def then_gone(*args, **kwargs):
            out = moves(*args, **kwargs)
            fake.gone = True  # the process exits after the first batch moved
            return out

        monkeypatch.setattr(numa, "move_pages", then_gone)
        assert p.apply(0, 20_000)[0] == 4096 * PAGE
        assert fake.moves() == [4096] and p.handle.migrate_errors == 1
    finally:
        p.close()


def test_migrate_hot_moves_too_and_exited_targets_are_skipped(mixed, monkeypatch):
    p, node_of = mixed
    fake = FakeNuma(node_of).install(monkeypatch)
    assert p.apply(16, 20, nid=1, action=Action.MIGRATE_HOT)[0] == 4 * PAGE
    p.handle.exited = True
    assert p.apply(16, 116) == (0, 0) and len(fake.calls) == 2


# -- accepting and rejecting migrate schemes -----------------------------------------------
@pytest.fixture
def nodes(tmp_path):
    d = tmp_path / "node"
    d.mkdir()
    (d / "online").write_text("0-2\n")
    (d / "has_memory").write_text("0-1\n")  # node 2: CPUs only
    return str(d)


def ctx_with(ops, scheme: Scheme) -> Context:
    return Context(ops, targets=[Target(pid=1)], schemes=[scheme])


@pytest.mark.parametrize("action", MIGRATE)
def test_migrate_to_a_node_with_memory_is_accepted(nodes, action):
    for ops in (VaddrOps(), FvaddrOps()):
        ops.node_dir = nodes
        ctx_with(ops, Scheme(action=action, target_nid=1)).validate()
        assert action in ops.supported_actions and action not in ops.unsupported_why


@pytest.mark.parametrize("nid, why", [(3, "not an online NUMA node (online: 0,1,2)"),
                                      (-1, "not an online NUMA node"),
                                      (2, "has no memory")])
def test_migrate_to_a_node_without_memory_is_rejected(nodes, nid, why, caplog):
    ops = VaddrOps()
    ops.node_dir = nodes
    with pytest.raises(DamonError) as e:
        ctx_with(ops, Scheme(action=Action.MIGRATE_COLD, target_nid=nid)).validate()
    assert e.value.errno == errno.EINVAL and why in str(e.value)
    assert any("rejecting scheme 0" in r.getMessage() and why in r.getMessage()
               for r in caplog.records)


def test_migrate_on_a_kernel_without_numa_is_rejected(tmp_path):
    ops = VaddrOps()
    ops.node_dir = str(tmp_path / "missing")
    with pytest.raises(DamonError) as e:
        ctx_with(ops, Scheme(action=Action.MIGRATE_HOT, target_nid=0)).validate()
    assert "online: none" in str(e.value)


def test_migrate_with_ops_filters_is_rejected(nodes):
    ops = VaddrOps()
    ops.node_dir = nodes
    s = Scheme(action=Action.MIGRATE_COLD, target_nid=1, filters=[DamosFilter(FilterType.ANON)])
    with pytest.raises(DamonError) as e:
        ctx_with(ops, s).validate()
    assert "filters" in str(e.value)
    # a core filter is the engine's business: accepted
    s.filters = [DamosFilter(FilterType.ADDR, addr_start=0, addr_end=1 << 20)]
    ctx_with(ops, s).validate()


@pytest.mark.parametrize("action", MIGRATE)
def test_paddr_still_rejects_migrate(action):
    with pytest.raises(DamonError) as e:
        Context(PaddrOps(), targets=[Target()],
                schemes=[Scheme(action=action, target_nid=0)]).validate()
    assert "physical pages" in str(e.value)


def test_migrate_cold_prefers_cold_regions_and_migrate_hot_hot_ones():
    attrs = MonitoringAttrs(sample_us=5000, aggr_us=100_000)
    ctx = Context(VaddrOps(), attrs, targets=[Target(pid=1)])
    nr, age = np.array([0, 10, 20]), np.array([5, 5, 5])
    q = Quota(weight_nr_accesses=1, weight_age=1)
    cold = ctx.ops.scheme_scores(ctx, nr, age, Scheme(action=Action.MIGRATE_COLD, quota=q))
    hot = ctx.ops.scheme_scores(ctx, nr, age, Scheme(action=Action.MIGRATE_HOT, quota=q))
    assert cold[0] > cold[1] > cold[2] and hot[0] < hot[1] < hot[2]
    # the madvise actions other than pageout keep all regions equal, as before
    same = ctx.ops.scheme_scores(ctx, nr, age, Scheme(action=Action.COLD, quota=q))
    assert len(set(same.tolist())) == 1
