"""A small operations set with known accesses, for core tests.

The simulated operations set (``pydamon.ops.sim``) is the real thing for
experiments; core tests use this smaller one so that each test states its
exact ground truth in a line.
"""

from __future__ import annotations

import numpy as np

import pydamon as damon
from pydamon.ops.base import Operations

MIB = 1 << 20
GIB = 1 << 30


class ToyOps(Operations):
    """Accesses are a function of the address (and optionally of time).

    ``hot``: list of (start, end) ranges accessed at every sample; all other
    addresses are never accessed. ``mappings``: what target_mappings reports.
    Every apply is recorded; ``apply_ns_per_byte`` charges virtual time.
    """

    name = "toy"
    auto_regions = True
    supported_actions = frozenset(damon.Action)
    cold_first_actions = frozenset({damon.Action.PAGEOUT})

    def __init__(self, mappings=None, hot=(), apply_ns_per_byte: float = 0.0,
                 free_mem_rate: int | None = None, clock=None):
        self.mappings = list(mappings or [])
        self.hot = list(hot)
        self.applied: list[tuple[str, int, int]] = []
        self.apply_ns_per_byte = apply_ns_per_byte
        self.free_rate = free_mem_rate
        self.valid = True
        self.nr_prepare = 0
        self.nr_check = 0

    def target_mappings(self, target):
        return self.mappings

    def target_valid(self, target):
        return self.valid

    def prepare_access_checks(self, target, addrs):
        self.nr_prepare += 1

    def check_accesses(self, target, addrs):
        self.nr_check += 1
        out = np.zeros(len(addrs), dtype=bool)
        for lo, hi in self.hot:
            out |= (addrs >= lo) & (addrs < hi)
        return out

    def apply_scheme(self, ctx, target, start, end, scheme):
        self.applied.append((scheme.action.value, start, end))
        ctx.clock.charge_ns(int((end - start) * self.apply_ns_per_byte))
        return end - start, end - start

    def free_mem_rate(self):
        return self.free_rate


# A process-like layout: text, heap, a 1 GiB anonymous area, libraries, stack.
LAYOUT = [
    (0x400000, 0x600000),
    (0x1000000, 0x1400000),
    (0x7F0000000000, 0x7F0040000000),
    (0x7F0080000000, 0x7F0080400000),
    (0x7FFF00000000, 0x7FFF00100000),
]
HOT = (0x7F0010000000, 0x7F0014000000)  # 64 MiB inside the 1 GiB area


def make_ctx(ops, *, schemes=(), attrs=None, targets=None, seed=1):
    return damon.Context(
        ops,
        attrs or damon.MonitoringAttrs(),
        targets if targets is not None else [damon.Target(pid=1)],
        list(schemes),
        clock=damon.VirtualClock(),
        seed=seed,
    )
