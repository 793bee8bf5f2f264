"""The DAMON sysfs tree (``/sys/kernel/mm/damon/admin``) as a tree of nodes.

Every directory and file of the kernel's hierarchy (the usage guide's, plus
the later files damo uses) is a :class:`~pydamon.interfaces.tree.Dir` or
:class:`~pydamon.interfaces.tree.File` here, with the kernel's read format,
mode, parser and errors. Writing ``on`` to a kdamond's ``state`` builds a
:class:`~pydamon.core.Context` from the files and runs it in a
:class:`~pydamon.core.Kdamond`; the other ``state`` keywords copy results
back into the files before the write returns.

Known, deliberate differences from the kernel are listed in
:data:`DIFFERENCES_FROM_KERNEL`.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

from ...core import (
    AccessPattern,
    Action,
    AddrRange,
    AggregatedEvent,
    Context,
    DamosFilter,
    FilterType,
    IntervalsGoal,
    Kdamond,
    MonitoringAttrs,
    Quota,
    QuotaGoal,
    QuotaGoalMetric,
    RealClock,
    Scheme,
    Target,
    WatermarkMetric,
    Watermarks,
)
from ...errors import DamonError, ebusy, einval
from ...ops import Operations
from ..tree import READ_ONLY, READ_WRITE, Dir, File, Node, Tree
from .parse import as_einval, kstrtobool, kstrtoint, kstrtouint, kstrtoul, sysfs_streq

log = logging.getLogger("pydamon.sysfs")

OpsFactory = Callable[[str], Operations]
AggregationListener = Callable[[AggregatedEvent], None]

#: operations-set keywords of the sysfs ``operations`` file, in kernel order
SYSFS_OPS = ("vaddr", "fvaddr", "paddr")

#: ``state`` keywords this model accepts
STATE_COMMANDS = (
    "on", "off", "commit", "commit_schemes_quota_goals", "update_schemes_stats",
    "update_schemes_tried_bytes", "update_schemes_tried_regions",
    "clear_schemes_tried_regions", "update_schemes_effective_quotas",
    "update_tuned_intervals",
)

#: A write of ``nr_*`` larger than this fails with ENOMEM after removing the
#: old children, as a huge value does in the kernel (whose limit is memory).
MAX_CHILDREN = 4096

#: Longest a state command waits for the kdamond (the kernel waits without
#: bound; a kdamond given a sampling interval of hours would hang the file).
COMMAND_TIMEOUT_S = 10.0

DIFFERENCES_FROM_KERNEL = (
    "tried_regions/<N> directories are numbered 0..n-1 per scheme (6.12 numbers them "
    "across schemes in walk order)",
    "commit with inputs the core rejects fails with EINVAL and leaves the running "
    "kdamond untouched (6.12 returns success and the kdamond stops)",
    "nr_* values above MAX_CHILDREN fail with ENOMEM (the kernel's limit is memory)",
    "addr_unit other than 1 is rejected with EINVAL at on/commit",
    "commit and commit_schemes_quota_goals give EBUSY when the kdamond does not answer "
    "within COMMAND_TIMEOUT_S; tried-regions updates give up after at most that long",
    "the layout is 6.15-6.18's (refresh_ms, addr_unit, intervals_goal/, core_filters/, "
    "ops_filters/, update_tuned_intervals); quotas/goals/<N>/path, dests/, "
    "obsolete_target and other newer files are absent",
)


def _store(fn: Callable[[str], None]) -> Callable[[str], None]:
    """Give a store function the kernel's input handling.

    An empty write changes nothing; a NUL byte ends the input (observed on
    6.12, since kernfs hands stores a C string).
    """

    def write(data: str) -> None:
        if not data:
            return
        nul = data.find("\0")
        fn(data if nul < 0 else data[:nul])

    return write


def _rw(read: Callable[[], str], write: Callable[[str], None]) -> File:
    return File(read=read, write=_store(write), mode=READ_WRITE)


def _ro(read: Callable[[], str]) -> File:
    return File(read=read, mode=READ_ONLY)


class _Values:
    """Plain attribute holder behind a directory's number files."""


def _number_files(values: object, names: dict[str, tuple[str, Callable[[str], int]]],
                  ) -> dict[str, Node]:
    """Read-write number files ``{file: (attribute, parser)}`` backed by ``values``."""
    files: dict[str, Node] = {}
    for fname, (attr, parse) in names.items():
        def read(attr: str = attr) -> str:
            return f"{getattr(values, attr)}\n"

        def write(data: str, attr: str = attr, parse=parse) -> None:
            setattr(values, attr, parse(data))

        files[fname] = _rw(read, write)
    return files


def _keyword_file(values: object, attr: str, keywords: tuple[str, ...],
                  accept: Callable[[str], bool] | None = None) -> File:
    def read() -> str:
        return f"{getattr(values, attr)}\n"

    def write(data: str) -> None:
        for kw in keywords:
            if sysfs_streq(data, kw):
                if accept is not None and not accept(kw):
                    break
                setattr(values, attr, kw)
                return
        raise einval(f"unknown keyword {data!r}")

    return _rw(read, write)


def _bool_file(values: object, attr: str) -> File:
    def read() -> str:
        return "Y\n" if getattr(values, attr) else "N\n"

    def write(data: str) -> None:
        setattr(values, attr, kstrtobool(data))

    return _rw(read, write)


class NumberedDir(Dir):
    """A directory with an ``nr_<items>`` file and children ``0``..``N-1``.

    Writing the number removes every child and creates N fresh ones with
    defaults, as the kernel does (damo writes ``nr_*`` only when it differs
    for this reason).
    """

    def __init__(self, nr_name: str, make_child: Callable[[int], Dir],
                 before_resize: Callable[[], None] | None = None,
                 changed: Callable[[], None] | None = None):
        super().__init__()
        self.items: list[Dir] = []
        self._make_child = make_child
        self._before_resize = before_resize
        self._changed = changed
        self.entries[nr_name] = _rw(lambda: f"{len(self.items)}\n", self._write_nr)

    def _write_nr(self, data: str) -> None:
        nr = kstrtoint(data)
        if nr < 0:
            raise einval("a negative number of directories")
        if self._before_resize is not None:
            self._before_resize()
        self.resize(nr)

    def resize(self, nr: int) -> None:
        for i in range(len(self.items)):
            del self.entries[str(i)]
        if self.items and self._changed is not None:
            self._changed()
        self.items = []
        if nr > MAX_CHILDREN:
            raise DamonError(errno.ENOMEM, f"cannot create {nr} directories")
        for i in range(nr):
            child = self._make_child(i)
            self.items.append(child)
            self.entries[str(i)] = child


# --------------------------------------------------------------------------
# monitoring_attrs, targets, regions
# --------------------------------------------------------------------------


class MonitoringAttrsDir(Dir):
    def __init__(self) -> None:
        super().__init__()
        iv = self.intervals = _Values()
        iv.sample_us, iv.aggr_us, iv.update_us = 5_000, 100_000, 60_000_000
        goal = self.goal = _Values()
        goal.access_bp = goal.aggrs = goal.min_sample_us = goal.max_sample_us = 0
        nr = self.nr_regions = _Values()
        nr.min, nr.max = 10, 1_000
        intervals = Dir(_number_files(iv, {
            "sample_us": ("sample_us", kstrtoul),
            "aggr_us": ("aggr_us", kstrtoul),
            "update_us": ("update_us", kstrtoul),
        }))
        intervals.entries["intervals_goal"] = Dir(_number_files(goal, {
            "access_bp": ("access_bp", kstrtoul),
            "aggrs": ("aggrs", kstrtoul),
            "min_sample_us": ("min_sample_us", kstrtoul),
            "max_sample_us": ("max_sample_us", kstrtoul),
        }))
        self.entries["intervals"] = intervals
        self.entries["nr_regions"] = Dir(_number_files(nr, {
            "min": ("min", kstrtoul), "max": ("max", kstrtoul),
        }))

    def to_attrs(self) -> MonitoringAttrs:
        iv, goal, nr = self.intervals, self.goal, self.nr_regions
        return MonitoringAttrs(
            sample_us=iv.sample_us, aggr_us=iv.aggr_us, update_us=iv.update_us,
            min_nr_regions=nr.min, max_nr_regions=nr.max,
            intervals_goal=IntervalsGoal(goal.access_bp, goal.aggrs, goal.min_sample_us,
                                         goal.max_sample_us),
        )


class RegionDir(Dir):
    def __init__(self) -> None:
        super().__init__()
        self.start = 0
        self.end = 0
        self.entries.update(_number_files(self, {
            "start": ("start", kstrtoul), "end": ("end", kstrtoul),
        }))


class TargetDir(Dir):
    def __init__(self, notify: Callable[[], None]) -> None:
        super().__init__()
        self.pid_target = 0
        self.entries.update(_number_files(self, {
            "pid_target": ("pid_target", as_einval(kstrtoint)),
        }))
        self.regions = NumberedDir("nr_regions", lambda i: RegionDir(), changed=notify)
        self.entries["regions"] = self.regions

    def to_target(self, takes_pid: bool) -> Target:
        ranges = [AddrRange(r.start, r.end) for r in self.regions.items]  # type: ignore[attr-defined]
        return Target(pid=self.pid_target if takes_pid else None, init_regions=ranges)


# --------------------------------------------------------------------------
# schemes
# --------------------------------------------------------------------------

_FILTER_TYPES = tuple(t.value for t in FilterType)


class FilterDir(Dir):
    """One DAMOS filter; ``layer`` is ``core``, ``ops`` or ``both`` (``filters/``)."""

    def __init__(self, layer: str) -> None:
        super().__init__()
        # kzalloc'ed in the kernel: type 0 (anon) even in core_filters/
        self.type = "anon"
        self.matching = False
        self.allow = False
        self.memcg_path = ""
        self.addr_start = self.addr_end = 0
        self.min = self.max = 0
        self.damon_target_idx = 0

        def accept(kw: str) -> bool:
            core = FilterType(kw).handled_by_core
            return layer == "both" or (layer == "core") == core

        e = self.entries
        e["type"] = _keyword_file(self, "type", _FILTER_TYPES, accept)
        e["matching"] = _bool_file(self, "matching")
        e["allow"] = _bool_file(self, "allow")

        def write_memcg(data: str) -> None:
            # kept as written, newline included (it reads back with two)
            self.memcg_path = data

        e["memcg_path"] = _rw(lambda: f"{self.memcg_path}\n", write_memcg)
        e.update(_number_files(self, {
            "addr_start": ("addr_start", kstrtoul),
            "addr_end": ("addr_end", kstrtoul),
            "min": ("min", kstrtoul),
            "max": ("max", kstrtoul),
            "damon_target_idx": ("damon_target_idx", kstrtoint),
        }))

    def to_filter(self) -> DamosFilter:
        ftype = FilterType(self.type)
        # A filter the kernel cannot build makes damon_sysfs_mk_scheme()
        # return NULL, which the caller reports as ENOMEM (observed on 6.12).
        if ftype is FilterType.ADDR and self.addr_end < self.addr_start:
            raise DamonError(errno.ENOMEM, "addr filter end is smaller than its start")
        if ftype is FilterType.HUGEPAGE_SIZE and self.min > self.max:
            raise DamonError(errno.ENOMEM, "hugepage_size filter min is larger than max")
        if ftype is FilterType.MEMCG and not _memcg_exists(self.memcg_path):
            raise DamonError(errno.ENOMEM, f"no memory cgroup {self.memcg_path!r}")
        return DamosFilter(
            type=ftype, matching=self.matching, allow=self.allow,
            addr_start=self.addr_start, addr_end=self.addr_end,
            target_idx=self.damon_target_idx, memcg_path=self.memcg_path.rstrip("\n"),
            sz_min=self.min, sz_max=self.max,
        )


def _memcg_exists(path: str) -> bool:
    path = path[:-1] if path.endswith("\n") else path
    if not path.startswith("/"):
        return False
    return os.path.isdir("/sys/fs/cgroup" + path)


class QuotaGoalDir(Dir):
    def __init__(self) -> None:
        super().__init__()
        self.target_metric = QuotaGoalMetric.USER_INPUT.value
        self.target_value = self.current_value = 0
        self.nid = 0
        e = self.entries
        e["target_metric"] = _keyword_file(
            self, "target_metric", tuple(m.value for m in QuotaGoalMetric))
        e.update(_number_files(self, {
            "target_value": ("target_value", kstrtoul),
            "current_value": ("current_value", kstrtoul),
            "nid": ("nid", kstrtoint),
        }))

    def to_goal(self) -> QuotaGoal:
        return QuotaGoal(metric=QuotaGoalMetric(self.target_metric),
                         target_value=self.target_value, current_value=self.current_value,
                         nid=self.nid)


class TriedRegionsDir(Dir):
    def __init__(self, notify: Callable[[], None]) -> None:
        super().__init__()
        self._notify = notify
        self.total_bytes = 0
        self.nr_regions = 0
        self.entries["total_bytes"] = _ro(lambda: f"{self.total_bytes}\n")

    def clear(self) -> None:
        for i in range(self.nr_regions):
            del self.entries[str(i)]
        if self.nr_regions:
            self._notify()
        self.nr_regions = 0
        self.total_bytes = 0

    def add(self, start: int, end: int, nr_accesses: int, age: int,
            sz_filter_passed: int) -> None:
        values = (start, end, nr_accesses, age, sz_filter_passed)
        names = ("start", "end", "nr_accesses", "age", "sz_filter_passed")
        region = Dir({n: _ro(lambda v=v: f"{v}\n") for n, v in zip(names, values, strict=True)})
        self.entries[str(self.nr_regions)] = region
        self.nr_regions += 1


class SchemeDir(Dir):
    def __init__(self, notify: Callable[[], None]) -> None:
        super().__init__()
        self.action = Action.STAT.value
        self.apply_interval_us = 0
        self.target_nid = -1
        e = self.entries
        e["action"] = _keyword_file(self, "action", tuple(a.value for a in Action))
        e.update(_number_files(self, {
            "apply_interval_us": ("apply_interval_us", kstrtoul),
            "target_nid": ("target_nid", kstrtoint),
        }))
        # access_pattern/{sz,nr_accesses,age}/{min,max}: all 0 on creation
        self.pattern: dict[str, _Values] = {}
        pattern_dir = Dir()
        for name in ("sz", "nr_accesses", "age"):
            rng = self.pattern[name] = _Values()
            rng.min = rng.max = 0
            pattern_dir.entries[name] = Dir(_number_files(rng, {
                "min": ("min", kstrtoul), "max": ("max", kstrtoul)}))
        e["access_pattern"] = pattern_dir
        # quotas
        q = self.quotas = _Values()
        q.ms = q.bytes = q.reset_interval_ms = 0
        q.effective_bytes = 0
        w = self.weights = _Values()
        w.sz_permil = w.nr_accesses_permil = w.age_permil = 0
        quotas_dir = Dir(_number_files(q, {
            "ms": ("ms", as_einval(kstrtoul)),
            "bytes": ("bytes", as_einval(kstrtoul)),
            "reset_interval_ms": ("reset_interval_ms", as_einval(kstrtoul)),
        }))
        quotas_dir.entries["effective_bytes"] = _ro(lambda: f"{q.effective_bytes}\n")
        quotas_dir.entries["weights"] = Dir(_number_files(w, {
            "sz_permil": ("sz_permil", kstrtouint),
            "nr_accesses_permil": ("nr_accesses_permil", kstrtouint),
            "age_permil": ("age_permil", kstrtouint),
        }))
        self.goals = NumberedDir("nr_goals", lambda i: QuotaGoalDir(), changed=notify)
        quotas_dir.entries["goals"] = self.goals
        e["quotas"] = quotas_dir
        # watermarks
        wm = self.wmarks = _Values()
        wm.metric = WatermarkMetric.NONE.value
        wm.interval_us = wm.high = wm.mid = wm.low = 0
        wmarks_dir = Dir({"metric": _keyword_file(
            wm, "metric", tuple(m.value for m in WatermarkMetric))})
        wmarks_dir.entries.update(_number_files(wm, {
            n: (n, kstrtoul) for n in ("interval_us", "high", "mid", "low")}))
        e["watermarks"] = wmarks_dir
        # filters: the "both" directory and the 6.15 core/ops split
        self.filter_dirs: dict[str, NumberedDir] = {}
        for name, layer in (("filters", "both"), ("core_filters", "core"),
                            ("ops_filters", "ops")):
            d = NumberedDir("nr_filters", lambda i, layer=layer: FilterDir(layer),
                            changed=notify)
            self.filter_dirs[name] = d
            e[name] = d
        # stats (read-only, refreshed by update_schemes_stats)
        st = self.stats = _Values()
        self.stat_names = ("nr_tried", "sz_tried", "nr_applied", "sz_applied",
                           "sz_ops_filter_passed", "qt_exceeds")
        for n in self.stat_names:
            setattr(st, n, 0)
        e["stats"] = Dir({n: _ro(lambda n=n: f"{getattr(st, n)}\n") for n in self.stat_names})
        self.tried_regions = TriedRegionsDir(notify)
        e["tried_regions"] = self.tried_regions

    def to_scheme(self) -> Scheme:
        p, q, w, wm = self.pattern, self.quotas, self.weights, self.wmarks
        goals = [g.to_goal() for g in self.goals.items  # type: ignore[attr-defined]
                 if g.target_value]  # goals without a target are skipped, as the kernel does
        filters = []
        # the kernel adds core_filters, then ops_filters, then filters
        for name in ("core_filters", "ops_filters", "filters"):
            filters += [f.to_filter() for f in self.filter_dirs[name].items]  # type: ignore[attr-defined]
        return Scheme(
            pattern=AccessPattern(p["sz"].min, p["sz"].max, p["nr_accesses"].min,
                                  p["nr_accesses"].max, p["age"].min, p["age"].max),
            action=Action(self.action),
            apply_interval_us=self.apply_interval_us,
            quota=Quota(ms=q.ms, sz=q.bytes, reset_interval_ms=q.reset_interval_ms,
                        weight_sz=w.sz_permil, weight_nr_accesses=w.nr_accesses_permil,
                        weight_age=w.age_permil, goals=goals),
            wmarks=Watermarks(WatermarkMetric(wm.metric), wm.interval_us, wm.high, wm.mid,
                              wm.low),
            target_nid=self.target_nid,
            filters=filters,
        )


# --------------------------------------------------------------------------
# contexts
# --------------------------------------------------------------------------


class ContextDir(Dir):
    def __init__(self, model: SysfsModel) -> None:
        super().__init__()

        def notify() -> None:
            model.structure_changed()

        self.operations = "vaddr"
        self.addr_unit = 1
        e = self.entries
        e["avail_operations"] = _ro(
            lambda: "".join(f"{name}\n" for name in model.avail_operations))
        e["operations"] = _keyword_file(self, "operations", SYSFS_OPS)
        e.update(_number_files(self, {"addr_unit": ("addr_unit", kstrtoul)}))
        self.attrs = MonitoringAttrsDir()
        e["monitoring_attrs"] = self.attrs
        self.targets = NumberedDir("nr_targets", lambda i: TargetDir(notify),
                                   changed=notify)
        e["targets"] = self.targets
        self.schemes = NumberedDir("nr_schemes", lambda i: SchemeDir(notify),
                                   changed=notify)
        e["schemes"] = self.schemes

    def scheme_dirs(self) -> list[SchemeDir]:
        return self.schemes.items  # type: ignore[return-value]

    def to_context(self, model: SysfsModel, kdamond_idx: int) -> Context:
        """Build the context ``on``/``commit`` hands the engine (damon_sysfs_build_ctx)."""
        name = self.operations
        if name not in model.avail_operations:
            raise einval(f"operations set {name!r} is not available")
        if self.addr_unit != 1:
            raise einval("addr_unit other than 1 is not supported")
        takes_pid = name in ("vaddr", "fvaddr")
        targets = [t.to_target(takes_pid) for t in self.targets.items]  # type: ignore[attr-defined]
        if not takes_pid and len(targets) > 1:
            raise einval("paddr takes at most one target")
        schemes = [s.to_scheme() for s in self.scheme_dirs()]
        attrs = self.attrs.to_attrs()
        attrs.validate()
        ctx = Context(model.ops_factory(name), attrs, targets, schemes, clock=RealClock())
        ctx.kdamond_idx = kdamond_idx
        for listener in model.aggregation_listeners:
            ctx.add_aggregation_listener(listener)
        return ctx


class KdamondDir(Dir):
    """``kdamonds/<N>/``: state, pid, refresh_ms and the contexts directory."""

    def __init__(self, model: SysfsModel, idx: int) -> None:
        super().__init__()
        self.model = model
        self.idx = idx
        self.kdamond: Kdamond | None = None
        self.refresh_ms = 0
        self._refresher: threading.Thread | None = None
        self._refresher_stop = threading.Event()
        e = self.entries
        e["state"] = _rw(self._read_state, self._write_state)
        e["pid"] = _ro(self._read_pid)
        e.update(_number_files(self, {"refresh_ms": ("refresh_ms", kstrtoul)}))
        self.contexts = NumberedDir("nr_contexts", lambda i: ContextDir(model),
                                    changed=model.structure_changed)
        self.contexts.entries["nr_contexts"] = _rw(
            lambda: f"{len(self.contexts.items)}\n", self._write_nr_contexts)
        e["contexts"] = self.contexts

    # -- files ---------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.kdamond is not None and self.kdamond.running

    def _read_state(self) -> str:
        return "on\n" if self.running else "off\n"

    def _read_pid(self) -> str:
        pid = self.kdamond.pid if self.kdamond is not None else None
        return f"{pid if pid is not None else -1}\n"

    def _write_nr_contexts(self, data: str) -> None:
        nr = kstrtoint(data)
        if not 0 <= nr <= 1:
            raise einval("only 0 or 1 context per kdamond")
        self.contexts.resize(nr)

    def _write_state(self, data: str) -> None:
        for cmd in STATE_COMMANDS:
            if sysfs_streq(data, cmd):
                break
        else:
            raise einval(f"unknown state command {data!r}")
        log.info("kdamonds/%d/state: %s", self.idx, cmd)
        try:
            getattr(self, "_cmd_" + cmd)()
        except DamonError as e:
            log.info("kdamonds/%d/state: %s failed: %s", self.idx, cmd, e)
            raise

    # -- commands ----------------------------------------------------------------
    def _context_dir(self) -> ContextDir:
        if len(self.contexts.items) != 1:
            raise einval("the kdamond needs exactly one context")
        return self.contexts.items[0]  # type: ignore[return-value]

    def _running_kdamond(self) -> Kdamond:
        if not self.running:
            raise einval("kdamond is not running")
        assert self.kdamond is not None
        return self.kdamond

    def _cmd_on(self) -> None:
        if self.running:
            raise ebusy("kdamond is already running")
        ctx = self._context_dir().to_context(self.model, self.idx)
        kdamond = Kdamond(ctx)
        kdamond.start(exclusive=False)
        self.kdamond = kdamond
        self._start_refresher()

    def _cmd_off(self) -> None:
        if self.kdamond is None:
            raise einval("kdamond was never started")
        self.kdamond.stop()
        self._stop_refresher()

    def _cmd_commit(self) -> None:
        kdamond = self._running_kdamond()
        ctx = self._context_dir().to_context(self.model, self.idx)
        _answered(lambda: kdamond.commit(ctx, timeout=COMMAND_TIMEOUT_S))

    def _paired_schemes(self) -> Iterator[tuple[Scheme, SchemeDir]]:
        """Running schemes with their directories (a removed directory is skipped)."""
        kdamond = self._running_kdamond()
        dirs = self._context_dir().scheme_dirs()
        yield from zip(kdamond.ctx.schemes, dirs, strict=False)

    def _cmd_update_schemes_stats(self) -> None:
        for scheme, sdir in self._paired_schemes():
            for n in sdir.stat_names:
                setattr(sdir.stats, n, getattr(scheme.stats, n))

    def _cmd_update_schemes_effective_quotas(self) -> None:
        for scheme, sdir in self._paired_schemes():
            sdir.quotas.effective_bytes = scheme.quota_state.esz

    def _cmd_update_tuned_intervals(self) -> None:
        kdamond = self._running_kdamond()
        attrs = kdamond.ctx.attrs
        iv = self._context_dir().attrs.intervals
        iv.sample_us, iv.aggr_us = attrs.sample_us, attrs.aggr_us

    def _cmd_clear_schemes_tried_regions(self) -> None:
        self._running_kdamond()
        for sdir in self._context_dir().scheme_dirs():
            sdir.tried_regions.clear()

    def _cmd_update_schemes_tried_regions(self) -> None:
        self._update_tried_regions(total_bytes_only=False)

    def _cmd_update_schemes_tried_bytes(self) -> None:
        self._update_tried_regions(total_bytes_only=True)

    def _update_tried_regions(self, total_bytes_only: bool) -> None:
        kdamond = self._running_kdamond()
        sdirs = self._context_dir().scheme_dirs()
        for sdir in sdirs:
            sdir.tried_regions.clear()
        ctx = kdamond.ctx
        # The kernel gives up after two apply intervals without an apply.
        longest_us = max((s.apply_interval_us or ctx.attrs.aggr_us for s in ctx.schemes),
                         default=ctx.attrs.aggr_us)
        timeout = min(2 * longest_us / 1e6 + 0.2, COMMAND_TIMEOUT_S)
        try:
            per_scheme = kdamond.walk_schemes(timeout)
        except DamonError as e:
            if e.errno == errno.ETIMEDOUT:
                log.info("kdamonds/%d: no scheme was applied in %.1f s", self.idx, timeout)
                return
            raise
        for regions, sdir in zip(per_scheme, sdirs, strict=False):
            tried = sdir.tried_regions
            for r in regions:
                tried.total_bytes += r.end - r.start
                if not total_bytes_only:
                    tried.add(r.start, r.end, r.nr_accesses, r.age, r.sz_filter_passed)

    def _cmd_commit_schemes_quota_goals(self) -> None:
        kdamond = self._running_kdamond()
        sdirs = self._context_dir().scheme_dirs()
        wanted = [[g.to_goal() for g in sdir.goals.items if g.target_value]  # type: ignore[attr-defined]
                  for sdir in sdirs]

        def commit_goals(ctx: Context) -> None:
            for scheme, goals in zip(ctx.schemes, wanted, strict=False):
                scheme.quota.goals = _merge_goals(scheme.quota.goals, goals)

        _answered(lambda: kdamond.call(commit_goals, timeout=COMMAND_TIMEOUT_S))

    # -- refresh_ms: periodic refresh of stats, tuned intervals, quotas -------------
    def _start_refresher(self) -> None:
        self._refresher_stop.clear()
        t = threading.Thread(target=self._refresh_loop, name=f"sysfs-refresh.{self.idx}",
                             daemon=True)
        self._refresher = t
        t.start()

    def _stop_refresher(self) -> None:
        self._refresher_stop.set()

    def _refresh_loop(self) -> None:
        stop = self._refresher_stop
        last = time.monotonic()
        while not stop.is_set() and self.running:
            period_s = self.refresh_ms / 1000
            # refresh_ms may change at any time: look again at least every 100 ms
            stop.wait(min(max(period_s - (time.monotonic() - last), 0.0), 0.1)
                      if period_s else 0.1)
            if stop.is_set() or not period_s or time.monotonic() - last < period_s:
                continue
            last = time.monotonic()
            with self.model.lock:
                if not self.running:
                    return
                try:
                    self._cmd_update_schemes_stats()
                    self._cmd_update_tuned_intervals()
                    self._cmd_update_schemes_effective_quotas()
                except DamonError:
                    return  # the kdamond stopped meanwhile

    def shutdown(self) -> None:
        self._stop_refresher()
        if self.running:
            assert self.kdamond is not None
            self.kdamond.stop()


def _answered(request: Callable[[], object]) -> None:
    """Run a request to the kdamond; a stop or no answer gets a kernel errno."""
    try:
        request()
    except DamonError as e:
        if e.errno == errno.ETIMEDOUT:
            raise ebusy("the kdamond did not answer in time") from None
        if e.errno == errno.ECANCELED:
            raise einval("the kdamond stopped") from None
        raise


def _merge_goals(current: list[QuotaGoal], wanted: list[QuotaGoal]) -> list[QuotaGoal]:
    """Give running goals the new parameters; keep their runtime state."""
    merged = []
    for i, new in enumerate(wanted):
        if i < len(current):
            goal = current[i]
            goal.metric, goal.target_value, goal.nid = new.metric, new.target_value, new.nid
            if goal.metric is QuotaGoalMetric.USER_INPUT:
                goal.current_value = new.current_value
            merged.append(goal)
        else:
            merged.append(replace(new))
    return merged


class SysfsModel:
    """State shared by the whole tree: operations sets and the tree lock."""

    def __init__(self, ops_factory: OpsFactory, avail_operations: list[str],
                 lock: threading.RLock,
                 aggregation_listeners: tuple[AggregationListener, ...] = ()):
        self.ops_factory = ops_factory
        self.avail_operations = avail_operations
        self.lock = lock
        #: get every context's damon_aggregated events (the daemon's trace_pipe)
        self.aggregation_listeners = aggregation_listeners
        self.structure_changed: Callable[[], None] = lambda: None
        self.kdamonds = NumberedDir("nr_kdamonds", lambda i: KdamondDir(self, i),
                                    before_resize=self._check_no_kdamond_running,
                                    changed=lambda: self.structure_changed())

    def kdamond_dirs(self) -> list[KdamondDir]:
        return self.kdamonds.items  # type: ignore[return-value]

    def _check_no_kdamond_running(self) -> None:
        if any(k.running for k in self.kdamond_dirs()):
            raise ebusy("a kdamond is running")
        # Dropped kdamond directories must not leave refresh threads behind.
        for k in self.kdamond_dirs():
            k.shutdown()

    def shutdown(self) -> None:
        with self.lock:
            for k in self.kdamond_dirs():
                k.shutdown()


class SysfsTree(Tree):
    """The admin directory: ``kdamonds/`` with its ``nr_kdamonds`` file."""

    notifies_structure_changes = True

    def __init__(self, ops_factory: OpsFactory, avail_operations: list[str],
                 aggregation_listeners: tuple[AggregationListener, ...] = ()):
        super().__init__(Dir())
        self.model = SysfsModel(ops_factory, avail_operations, self.lock,
                                aggregation_listeners)
        self.model.structure_changed = self.structure_changed
        self.root.entries["kdamonds"] = self.model.kdamonds

    def shutdown(self) -> None:
        """Stop every kdamond (the daemon calls this before unmounting)."""
        self.model.shutdown()


def default_ops_factory(simulate: bool, world: object | None = None
                        ) -> tuple[OpsFactory, list[str]]:
    """The operations sets the tree offers: simulated ones, or the registered ones."""
    if simulate:
        from ...ops.sim import SimOps, SimWorld

        shared_world = world if world is not None else SimWorld()

        def make_sim(name: str) -> Operations:
            # a pid written to pid_target names a simulated process, made on first use
            return SimOps(world=shared_world, mode=name, create_missing=True)

        return make_sim, list(SYSFS_OPS)
    from ...linux.page_idle import BITMAP_PATH
    from ...ops import available_ops, make_ops

    registered = set(available_ops())
    # The real sets check accesses with idle page tracking. Without it they
    # could not run, so they are not offered, as a kernel that cannot
    # register an operations set does not list it.
    if not os.path.exists(BITMAP_PATH):
        log.warning("%s is missing (no CONFIG_IDLE_PAGE_TRACKING): no operations set is "
                    "available; use --simulate", BITMAP_PATH)
        registered = set()
    return make_ops, [name for name in SYSFS_OPS if name in registered]


def build_sysfs_tree(ops_factory: OpsFactory | None = None,
                     avail_operations: list[str] | None = None, *,
                     simulate: bool = False, world: object | None = None,
                     aggregation_listeners: tuple[AggregationListener, ...] = (),
                     ) -> SysfsTree:
    """Build the DAMON sysfs admin tree.

    ``ops_factory(name)`` makes the operations set a context runs with;
    by default, simulated ones (``simulate=True``, sharing ``world``) or the
    registered real ones. ``avail_operations`` is what the file of that name
    lists (default: what the factory offers). ``aggregation_listeners`` get
    the ``damon_aggregated`` events of every context started from the tree.
    """
    if ops_factory is None:
        ops_factory, default_avail = default_ops_factory(simulate, world)
        if avail_operations is None:
            avail_operations = default_avail
    if avail_operations is None:
        avail_operations = list(SYSFS_OPS)
    return SysfsTree(ops_factory, list(avail_operations), tuple(aggregation_listeners))
