"""A monitoring context: what to monitor, how, and what to do about it.

The counterpart of the kernel's ``struct damon_ctx``. A context is built by
the user (or by the sysfs/debugfs models), handed to a :class:`Kdamond` to
run, and can be replaced while running by committing another context into
it (:meth:`Context.commit_from`, the kernel's damon_commit_ctx()).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from ..errors import einval
from .attrs import MonitoringAttrs
from .clock import Clock, RealClock
from .damos import Scheme
from .events import AggregatedEvent
from .operations import Operations, make_ops
from .target import Target

# Callbacks return True to stop the kdamond, like the kernel's damon_callback.
ContextCallback = Callable[["Context"], bool | None]
AggregationListener = Callable[[AggregatedEvent], None]


@dataclass
class Callbacks:
    after_sampling: ContextCallback | None = None
    after_aggregation: ContextCallback | None = None
    after_wmarks_check: ContextCallback | None = None
    before_terminate: ContextCallback | None = None


class Context:
    """Monitoring attributes, operations set, targets and schemes of one kdamond.

    ``ops`` is an operations-set name (``"vaddr"``, ``"paddr"``, ``"sim"``...)
    or an :class:`~pydamon.ops.Operations` instance. ``clock`` and ``rng``
    (or ``seed``) make runs reproducible: a :class:`VirtualClock` and a fixed
    seed give the same regions, events and stats on every run.
    """

    def __init__(
        self,
        ops: object = "vaddr",
        attrs: MonitoringAttrs | None = None,
        targets: Iterable[Target] = (),
        schemes: Iterable[Scheme] = (),
        *,
        clock: Clock | None = None,
        rng: np.random.Generator | None = None,
        seed: int | None = None,
    ):
        self.ops: Operations = make_ops(ops) if isinstance(ops, str) else ops  # type: ignore[assignment]
        self.attrs = attrs if attrs is not None else MonitoringAttrs()
        self.targets: list[Target] = list(targets)
        self.schemes: list[Scheme] = list(schemes)
        self.clock: Clock = clock if clock is not None else RealClock()
        self.rng = rng if rng is not None else np.random.default_rng(seed)
        self.callbacks = Callbacks()
        self.aggregation_listeners: list[AggregationListener] = []
        # indices the trace stream reports (set by whoever owns the kdamond)
        self.kdamond_idx = 0
        self.ctx_idx = 0
        # --- runtime (the kdamond's) ---
        self.passed_sample_intervals = 0
        self.next_aggregation_sis = 0
        self.next_ops_update_sis = 0
        self.next_intervals_tune_sis = 0
        self.last_nr_regions_split = 0
        self.sz_limit = 0

    @property
    def ops_name(self) -> str:
        return self.ops.name

    def add_aggregation_listener(self, fn: AggregationListener) -> None:
        self.aggregation_listeners.append(fn)

    def remove_aggregation_listener(self, fn: AggregationListener) -> None:
        try:
            self.aggregation_listeners.remove(fn)
        except ValueError:
            pass

    # -- validation ---------------------------------------------------------
    def validate(self) -> None:
        """Raise DamonError for what the kernel rejects at ``on``/``commit``."""
        self.attrs.validate()
        if not self.ops.targets_have_pid and len(self.targets) > 1:
            raise einval(f"{self.ops_name} takes at most one target")
        for t in self.targets:
            t.validate()
        for s in self.schemes:
            s.validate()
        self.ops.check_ctx(self)

    # -- runtime helpers ----------------------------------------------------
    def sample_interval(self) -> int:
        return self.attrs.sample_us or 1

    def set_attrs(self, attrs: MonitoringAttrs) -> None:
        """Apply new attributes now (damon_set_attrs()): rescale counters, re-time schemes."""
        attrs.validate()
        old = self.attrs
        aggregating = self.passed_sample_intervals < self.next_aggregation_sis
        sample = attrs.sample_us or 1
        self.next_aggregation_sis = self.passed_sample_intervals + attrs.aggr_us // sample
        self.next_ops_update_sis = self.passed_sample_intervals + attrs.update_us // sample
        if old.sample_us and old.aggr_us and attrs.sample_us and attrs.aggr_us:
            for t in self.targets:
                _rescale_results(t, old, attrs, aggregating)
        self.attrs = attrs
        for s in self.schemes:
            self.set_next_apply_sis(s)

    def set_next_apply_sis(self, s: Scheme) -> None:
        interval = s.apply_interval_us or self.attrs.aggr_us
        s.next_apply_sis = self.passed_sample_intervals + interval // self.sample_interval()

    def commit_from(self, src: Context) -> None:
        """Take ``src``'s parameters, keep results and stats (damon_commit_ctx()).

        Schemes and targets are matched by position: existing ones take the
        new parameters and keep their runtime state (stats, regions); extra
        ones are added; missing ones are removed. A target given regions gets
        them through damon_set_regions(); one without keeps its regions.
        Attributes change last, rescaling nr_accesses and age.
        """
        from .regions import RegionArray, set_regions

        # schemes
        for i, s in enumerate(src.schemes):
            if i < len(self.schemes):
                self.schemes[i].commit_from(s)
            else:
                new = Scheme()
                new.commit_from(s)
                self.schemes.append(new)
                self.set_next_apply_sis(new)
        del self.schemes[len(src.schemes):]
        # targets
        ops_changed = src.ops.name != self.ops.name
        for i, t in enumerate(src.targets):
            if i < len(self.targets):
                dst = self.targets[i]
                if t.init_regions:
                    dst.regions = set_regions(dst.regions, t.init_regions)
                dst.init_regions = list(t.init_regions)
                if dst.pid != t.pid or ops_changed:
                    self.ops.detach(dst)
                    dst.pid = t.pid
                    dst.handle = None
                dst.obsolete = t.obsolete
            else:
                new_t = Target(pid=t.pid, init_regions=list(t.init_regions))
                new_t.regions = (
                    set_regions(RegionArray(0), t.init_regions) if t.init_regions else RegionArray(0)
                )
                self.targets.append(new_t)
        for gone in self.targets[len(src.targets):]:
            self.ops.detach(gone)
            for s in self.schemes:
                qs = s.quota_state
                if qs.charge_target_from is not None and qs.charge_target_from >= len(src.targets):
                    qs.charge_target_from = None
                    qs.charge_addr_from = 0
        del self.targets[len(src.targets):]
        self.set_attrs(src.attrs)
        if ops_changed:
            old_ops = self.ops
            old_ops.cleanup(self)
            self.ops = src.ops


def _rescale_results(t: Target, old: MonitoringAttrs, new: MonitoringAttrs, aggregating: bool) -> None:
    r = t.regions
    if not len(r):
        return
    old_max = max(old.max_nr_accesses, 1)

    def conv(nr: np.ndarray) -> np.ndarray:
        return (nr * 10000 // old_max) * new.max_nr_accesses // 10000

    if not aggregating:
        r.nr_accesses = conv(r.nr_accesses)
        r.nr_accesses_bp = r.nr_accesses * 10000
    else:
        r.last_nr_accesses = conv(r.last_nr_accesses)
        r.nr_accesses_bp = r.last_nr_accesses * 10000
        r.nr_accesses = np.zeros_like(r.nr_accesses)
    r.age = r.age * old.aggr_us // new.aggr_us
