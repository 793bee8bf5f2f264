"""The kdamond: the worker that runs one context's monitoring loop.

One iteration of :meth:`Kdamond.step` is one sampling interval of the
kernel's kdamond_fn(): watermark check, prepare access checks, sleep,
check accesses, and at aggregation boundaries merge, apply schemes,
publish ``damon_aggregated``, reset and split; at update boundaries refresh
the regions from the target's mappings.

A kdamond runs in its own thread (:meth:`start`) or in the caller's
(:meth:`run`), the latter being how virtual-time experiments go fastest.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import DamonError, ebusy, einval, eperm
from .adapt import merge_regions_of, split_regions_of
from .attrs import MIN_REGION
from .clock import StopEvent
from .context import Context
from .damos import TriedRegion, WatermarkMetric
from .events import AggregatedEvent
from .operations import Operations
from .quota import feed_loop_next_input, wmark_wait_us
from .regions import RegionArray, init_regions_evenly, set_regions, three_regions
from .schemes_apply import WalkControl, apply_schemes

log = logging.getLogger("pydamon.kdamond")

# damon_start()'s exclusivity bookkeeping, shared by every kdamond of the process
_damon_lock = threading.Lock()
_nr_running = 0
_running_exclusive = False


def nr_running_kdamonds() -> int:
    with _damon_lock:
        return _nr_running


class _Call:
    def __init__(self, fn: Callable[[Context], Any]):
        self.fn = fn
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self.canceled = False


class Kdamond:
    """Runs a :class:`Context`.

    ``start()``/``stop()`` run it in a thread named ``kdamond.N``;
    ``run(...)`` runs it in the calling thread until a stop condition.
    ``commit(ctx)`` replaces its parameters while it runs; ``call(fn)`` runs
    ``fn(ctx)`` between two samples; ``walk_schemes()`` returns the regions
    each scheme is next tried on.
    """

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self._thread: threading.Thread | None = None
        self._stop = StopEvent()
        self._lock = threading.Lock()
        self._calls: list[_Call] = []
        self._walk: WalkControl | None = None
        self._walk_done = threading.Event()
        self._running = False
        self._initialized = False
        self._exclusive = False
        self.tid: int | None = None
        self.error: BaseException | None = None

    # -- state ------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._running

    @property
    def pid(self) -> int | None:
        """The worker thread's id (what ``ps -L`` shows), or None when off."""
        return self.tid if self._running else None

    # -- start / stop -------------------------------------------------------------
    def start(self, exclusive: bool = False) -> None:
        """Validate the context and start the worker thread (damon_start())."""
        start_kdamonds([self], exclusive)

    def stop(self, timeout: float | None = 10.0) -> None:
        """Ask the worker to stop and wait for it (damon_stop()); EPERM if not running."""
        thread = self._thread
        if not self._running or thread is None:
            raise eperm("kdamond is not running")
        self._stop.set()
        if thread is not threading.current_thread():
            thread.join(timeout)

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self, *, duration_us: int | None = None, nr_samples: int | None = None,
            until: Callable[[Context], bool] | None = None) -> None:
        """Run in the calling thread until a stop condition, then terminate.

        With a virtual clock this is the fast way to simulate hours of
        monitoring. Raises what validation raises.
        """
        global _nr_running
        with _damon_lock:
            if self._running:
                raise ebusy("kdamond is already running")
            self._prepare()
            _nr_running += 1
            self._running = True
        self._stop.clear()
        self.tid = threading.get_native_id()
        end_ns = None if duration_us is None else self.ctx.clock.now_ns() + duration_us * 1000
        try:
            self._init_loop()
            ctx = self.ctx
            sample_ns = max(ctx.attrs.sample_us, 1) * 1000
            n = 0
            while True:
                if nr_samples is not None and n >= nr_samples:
                    break
                now = ctx.clock.now_ns()
                if end_ns is not None and now >= end_ns:
                    break
                if until is not None and until(ctx):
                    break
                # how many samples may pass before a stop condition is looked at again
                budget = 1 if until is not None else 1 << 30
                if nr_samples is not None:
                    budget = min(budget, nr_samples - n)
                if end_ns is not None:
                    budget = min(budget, max(1, -(-(end_ns - now) // sample_ns)))
                before = ctx.passed_sample_intervals
                if not self.step(max_batch=budget):
                    break
                n += max(1, ctx.passed_sample_intervals - before)
        finally:
            self._terminate()

    def _prepare(self) -> None:
        ctx = self.ctx
        ctx.validate()
        attached = []
        try:
            for t in ctx.targets:
                ctx.ops.attach(t)
                attached.append(t)
        except BaseException:
            for t in attached:
                ctx.ops.detach(t)
            raise

    def _thread_main(self, name: str, started: threading.Event) -> None:
        self.tid = threading.get_native_id()
        _set_thread_name(name)
        started.set()
        try:
            self._init_loop()
            while self.step():
                pass
        except BaseException as e:  # a crash stops this kdamond, never the process
            self.error = e
            log.exception("%s stopped on an error", name)
        finally:
            self._terminate()

    # -- requests from other threads -------------------------------------------------
    def call(self, fn: Callable[[Context], Any], timeout: float | None = None) -> Any:
        """Run ``fn(ctx)`` in the worker between two samples (damon_call()) and return its result."""
        c = _Call(fn)
        with self._lock:
            if not self._running:
                raise einval("kdamond is not running")
            self._calls.append(c)
        if not c.done.wait(timeout):
            with self._lock:
                if c in self._calls:
                    self._calls.remove(c)
            raise DamonError(errno.ETIMEDOUT, "kdamond did not answer in time")
        if c.canceled:
            raise DamonError(errno.ECANCELED, "kdamond stopped before the call")
        if c.error is not None:
            raise c.error
        return c.result

    def commit(self, src: Context, timeout: float | None = 30.0) -> None:
        """Online commit: validate ``src`` and take its parameters while running.

        Errors (EINVAL for bad attributes, a dead pid, an unsupported action)
        are raised here and the running context is left untouched.
        """
        src.validate()
        for t in src.targets:
            src.ops.attach(t)
        for t in src.targets:
            src.ops.detach(t)

        def do_commit(ctx: Context) -> None:
            old_ops = ctx.ops
            ctx.commit_from(src)
            if ctx.ops is not old_ops:
                ctx.ops.init(ctx)
            for t in ctx.targets:
                if t.handle is None:
                    ctx.ops.attach(t)
                if not len(t.regions):
                    self._init_target_regions(t)
            ctx.sz_limit = self._region_sz_limit()

        if not self._running:
            self.ctx.commit_from(src)
            return
        self.call(do_commit, timeout)

    def walk_schemes(self, timeout: float | None = None) -> list[list[TriedRegion]]:
        """Regions each scheme is tried on in its next apply interval (damos_walk()).

        Returns one list per scheme; waits until every scheme has been
        applied once (or the walk is canceled by watermarks or stop, when the
        lists hold what was collected). EBUSY if a walk is already pending.
        """
        with self._lock:
            if not self._running:
                raise einval("kdamond is not running")
            if self._walk is not None:
                raise ebusy("a scheme walk is already pending")
            walk = WalkControl(len(self.ctx.schemes))
            self._walk = walk
            self._walk_done.clear()
        if not self.ctx.schemes:
            with self._lock:
                self._walk = None
            return []
        if not self._walk_done.wait(timeout):
            with self._lock:
                self._walk = None
            raise DamonError(errno.ETIMEDOUT, "schemes were not applied in time")
        return walk.regions

    # -- the loop -----------------------------------------------------------------
    def _need_stop(self) -> bool:
        """A stop was requested, or every target is gone (kdamond_need_stop())."""
        if self._stop.is_set():
            return True
        ctx = self.ctx
        if not ctx.targets:
            return False
        valid = ctx.ops.target_valid
        return not any(valid(t) for t in ctx.targets)

    def _init_loop(self) -> None:
        ctx = self.ctx
        sample = ctx.sample_interval()
        ctx.passed_sample_intervals = 0
        ctx.next_aggregation_sis = ctx.attrs.aggr_us // sample
        ctx.next_ops_update_sis = ctx.attrs.update_us // sample
        ctx.next_intervals_tune_sis = ctx.next_aggregation_sis * ctx.attrs.intervals_goal.aggrs
        for s in ctx.schemes:
            s.next_apply_sis = (s.apply_interval_us or ctx.attrs.aggr_us) // sample
            # a (re)started kdamond opens a fresh quota window on its own clock
            s.quota_state.charged_from_ns = None
        ctx.ops.init(ctx)
        for t in ctx.targets:
            self._init_target_regions(t)
        ctx.sz_limit = self._region_sz_limit()
        self._initialized = True

    def _init_target_regions(self, t) -> None:
        ctx = self.ctx
        if t.init_regions:
            t.regions = set_regions(RegionArray(0), t.init_regions)
            return
        if ctx.ops.auto_regions:
            ranges = three_regions(ctx.ops.target_mappings(t))
            t.regions = (
                init_regions_evenly(ranges, ctx.attrs.min_nr_regions) if ranges else RegionArray(0)
            )
            return
        ranges = ctx.ops.default_ranges(t)
        t.regions = set_regions(RegionArray(0), ranges) if ranges else RegionArray(0)

    def _region_sz_limit(self) -> int:
        ctx = self.ctx
        total = sum(t.regions.total_size for t in ctx.targets)
        if ctx.attrs.min_nr_regions:
            total //= ctx.attrs.min_nr_regions
        return max(total, MIN_REGION)

    def step(self, max_batch: int = 1) -> bool:
        """One sampling interval (or a batch, see below). False when the kdamond must stop.

        With a virtual clock and an operations set that checks many samples
        at once (:meth:`Operations.check_accesses_batch`), the samples up to
        the next one where anything but counting happens (aggregation, a
        scheme's apply interval, the ops update) are taken in one batch of at
        most ``max_batch``: the counters end exactly as if taken one by one.
        """
        ctx = self.ctx
        active = self._wait_activation()  # also where a stop request is seen
        if not active:
            return active is None
        next_aggr = ctx.next_aggregation_sis
        next_update = ctx.next_ops_update_sis
        ops = ctx.ops
        k = self._batch_len(max_batch)
        if k > 1:
            max_nr = self._sample_batch(k)
        else:
            for t in ctx.targets:
                r = t.regions
                if len(r):
                    t.sampling_addrs = sampling_addresses(r, ctx.rng)
                    ops.prepare_access_checks(t, t.sampling_addrs)
            ctx.clock.sleep_us(ctx.attrs.sample_us, self._stop)
            ctx.passed_sample_intervals += 1
            max_nr = self._check_accesses()
        if ctx.callbacks.after_sampling and ctx.callbacks.after_sampling(ctx):
            return False
        aggregation = ctx.passed_sample_intervals >= next_aggr
        if aggregation:
            self._merge(max_nr // 10)
            if ctx.callbacks.after_aggregation and ctx.callbacks.after_aggregation(ctx):
                return False
        self._handle_calls()
        if ctx.schemes:
            with self._lock:
                walk = self._walk
            apply_schemes(ctx, walk)
            if walk is not None and walk.done:
                for scheme, regions in zip(ctx.schemes, walk.regions, strict=False):
                    scheme.tried_regions = regions
                self._finish_walk()
        else:
            self._cancel_walk()
        sample = ctx.sample_interval()
        if aggregation:
            goal = ctx.attrs.intervals_goal
            if goal.aggrs and ctx.passed_sample_intervals >= ctx.next_intervals_tune_sis:
                ctx.next_aggregation_sis = next_aggr
                ctx.next_intervals_tune_sis += ctx.attrs.aggr_samples * goal.aggrs
                self._tune_intervals()
                sample = ctx.sample_interval()
            ctx.next_aggregation_sis = next_aggr + ctx.attrs.aggr_us // sample
            self._reset_aggregated()
            self._split()
        if ctx.passed_sample_intervals >= next_update:
            ctx.next_ops_update_sis = next_update + ctx.attrs.update_us // sample
            self._update_regions()
            ops.update(ctx)
            ctx.sz_limit = self._region_sz_limit()
        return True

    def _batch_len(self, max_batch: int) -> int:
        """Samples that may be taken at once: only counting happens until the last one."""
        if max_batch <= 1:
            return 1
        ctx = self.ctx
        if not ctx.clock.is_virtual or ctx.callbacks.after_sampling is not None:
            return 1
        if type(ctx.ops).check_accesses_batch is Operations.check_accesses_batch:
            return 1
        if any(s.wmarks.metric is not WatermarkMetric.NONE for s in ctx.schemes):
            return 1  # watermarks are checked before every sample
        with self._lock:
            if self._calls or self._walk is not None:
                return 1
        events = [ctx.next_aggregation_sis, ctx.next_ops_update_sis]
        events.extend(s.next_apply_sis for s in ctx.schemes)
        return max(1, min(max_batch, min(events) - ctx.passed_sample_intervals))

    def _sample_batch(self, k: int) -> int:
        """``k`` samples at once; returns the largest nr_accesses, as after the last."""
        ctx = self.ctx
        sample_ns = ctx.attrs.sample_us * 1000
        t0 = ctx.clock.now_ns() + np.arange(k, dtype=np.int64) * sample_ns
        len_window = max(ctx.attrs.max_nr_accesses if ctx.attrs.sample_us else 1, 1)
        max_nr = 0
        for t in ctx.targets:
            r = t.regions
            if not len(r):
                continue
            npages = (r.end - r.start) >> 12
            addrs = r.start + ((ctx.rng.random((k, len(r))) * npages).astype(np.int64) << 12)
            if ctx.ops.target_valid(t):
                hits = np.asarray(ctx.ops.check_accesses_batch(t, addrs, t0, t0 + sample_ns),
                                  dtype=bool).sum(axis=0, dtype=np.int64)
            else:
                hits = np.zeros(len(r), dtype=np.int64)
            t.sampling_addrs = addrs[-1]
            # k steps of the pseudo moving sum, each dropping the same average
            r.nr_accesses += hits
            r.nr_accesses_bp += hits * 10000 - k * ((r.last_nr_accesses * 10000) // len_window)
            max_nr = max(max_nr, int(r.nr_accesses.max()))
        ctx.clock.sleep_us(k * ctx.attrs.sample_us, self._stop)
        ctx.passed_sample_intervals += k
        return max_nr

    def _check_accesses(self) -> int:
        ctx = self.ctx
        len_window = ctx.attrs.max_nr_accesses if ctx.attrs.sample_us else 1
        len_window = max(len_window, 1)
        max_nr = 0
        for t in ctx.targets:
            r = t.regions
            if not len(r):
                continue
            if ctx.ops.target_valid(t):
                accessed = np.asarray(ctx.ops.check_accesses(t, t.sampling_addrs), dtype=bool)
            else:
                accessed = np.zeros(len(r), dtype=bool)
            # the kernel's pseudo moving sum: drop an average sample of the
            # last window, add this one (damon_update_region_access_rate())
            hits = accessed.astype(np.int64)  # arithmetic beats boolean indexing here
            r.nr_accesses += hits
            r.nr_accesses_bp += hits * 10000 - (r.last_nr_accesses * 10000) // len_window
            max_nr = max(max_nr, int(r.nr_accesses.max()))
        return max_nr

    def _merge(self, threshold: int) -> None:
        ctx = self.ctx
        max_thres = ctx.attrs.aggr_us // ctx.sample_interval()
        while True:
            nr_regions = 0
            for t in ctx.targets:
                t.regions = merge_regions_of(t.regions, threshold, ctx.sz_limit)
                nr_regions += len(t.regions)
            threshold = max(1, threshold * 2)
            if not (nr_regions > ctx.attrs.max_nr_regions and threshold // 2 < max_thres):
                break

    def _reset_aggregated(self) -> None:
        ctx = self.ctx
        listeners = ctx.aggregation_listeners
        now = ctx.clock.now_ns() if listeners else 0
        for ti, t in enumerate(ctx.targets):
            r = t.regions
            if listeners:
                ev = AggregatedEvent(now, ctx.kdamond_idx, ctx.ctx_idx, ti, r.start.copy(),
                                     r.end.copy(), r.nr_accesses.copy(), r.age.copy())
                for fn in listeners:
                    fn(ev)
            r.nr_accesses_bp = r.nr_accesses * 10000
            r.last_nr_accesses = r.nr_accesses
            r.nr_accesses = np.zeros_like(r.nr_accesses)

    def _split(self) -> None:
        ctx = self.ctx
        nr_regions = sum(len(t.regions) for t in ctx.targets)
        max_nr = ctx.attrs.max_nr_regions
        if nr_regions > max_nr // 2:
            return
        nr_subs = 3 if (ctx.last_nr_regions_split == nr_regions and nr_regions < max_nr // 3) else 2
        for t in ctx.targets:
            t.regions = split_regions_of(t.regions, nr_subs, ctx.rng)
        ctx.last_nr_regions_split = nr_regions

    def _update_regions(self) -> None:
        """vaddr's periodic update: fit regions to the current three regions."""
        ctx = self.ctx
        if not ctx.ops.auto_regions:
            return
        for t in ctx.targets:
            if not ctx.ops.target_valid(t):
                continue
            ranges = three_regions(ctx.ops.target_mappings(t))
            if ranges:
                t.regions = set_regions(t.regions, ranges)

    def _tune_intervals(self) -> None:
        ctx = self.ctx
        attrs = ctx.attrs
        goal = attrs.intervals_goal
        max_events = access_events = 0
        for t in ctx.targets:
            sz = t.regions.sizes
            max_events += int(sz.sum()) * attrs.aggr_samples
            access_events += int((sz * t.regions.nr_accesses).sum())
        target_events = max_events * goal.access_bp // 10000 or 1
        score_bp = access_events * 10000 // target_events
        adaptation_bp = feed_loop_next_input(100_000_000, score_bp) // 10000
        if adaptation_bp <= 10000:
            adaptation_bp = 5000 + adaptation_bp // 2
        if adaptation_bp == 10000:
            return
        from dataclasses import replace

        sample = min(goal.max_sample_us, attrs.sample_us * adaptation_bp // 10000)
        sample = max(goal.min_sample_us, sample)
        new = replace(attrs, sample_us=sample, aggr_us=sample * attrs.aggr_samples)
        ctx.set_attrs(new)

    def _wait_activation(self) -> bool | None:
        """Watermarks: True to sample now, None after a pause, False to stop.

        While every scheme is inactive the kernel sleeps in a loop here
        without sampling; this makes one round of that loop per call so that
        ``run()`` can see its own stop conditions between rounds.
        """
        ctx = self.ctx
        if self._need_stop():
            return False
        waits = [wmark_wait_us(ctx, s) for s in ctx.schemes]
        min_wait = min(waits) if waits else 0
        if not min_wait:
            return True
        ctx.clock.sleep_us(min_wait, self._stop)
        if ctx.callbacks.after_wmarks_check and ctx.callbacks.after_wmarks_check(ctx):
            return False
        self._handle_calls()
        self._cancel_walk()
        return None

    def _handle_calls(self, cancel: bool = False) -> None:
        while True:
            with self._lock:
                if not self._calls:
                    return
                c = self._calls.pop(0)
            if cancel:
                c.canceled = True
            else:
                try:
                    c.result = c.fn(self.ctx)
                except BaseException as e:
                    c.error = e
            c.done.set()

    def _finish_walk(self) -> None:
        with self._lock:
            self._walk = None
        self._walk_done.set()

    def _cancel_walk(self) -> None:
        with self._lock:
            walk = self._walk
            self._walk = None
        if walk is not None:
            self._walk_done.set()

    def _terminate(self) -> None:
        global _nr_running, _running_exclusive
        ctx = self.ctx
        # Unlike the kernel, regions are left in place so that a finished
        # run can still be inspected; the next start rebuilds them.
        try:
            if ctx.callbacks.before_terminate:
                ctx.callbacks.before_terminate(ctx)
            for t in ctx.targets:
                ctx.ops.detach(t)
            ctx.ops.cleanup(ctx)
        finally:
            with self._lock:
                self._running = False
            self._handle_calls(cancel=True)
            self._cancel_walk()
            with _damon_lock:
                _nr_running -= 1
                if not _nr_running and _running_exclusive:
                    _running_exclusive = False


def start_kdamonds(kdamonds: list[Kdamond], exclusive: bool = False) -> None:
    """Start several kdamonds as one group (the kernel's damon_start(ctxs, nr, exclusive)).

    The exclusivity check is made once for the whole group, so that an
    exclusive user (debugfs) can run several contexts at once while still
    excluding, and being excluded by, every other user. Every context is
    validated and attached before any thread starts: if one fails, none runs.
    """
    global _nr_running, _running_exclusive
    names: list[str] = []
    with _damon_lock:
        if any(k._running for k in kdamonds):
            raise ebusy("kdamond is already running")
        if (exclusive and _nr_running) or (not exclusive and _running_exclusive):
            raise ebusy("another DAMON user runs exclusively")
        prepared: list[Kdamond] = []
        try:
            for k in kdamonds:
                k._prepare()
                prepared.append(k)
        except BaseException:
            for k in prepared:
                for t in k.ctx.targets:
                    k.ctx.ops.detach(t)
            raise
        for k in kdamonds:
            names.append(f"kdamond.{_nr_running}")
            _nr_running += 1
            k._exclusive = exclusive
            k._running = True
        if exclusive and kdamonds:
            _running_exclusive = True
    for k, name in zip(kdamonds, names, strict=True):
        k._stop.clear()
        started = threading.Event()
        k._thread = threading.Thread(
            target=k._thread_main, args=(name, started), name=name, daemon=True
        )
        k._thread.start()
        started.wait()


def sampling_addresses(regions: RegionArray, rng: np.random.Generator) -> np.ndarray:
    """One uniformly random page address per region (damon_rand() over the region).

    Drawn as a page index from a float in [0, 1): cheaper than
    Generator.integers with per-element bounds, and exact for regions of
    fewer than 2**52 pages.
    """
    npages = (regions.end - regions.start) >> 12
    return regions.start + ((rng.random(len(npages)) * npages).astype(np.int64) << 12)


def _set_thread_name(name: str) -> None:
    """Name the OS thread so that ``ps -L`` and ``top -H`` show ``kdamond.N``."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass
