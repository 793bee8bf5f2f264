"""The move_pages(2) wrapper and the NUMA node lists (pydamon.linux.numa), on the host.

The system call is replaced by a fake that writes status as the kernel
does; one test calls the real one on this process's own pages (no root
needed for one's own process), skipped where the kernel has no NUMA.
"""

from __future__ import annotations

import errno
import mmap
import os

import numpy as np
import pytest

from pydamon.linux import numa, syscount


def test_parse_node_list():
    assert numa.parse_node_list("0\n") == [0]
    assert numa.parse_node_list("0-1\n") == [0, 1]
    assert numa.parse_node_list("0-1,3,5-6\n") == [0, 1, 3, 5, 6]
    assert numa.parse_node_list("") == [] and numa.parse_node_list("\n") == []
    with pytest.raises(ValueError):
        numa.parse_node_list("3-1")
    with pytest.raises(ValueError):
        numa.parse_node_list("x")


def test_node_lists_are_read_from_sysfs_files(tmp_path):
    (tmp_path / "online").write_text("0-2\n")
    (tmp_path / "has_memory").write_text("0,2\n")
    assert numa.online_nodes(str(tmp_path)) == [0, 1, 2]
    assert numa.memory_nodes(str(tmp_path)) == [0, 2]
    # a kernel without CONFIG_NUMA has no node directory: no node at all
    assert numa.online_nodes(str(tmp_path / "missing")) == []


class FakeCall:
    """Stands for the system call: records each call, writes status like the kernel."""

    def __init__(self, where: dict[int, int], stop_after: int | None = None,
                 fail: int = 0):
        self.where = where  # address -> node
        self.stop_after = stop_after  # moving: write status for this many pages, then stop
        self.fail = fail  # -errno for the whole call
        self.calls: list[tuple[int, bool, int]] = []

    def __call__(self, pid, addrs, nodes, status, flags):
        self.calls.append((len(addrs), nodes is not None, flags))
        if self.fail:
            return self.fail
        n = len(addrs) if self.stop_after is None else min(self.stop_after, len(addrs))
        for i in range(n):
            a = int(addrs[i])
            if a not in self.where:
                status[i] = -errno.ENOENT
            elif nodes is None:
                status[i] = self.where[a]
            else:
                self.where[a] = int(nodes[i])
                status[i] = self.where[a]
        return len(addrs) - n  # pages not migrated: the rest


def test_page_nodes_asks_at_most_4096_pages_a_call(monkeypatch):
    where = {a: (a >> 12) % 2 for a in range(0, 10_000 * 4096, 4096)}
    fake = FakeCall(where)
    monkeypatch.setattr(numa, "_call", fake)
    syscount.reset()
    got = numa.page_nodes(1234, list(where) + [1 << 40])
    assert [c[0] for c in fake.calls] == [4096, 4096, 1809]
    assert all(not moving and flags == 0 for _, moving, flags in fake.calls)
    assert syscount.counts["page_nodes"] == 3
    assert got[:4].tolist() == [0, 1, 0, 1] and got[-1] == -errno.ENOENT


def test_move_pages_leaves_unwritten_status_unset(monkeypatch):
    addrs = [4096 * i for i in range(6)]
    fake = FakeCall({a: 0 for a in addrs}, stop_after=4)
    monkeypatch.setattr(numa, "_call", fake)
    syscount.reset()
    ret, status = numa.move_pages(1234, addrs, 1)
    assert ret == 2 and fake.calls == [(6, True, numa.MPOL_MF_MOVE)]
    assert status.tolist() == [1, 1, 1, 1, numa.STATUS_UNSET, numa.STATUS_UNSET]
    assert syscount.counts["move_pages"] == 1
    assert numa.move_pages(1234, [], 1)[1].size == 0 and len(fake.calls) == 1


def test_move_pages_failing_as_a_whole_is_an_oserror_with_errno(monkeypatch):
    monkeypatch.setattr(numa, "_call", FakeCall({}, fail=-errno.ENODEV))
    with pytest.raises(numa.MovePagesError) as e:
        numa.move_pages(1234, [0, 4096], 7)
    assert isinstance(e.value, OSError) and e.value.errno == errno.ENODEV
    assert (e.value.status == numa.STATUS_UNSET).all()
    monkeypatch.setattr(numa, "_call", FakeCall({}, fail=-errno.ESRCH))
    with pytest.raises(OSError) as e2:
        numa.page_nodes(1234, [0])
    assert e2.value.errno == errno.ESRCH


@pytest.mark.skipif(not numa.online_nodes(), reason="this kernel has no NUMA nodes")
def test_real_move_pages_on_own_pages():
    m = mmap.mmap(-1, 4 * 4096)
    buf = np.frombuffer(m, np.uint8)
    buf[::4096] = 1  # fault the four pages in
    base = buf.ctypes.data
    try:
        addrs = [base + 4096 * i for i in range(4)]
        nodes = numa.memory_nodes()
        here = numa.page_nodes(os.getpid(), addrs + [4096])  # page 1 is never mapped
        assert set(here[:4].tolist()) <= set(nodes) and here[4] == -errno.EFAULT
        # to the node they are on: nothing to do, status is that node
        ret, status = numa.move_pages(os.getpid(), addrs, int(here[0]))
        assert ret == 0 and status[0] == here[0]
        with pytest.raises(OSError) as e:
            numa.move_pages(os.getpid(), addrs, max(numa.online_nodes()) + 1)
        assert e.value.errno == errno.ENODEV
    finally:
        del buf
        m.close()
