"""The operations-set interface: what the engine asks of an address space.

Mirrors the kernel's ``struct damon_operations`` with one change for speed:
the engine picks the sampling address of every region itself (uniformly in
the region, as every kernel operations set does) and hands an operations set
whole arrays, so that a sample of 1000 regions is one call, not 1000.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ..core.damos import Action, Scheme
from ..core.regions import AddrRange
from ..core.score import MAX_SCORE, cold_scores, hot_scores

if TYPE_CHECKING:
    from ..core.context import Context
    from ..core.target import Target


class Operations:
    """Base class of operations sets. Subclasses override what they support."""

    #: the keyword of ``avail_operations`` / ``operations``
    name: ClassVar[str] = ""
    #: targets' regions follow the target's mappings (vaddr): the engine builds
    #: the "three regions" from :meth:`target_mappings` at start and on update
    auto_regions: ClassVar[bool] = False
    #: targets are processes (vaddr, fvaddr): they carry a pid
    targets_have_pid: ClassVar[bool] = True
    #: actions this set can really apply; others are rejected at start/commit
    supported_actions: ClassVar[frozenset[Action]] = frozenset({Action.STAT})
    #: actions prioritized coldest-first (others hottest-first or all equal)
    cold_first_actions: ClassVar[frozenset[Action]] = frozenset({Action.PAGEOUT})
    hot_first_actions: ClassVar[frozenset[Action]] = frozenset()

    # -- lifecycle -------------------------------------------------------------
    def check_ctx(self, ctx: Context) -> None:
        """Raise DamonError(EINVAL) for a context this set cannot run (at on/commit)."""
        from ..errors import einval

        for i, s in enumerate(ctx.schemes):
            if s.action not in self.supported_actions:
                raise einval(
                    f"operations set {self.name!r} cannot apply action "
                    f"{s.action.value!r} (scheme {i})"
                )

    def init(self, ctx: Context) -> None:
        """Called once when the kdamond starts, before the first sample."""

    def update(self, ctx: Context) -> None:
        """Called every update interval (after the engine's own region update)."""

    def cleanup(self, ctx: Context) -> None:
        """Called once when the kdamond stops; release every resource."""

    def attach(self, target: Target) -> None:
        """Resolve a target (a pid to a process handle, ...); raise EINVAL if invalid."""

    def detach(self, target: Target) -> None:
        """Release what :meth:`attach` took."""

    def target_valid(self, target: Target) -> bool:
        return True

    # -- regions ---------------------------------------------------------------
    def target_mappings(self, target: Target) -> list[tuple[int, int]]:
        """Sorted mapped ranges of a target's address space (for auto_regions sets)."""
        return []

    def default_ranges(self, target: Target) -> list[AddrRange]:
        """Ranges for a target the user gave no region (paddr: the biggest System RAM)."""
        return []

    # -- access checks ---------------------------------------------------------
    def prepare_access_checks(self, target: Target, addrs: np.ndarray) -> None:
        """Clear the accessed state of the page at each address (one per region)."""

    def check_accesses(self, target: Target, addrs: np.ndarray) -> np.ndarray:
        """Whether each page at ``addrs`` was accessed since its preparation."""
        raise NotImplementedError

    # -- DAMOS -----------------------------------------------------------------
    def apply_scheme(self, ctx: Context, target: Target, start: int, end: int,
                     scheme: Scheme) -> tuple[int, int]:
        """Apply ``scheme.action`` to ``[start, end)``.

        Returns (bytes the action was applied to, bytes that passed ops filters).
        Never report as applied what the system did not accept.
        """
        return 0, end - start

    def scheme_scores(self, ctx: Context, nr_accesses: np.ndarray, age: np.ndarray,
                      scheme: Scheme) -> np.ndarray:
        """Priority scores of regions for ``scheme`` (higher: applied first)."""
        if scheme.action in self.cold_first_actions:
            return cold_scores(nr_accesses, age, ctx.attrs, scheme.quota)
        if scheme.action in self.hot_first_actions:
            return hot_scores(nr_accesses, age, ctx.attrs, scheme.quota)
        return np.full(len(nr_accesses), MAX_SCORE, dtype=np.int64)

    # -- system metrics for watermarks and quota goals ---------------------------
    def free_mem_rate(self) -> int | None:
        """Free memory per mille of total, or None if unknown."""
        return None

    def some_mem_psi_total_us(self) -> int:
        return 0
