"""A tiny deterministic operations set for sysfs/FUSE tests (no real memory, no sim)."""

from __future__ import annotations

import os

import numpy as np

from pydamon.core import Action, AddrRange
from pydamon.errors import einval
from pydamon.ops import Operations

#: physical "memory" of the fake paddr: [0, 1 GiB), hot in its first 64 MiB
FAKE_RAM = AddrRange(0, 1 << 30)
HOT_END = 64 << 20


def _alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    # a zombie child is gone for monitoring purposes
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class FakeOps(Operations):
    """Accesses hit addresses below HOT_END; live pids are those of this machine."""

    supported_actions = frozenset(Action)

    def __init__(self, name: str):
        self.mode = name
        self.name = name  # type: ignore[misc]

    def attach(self, target) -> None:
        if self.mode != "paddr" and not _alive(target.pid):
            raise einval(f"no process {target.pid}")

    def target_valid(self, target) -> bool:
        return self.mode == "paddr" or _alive(target.pid)

    def target_mappings(self, target):
        return [(0x10000, 0x10000 + (8 << 20)), (0x40000000, 0x40000000 + (256 << 20)),
                (0x7FF000000000, 0x7FF000000000 + (1 << 20))]

    def default_ranges(self, target):
        return [FAKE_RAM]

    def check_accesses(self, target, addrs: np.ndarray) -> np.ndarray:
        return np.asarray(addrs) < HOT_END


class FakeVaddr(FakeOps):
    auto_regions = True


class FakePaddr(FakeOps):
    targets_have_pid = False


def fake_factory(name: str) -> Operations:
    cls = {"vaddr": FakeVaddr, "paddr": FakePaddr}.get(name, FakeOps)
    return cls(name)
