"""The operations-set interface and registry: what the engine asks of an address space.

Mirrors the kernel's ``struct damon_operations`` with one change for speed:
the engine picks the sampling address of every region itself (uniformly in
the region, as every kernel operations set does) and hands an operations set
whole arrays, so that a sample of 1000 regions is one call, not 1000.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ..errors import einval
from .damos import Action, Scheme
from .regions import AddrRange
from .score import MAX_SCORE, cold_scores, hot_scores

if TYPE_CHECKING:
    from .context import Context
    from .target import Target


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

    def check_accesses_batch(self, target: Target, addrs: np.ndarray, t0_ns: np.ndarray,
                             t1_ns: np.ndarray) -> np.ndarray:
        """Many samples at once, for virtual-time runs (optional).

        ``addrs[i]`` holds sample i's addresses (one per region), prepared at
        ``t0_ns[i]`` and checked at ``t1_ns[i]``; return a boolean array of the
        same shape. Implement it only where accesses are a function of time
        that can be evaluated ahead (simulations): the engine then takes all
        the samples between two events of the kdamond in one call.
        """
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


# -- the registry (the kernel's damon_register_ops()/damon_select_ops()) ------------------

OpsFactory = Callable[[], Operations]
_registry: dict[str, OpsFactory] = {}


def register_ops(name: str, factory: OpsFactory) -> None:
    """Register an operations set; registering a name twice is EINVAL, as in the kernel."""
    if name in _registry:
        raise einval(f"operations set {name!r} is already registered")
    _registry[name] = factory


def unregister_ops(name: str) -> None:
    _registry.pop(name, None)


def available_ops() -> list[str]:
    """Names of the registered operations sets (the sysfs ``avail_operations``)."""
    return list(_registry)


def make_ops(name: str) -> Operations:
    """A new instance of the operations set registered as ``name``; EINVAL if none."""
    try:
        factory = _registry[name]
    except KeyError:
        raise einval(f"operations set {name!r} is not available") from None
    return factory()
