"""What a kdamond publishes: one ``damon_aggregated`` batch per target per aggregation."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AggregatedEvent:
    """The ``damon_aggregated`` tracepoint, batched: every region of one target.

    The kernel emits one tracepoint per region, in address order, at the end
    of each aggregation interval (after merging, before the counters reset).
    Arrays here hold exactly those rows; :meth:`rows` yields them one by one.
    """

    time_ns: int  # the kdamond clock's time of the aggregation
    kdamond_idx: int
    ctx_idx: int
    target_idx: int
    start: np.ndarray
    end: np.ndarray
    nr_accesses: np.ndarray
    age: np.ndarray

    @property
    def nr_regions(self) -> int:
        return len(self.start)

    def rows(self) -> Iterator[tuple[int, int, int, int]]:
        yield from zip(
            self.start.tolist(), self.end.tolist(), self.nr_accesses.tolist(),
            self.age.tolist(), strict=True,
        )
