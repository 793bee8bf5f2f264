"""Monitoring targets: a process (vaddr, fvaddr), the physical address space
(paddr), or a simulated address space."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .regions import AddrRange, RegionArray, validate_ranges


@dataclass(eq=False)
class Target:
    """A monitoring target.

    ``pid`` names a process for the operations sets that take processes.
    ``init_regions`` are the user's initial regions (the sysfs ``regions/``
    directory, debugfs ``init_regions``); an empty list lets the operations
    set choose (vaddr: the three regions; paddr: the biggest System RAM).
    """

    pid: int | None = None
    init_regions: list[AddrRange] = field(default_factory=list)
    obsolete: bool = False
    # --- runtime, owned by the kdamond ---
    regions: RegionArray = field(default_factory=RegionArray)
    #: what the operations set attached to this target (pidfd, simulated process...)
    handle: Any = None
    sampling_addrs: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __post_init__(self) -> None:
        self.init_regions = [
            r if isinstance(r, AddrRange) else AddrRange(*r) for r in self.init_regions
        ]

    def validate(self) -> None:
        validate_ranges(self.init_regions)

    @property
    def nr_regions(self) -> int:
        return len(self.regions)

    def set_init_regions(self, ranges: Iterable[AddrRange | tuple[int, int]]) -> None:
        self.init_regions = [r if isinstance(r, AddrRange) else AddrRange(*r) for r in ranges]
        self.validate()
