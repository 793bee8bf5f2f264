"""The DAMON debugfs interface (``<debugfs>/damon/``) as a file tree.

The tree's root plays ``<debugfs>``: it holds one directory, ``damon``
(next to which a mount may add ``tracing``), with the files of the usage
guide: ``attrs``, ``target_ids``, ``init_regions``, ``schemes``,
``kdamond_pid`` (the root context's), ``mk_contexts``, ``rm_contexts`` and
``monitor_on``, plus one directory per context made through ``mk_contexts``
holding that context's five files. Formats, limits and errno values follow
the kernel's ``mm/damon/dbgfs.c`` of 5.18-6.13 (target indexes in
``init_regions``, the 23-number ``schemes`` lines, dbgfs action numbers
0-5). Every file is 0600 as in the kernel; files the kernel gives no read
(``mk_contexts``, ``rm_contexts``) or no write (``kdamond_pid``) method
answer EINVAL to that operation, as the kernel's VFS does.

``monitor_on`` ``on`` builds one :class:`~pydamon.core.Context` per debugfs
context (operations set from ``ops_factory``: ``vaddr`` for pid targets,
``paddr`` after ``paddr`` was written to ``target_ids``) and starts them as
one exclusive group (:func:`~pydamon.core.kdamond.start_kdamonds`), so that
debugfs and the sysfs kdamonds exclude each other with EBUSY, as
damon_start(..., exclusive=true) does. Scheme objects are shared with the
running context, so reading ``schemes`` shows the live stats;
``kdamond_pid`` shows the kdamond thread's id (what ``ps -L`` lists).

``tests/test_debugfs_kernel.py`` plays one 91-step scenario on the guest
kernel's (6.12) debugfs and on this model: every step gives the same text
or errno, except the two deviations below marked "(checked)".

Choices made about the kernel's behaviour (section 9 of the facts, 6.12
observed first-hand):

Reproduced
  * A pid that does not exist is rejected when written to ``target_ids``
    (checked by attaching it through the ``vaddr`` operations set).
  * Text that is not a number ends the list silently: ``abc`` clears the
    targets; at most 32 pids are taken, the rest is ignored.
  * ``schemes`` parsing stops silently at the first line that is not 18
    numbers, so an empty write (or a line with action ``-1``, which is not
    an unsigned number) clears the schemes; at most 256 schemes are taken.
  * ``init_regions`` cannot be read while the context runs (EBUSY); a bad
    line leaves no initial region at all (the kernel clears them first).
  * When a kdamond stops (``off``, or its targets all exited) its
    regions are destroyed, so ``init_regions`` reads empty, and pid targets
    are removed (dbgfs_before_terminate()); a ``paddr`` target stays.
  * ``monitor_on`` reads ``on`` whenever any kdamond runs, sysfs ones too.
  * A continued write (a second write() on one open file, offset > 0) is
    EINVAL, except on ``init_regions`` (below); one write() of any size is
    taken whole. ``mk_contexts``/``rm_contexts`` while anything runs
    are EBUSY; removing a name that is not there is ENOENT, one that is not
    a context (``attrs``) is EINVAL (the kernel's fix for a syzbot report).
  * ``on`` with a context that has no target is EINVAL.

Deliberately fixed
  * ``init_regions`` takes a continued write that goes on where the last
    one ended, after a whole line: the text so far is parsed again as one
    input. bash's ``echo`` writes a multi-line string one line per write(),
    so the guide's own multi-line ``echo ... > init_regions`` example keeps
    its first line and fails with EINVAL on the kernel (checked on 6.12);
    here it sets every region, as the guide says it does.
  * A missing pid is EINVAL, as the usage guide and 5.x kernels say, not
    the ENOMEM of 6.x (an allocation error for a lookup failure). (checked)
  * Keywords match whole words, not prefixes: ``o`` is not ``on``, ``of``
    is not ``off``, ``p`` or an empty write do not select ``paddr``
    (an empty ``target_ids`` write clears the targets instead).
  * A whitespace-only ``mk_contexts``/``rm_contexts`` is EINVAL (5.x/6.1
    code) rather than 6.12's EACCES (checked); names with ``/`` or ``.``/``..`` are
    EACCES (what debugfs_create_dir() answers), a duplicate is EEXIST.
  * ``off`` stops every debugfs kdamond still running and is EPERM only
    when none runs (the kernel stops at the first context already stopped).
  * Numbers that do not fit their C type are EINVAL (the kernel wraps them
    silently); watermark metrics other than 0 and 1 are EINVAL (the kernel
    takes them and the scheme then never activates); addresses in
    ``init_regions`` must be below 2**63, the engine's address limit.
  * ``monitor_on`` (the guide's name) and ``monitor_on_DEPRECATED`` (the
    6.9+ name) are one file under two names; the ``DEPRECATED`` notice file
    is not provided.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from ..core.attrs import UINT_MAX, ULONG_MAX, MonitoringAttrs
from ..core.clock import Clock
from ..core.context import Context
from ..core.damos import (
    DBGFS_ACTIONS,
    AccessPattern,
    Quota,
    Scheme,
    WatermarkMetric,
    Watermarks,
)
from ..core.kdamond import Kdamond, nr_running_kdamonds, start_kdamonds
from ..core.regions import AddrRange
from ..core.target import Target
from ..errors import DamonError, ebusy, einval, eperm
from ..ops import Operations, make_ops
from .tree import READ_WRITE, Dir, File, Tree

OpsFactory = Callable[[str], Operations]
ClockFactory = Callable[[], Clock]
AggregationListener = Callable[..., None]

#: files of every context directory (the root context's are in ``damon/``)
CONTEXT_FILES = ("attrs", "schemes", "target_ids", "init_regions", "kdamond_pid")
#: files only the root directory has
ROOT_FILES = ("mk_contexts", "rm_contexts", "monitor_on", "monitor_on_DEPRECATED")

MAX_NR_TARGETS = 32
MAX_NR_SCHEMES = 256
#: what ``target_ids`` shows for the physical address space, "just for fun"
PADDR_TARGET_ID = 42
INT_MIN, INT_MAX = -(2**31), 2**31 - 1
#: the engine keeps addresses in int64 arrays
MAX_ADDRESS = 2**63 - 1
NAME_MAX = 255

_SPACES = " \t\n\v\f\r"
_DIGITS = "0123456789"

# C types of the kernel's sscanf conversions, as (lowest, highest)
_INT = (INT_MIN, INT_MAX)
_UINT = (0, UINT_MAX)
_ULONG = (0, ULONG_MAX)
_ATTRS_FORMAT = (_ULONG,) * 5
# min_sz max_sz min_acc max_acc min_age max_age action ms sz reset_ms
# w_sz w_acc w_age wmark_metric wmark_interval high mid low
_SCHEME_FORMAT = (
    _ULONG, _ULONG, _UINT, _UINT, _UINT, _UINT, _UINT, _ULONG, _ULONG, _ULONG,
    _UINT, _UINT, _UINT, _UINT, _ULONG, _ULONG, _ULONG, _ULONG,
)
_REGION_FORMAT = (_INT, _ULONG, _ULONG)


# -- input parsing, the way the kernel's sscanf() reads it -------------------------


def _input_text(data: str) -> str:
    """What sscanf() sees of a write: the text up to the first NUL."""
    return data.split("\0", 1)[0]


def _scan_numbers(text: str, pos: int, fmt: tuple[tuple[int, int], ...]
                  ) -> tuple[list[int], int, bool]:
    """Match ``"%x %y ...%n"`` at ``text[pos:]`` like the kernel's sscanf().

    Each conversion skips whitespace and takes decimal digits, with a
    leading ``-`` only for signed types. Returns the values matched (fewer
    than ``len(fmt)`` when one is missing), the position after the last one,
    and whether a value did not fit its type.
    """
    values: list[int] = []
    overflow = False
    n = len(text)
    for lo, hi in fmt:
        i = pos
        while i < n and text[i] in _SPACES:
            i += 1
        digits_from = i + 1 if (lo < 0 and i < n and text[i] == "-") else i
        j = digits_from
        while j < n and text[j] in _DIGITS:
            j += 1
        if j == digits_from:
            break
        value = int(text[i:j])
        if not lo <= value <= hi:
            overflow = True
        values.append(value)
        pos = j
    return values, pos, overflow


def _first_word(text: str) -> str | None:
    """The kernel's ``sscanf(buf, "%s", word)``: the first whitespace-delimited word."""
    words = text.split()
    return words[0] if words else None


def _no_read() -> str:
    raise einval("this file has no read operation")


def _no_write(data: str) -> None:
    raise einval("this file has no write operation")


# -- the model ------------------------------------------------------------------------


@dataclass
class DebugfsTarget:
    """One entry of ``target_ids``: a pid, or None for the physical address space."""

    pid: int | None
    init_regions: list[AddrRange] = field(default_factory=list)


@dataclass
class DebugfsContext:
    """What the files of one context directory hold (the kernel's dbgfs_ctxs[i])."""

    name: str  # "" for the root context
    attrs: MonitoringAttrs = field(default_factory=MonitoringAttrs)
    ops_name: str = "vaddr"
    targets: list[DebugfsTarget] = field(default_factory=list)
    schemes: list[Scheme] = field(default_factory=list)
    kdamond: Kdamond | None = None

    @property
    def running(self) -> bool:
        return self.kdamond is not None and self.kdamond.running


class DebugfsModel:
    """The state behind ``<debugfs>/damon`` and the files that show and change it.

    ``ops_factory(name)`` makes the operations set of a context at ``on``
    (``"vaddr"`` or ``"paddr"``) and checks pids written to ``target_ids``.
    ``clock_factory()`` gives each kdamond its clock (real time if None);
    ``aggregation_listeners`` are added to every context started (a
    :class:`~pydamon.interfaces.trace.TraceHub`'s ``publish``); ``seed``
    makes runs reproducible (context ``i`` gets ``seed + i``).
    """

    def __init__(self, ops_factory: OpsFactory = make_ops, *,
                 clock_factory: ClockFactory | None = None,
                 aggregation_listeners: tuple[AggregationListener, ...] = (),
                 seed: int | None = None):
        self._ops_factory = ops_factory
        self._clock_factory = clock_factory
        self._listeners = tuple(aggregation_listeners)
        self._seed = seed
        self.contexts: list[DebugfsContext] = [DebugfsContext("")]
        self.damon_dir = Dir()
        self._fill_context_dir(self.damon_dir, self.contexts[0])
        monitor_on = self._file(self._read_monitor_on, self._write_monitor_on)
        self.damon_dir.entries.update({
            "mk_contexts": self._file(_no_read, self._write_mk_contexts),
            "rm_contexts": self._file(_no_read, self._write_rm_contexts),
            "monitor_on": monitor_on,
            "monitor_on_DEPRECATED": monitor_on,
        })
        self.tree = DebugfsTree(Dir({"damon": self.damon_dir}), self)

    # -- structure ---------------------------------------------------------------
    def _file(self, read: Callable[[], str], write: Callable[[str], None],
              line_by_line: bool = False) -> File:
        # every access first catches up with kdamonds that ended by
        # themselves (the tree's lock is held, so this never races a write)
        def reaping_read() -> str:
            self._reap()
            return read()

        def reaping_write(data: str) -> None:
            self._reap()
            write(data)

        if line_by_line:
            return _LineByLineFile(reaping_read, reaping_write)
        return File(reaping_read, reaping_write, READ_WRITE, single_write=True)

    def _fill_context_dir(self, d: Dir, ctx: DebugfsContext) -> None:
        d.entries.update({
            "attrs": self._file(lambda: self._read_attrs(ctx), lambda s: self._write_attrs(ctx, s)),
            "schemes": self._file(lambda: self._read_schemes(ctx),
                                  lambda s: self._write_schemes(ctx, s)),
            "target_ids": self._file(lambda: self._read_target_ids(ctx),
                                     lambda s: self._write_target_ids(ctx, s)),
            "init_regions": self._file(lambda: self._read_init_regions(ctx),
                                       lambda s: self._write_init_regions(ctx, s),
                                       line_by_line=True),
            "kdamond_pid": self._file(lambda: self._read_kdamond_pid(ctx), _no_write),
        })

    def context(self, name: str = "") -> DebugfsContext:
        for c in self.contexts:
            if c.name == name:
                return c
        raise DamonError(errno.ENOENT, f"no debugfs context {name!r}")

    # -- kdamonds that stopped by themselves ----------------------------------------
    def _reap(self) -> None:
        """Take note of kdamonds that ended, as their termination does in the kernel."""
        for c in self.contexts:
            kd = c.kdamond
            if kd is None or kd.running:
                continue
            kd.join(5.0)
            c.kdamond = None
            # kdamond_fn() destroys every region when it ends, and
            # dbgfs_before_terminate() drops the targets that hold pids.
            for t in c.targets:
                t.init_regions = []
            if c.ops_name == "vaddr":
                c.targets = []

    def shutdown(self) -> None:
        """Stop every debugfs kdamond (for unmounting); no error if none runs."""
        with self.tree.lock:
            for c in self.contexts:
                if c.kdamond is not None and c.kdamond.running:
                    try:
                        c.kdamond.stop()
                    except DamonError:
                        pass  # it ended between the check and the stop
            self._reap()

    # -- attrs ---------------------------------------------------------------------
    @staticmethod
    def _read_attrs(ctx: DebugfsContext) -> str:
        a = ctx.attrs
        return f"{a.sample_us} {a.aggr_us} {a.update_us} {a.min_nr_regions} {a.max_nr_regions}\n"

    @staticmethod
    def _write_attrs(ctx: DebugfsContext, data: str) -> None:
        values, _, overflow = _scan_numbers(_input_text(data), 0, _ATTRS_FORMAT)
        if len(values) != len(_ATTRS_FORMAT) or overflow:
            raise einval("attrs takes five unsigned numbers")
        if ctx.running:
            raise ebusy("the context is running")
        sample, aggr, update, min_nr, max_nr = values
        attrs = replace(ctx.attrs, sample_us=sample, aggr_us=aggr, update_us=update,
                        min_nr_regions=min_nr, max_nr_regions=max_nr)
        attrs.validate()
        ctx.attrs = attrs

    # -- schemes -------------------------------------------------------------------
    @staticmethod
    def _read_schemes(ctx: DebugfsContext) -> str:
        lines = []
        for s in ctx.schemes:
            p, q, w, st = s.pattern, s.quota, s.wmarks, s.stats
            metric = 0 if w.metric is WatermarkMetric.NONE else 1
            numbers = (
                p.min_sz_region, p.max_sz_region, p.min_nr_accesses, p.max_nr_accesses,
                p.min_age_region, p.max_age_region, DBGFS_ACTIONS.index(s.action),
                q.ms, q.sz, q.reset_interval_ms, q.weight_sz, q.weight_nr_accesses,
                q.weight_age, metric, w.interval_us, w.high, w.mid, w.low,
                st.nr_tried, st.sz_tried, st.nr_applied, st.sz_applied, st.qt_exceeds,
            )
            lines.append(" ".join(str(n) for n in numbers) + "\n")
        return "".join(lines)

    @staticmethod
    def _parse_schemes(text: str) -> list[Scheme]:
        schemes: list[Scheme] = []
        pos = 0
        while pos < len(text) and len(schemes) < MAX_NR_SCHEMES:
            values, end, overflow = _scan_numbers(text, pos, _SCHEME_FORMAT)
            if len(values) != len(_SCHEME_FORMAT):
                break  # the kernel stops at the first line it cannot read, silently
            if overflow:
                raise einval("a scheme number does not fit its type")
            (min_sz, max_sz, min_acc, max_acc, min_age, max_age, action, ms, sz, reset_ms,
             w_sz, w_acc, w_age, metric, interval, high, mid, low) = values
            if action >= len(DBGFS_ACTIONS):
                raise einval(f"unknown scheme action {action}")
            if min_sz > max_sz or min_acc > max_acc or min_age > max_age:
                raise einval("an access pattern range has min > max")
            if high < mid or high < low or mid < low:
                raise einval("watermarks must be high >= mid >= low")
            if metric > 1:
                raise einval(f"unknown watermark metric {metric}")
            schemes.append(Scheme(
                pattern=AccessPattern(min_sz, max_sz, min_acc, max_acc, min_age, max_age),
                action=DBGFS_ACTIONS[action],
                quota=Quota(ms=ms, sz=sz, reset_interval_ms=reset_ms, weight_sz=w_sz,
                            weight_nr_accesses=w_acc, weight_age=w_age),
                wmarks=Watermarks(
                    WatermarkMetric.FREE_MEM_RATE if metric else WatermarkMetric.NONE,
                    interval, high, mid, low),
            ))
            pos = end
        return schemes

    def _write_schemes(self, ctx: DebugfsContext, data: str) -> None:
        schemes = self._parse_schemes(_input_text(data))
        if ctx.running:
            raise ebusy("the context is running")
        ctx.schemes = schemes

    # -- target_ids ----------------------------------------------------------------
    @staticmethod
    def _read_target_ids(ctx: DebugfsContext) -> str:
        ids = (str(PADDR_TARGET_ID if t.pid is None else t.pid) for t in ctx.targets)
        return " ".join(ids) + "\n"

    def _check_pid(self, pid: int) -> None:
        """EINVAL unless ``pid`` names a live process of the vaddr operations set."""
        if pid <= 0:  # no process has such a pid (find_get_pid() finds none)
            raise einval(f"no process of pid {pid}")
        ops = self._ops_factory("vaddr")
        probe = Target(pid=pid)
        try:
            ops.attach(probe)
        except OSError as e:
            raise einval(f"no process of pid {pid}") from e
        finally:
            # release what the probe took (a pidfd, the idle page bitmap...)
            ops.detach(probe)
            ops.cleanup(Context(ops))

    def _write_target_ids(self, ctx: DebugfsContext, data: str) -> None:
        text = _input_text(data)
        if text.rstrip(_SPACES) == "paddr":
            if ctx.running:
                raise ebusy("the context is running")
            ctx.targets = [DebugfsTarget(None)]
            ctx.ops_name = "paddr"
            return
        pids: list[int] = []
        pos = 0
        while len(pids) < MAX_NR_TARGETS and pos < len(text):
            values, pos, overflow = _scan_numbers(text, pos, (_INT,))
            if not values:
                break
            if overflow:
                raise einval("a pid does not fit an int")
            pids.append(values[0])
        for pid in pids:
            self._check_pid(pid)
        if ctx.running:
            raise ebusy("the context is running")
        ctx.targets = [DebugfsTarget(pid) for pid in pids]
        if pids:
            ctx.ops_name = "vaddr"

    # -- init_regions --------------------------------------------------------------
    @staticmethod
    def _read_init_regions(ctx: DebugfsContext) -> str:
        if ctx.running:
            raise ebusy("regions cannot be read while the context runs")
        return "".join(
            f"{i} {r.start} {r.end}\n"
            for i, t in enumerate(ctx.targets) for r in t.init_regions
        )

    @staticmethod
    def _write_init_regions(ctx: DebugfsContext, data: str) -> None:
        if ctx.running:
            raise ebusy("the context is running")
        text = _input_text(data)
        for t in ctx.targets:
            t.init_regions = []
        try:
            pos = 0
            while pos < len(text):
                values, end, overflow = _scan_numbers(text, pos, _REGION_FORMAT)
                if len(values) != len(_REGION_FORMAT):
                    break
                if overflow:
                    raise einval("a region number does not fit its type")
                idx, start, stop = values
                if start >= stop:
                    raise einval(f"region start {start} is not below its end {stop}")
                if not 0 <= idx < len(ctx.targets):
                    raise einval(f"no target of index {idx}")
                if stop > MAX_ADDRESS:
                    raise einval("region end beyond the engine's address limit")
                regions = ctx.targets[idx].init_regions
                if regions and regions[-1].end > start:
                    raise einval("regions of a target must be in address order, disjoint")
                regions.append(AddrRange(start, stop))
                pos = end
        except DamonError:
            for t in ctx.targets:
                t.init_regions = []
            raise

    # -- kdamond_pid ---------------------------------------------------------------
    @staticmethod
    def _read_kdamond_pid(ctx: DebugfsContext) -> str:
        pid = ctx.kdamond.pid if ctx.kdamond is not None else None
        return "none\n" if pid is None else f"{pid}\n"

    # -- mk_contexts / rm_contexts -------------------------------------------------
    def _write_mk_contexts(self, data: str) -> None:
        name = _first_word(_input_text(data))
        if name is None:
            raise einval("no context name")
        if nr_running_kdamonds():
            raise ebusy("DAMON is running")
        if "/" in name or name in (".", ".."):
            raise DamonError(errno.EACCES, f"bad context name {name!r}")
        if len(name.encode()) > NAME_MAX:
            raise DamonError(errno.ENAMETOOLONG, "context name too long")
        if name in self.damon_dir.entries:
            raise DamonError(errno.EEXIST, f"{name!r} exists")
        ctx = DebugfsContext(name)
        d = Dir()
        self._fill_context_dir(d, ctx)
        self.contexts.append(ctx)
        self.damon_dir.entries[name] = d

    def _write_rm_contexts(self, data: str) -> None:
        name = _first_word(_input_text(data))
        if name is None:
            raise einval("no context name")
        if nr_running_kdamonds():
            raise ebusy("DAMON is running")
        if not name or not any(c.name == name for c in self.contexts):
            if name in self.damon_dir.entries:  # a file, or a directory a mount added
                raise einval(f"{name!r} is not a context")
            raise DamonError(errno.ENOENT, f"no context {name!r}")
        self.contexts = [c for c in self.contexts if c.name != name]
        del self.damon_dir.entries[name]

    # -- monitor_on ----------------------------------------------------------------
    @staticmethod
    def _read_monitor_on() -> str:
        return "on\n" if nr_running_kdamonds() else "off\n"

    def _write_monitor_on(self, data: str) -> None:
        word = _first_word(_input_text(data))
        if word == "on":
            self._turn_on()
        elif word == "off":
            self._turn_off()
        else:
            raise einval("monitor_on takes 'on' or 'off'")

    def _build_kdamond(self, idx: int, c: DebugfsContext) -> Kdamond:
        ops = self._ops_factory(c.ops_name)
        targets = [Target(pid=t.pid, init_regions=list(t.init_regions)) for t in c.targets]
        ctx = Context(
            ops, attrs=replace(c.attrs), targets=targets, schemes=c.schemes,
            clock=self._clock_factory() if self._clock_factory else None,
            seed=None if self._seed is None else self._seed + idx,
        )
        # the kernel names the threads kdamond.<nr running before>; debugfs
        # runs exclusively, so that is the context's position
        ctx.kdamond_idx = idx
        ctx.ctx_idx = 0
        for fn in self._listeners:
            ctx.add_aggregation_listener(fn)
        return Kdamond(ctx)

    def _turn_on(self) -> None:
        if any(not c.targets for c in self.contexts):
            raise einval("a context has no target")
        if nr_running_kdamonds():
            raise ebusy("DAMON is already running")
        kdamonds = [self._build_kdamond(i, c) for i, c in enumerate(self.contexts)]
        start_kdamonds(kdamonds, exclusive=True)
        for c, kd in zip(self.contexts, kdamonds, strict=True):
            c.kdamond = kd

    def _turn_off(self) -> None:
        running = [c.kdamond for c in self.contexts if c.kdamond is not None and c.running]
        if not running:
            raise eperm("debugfs monitoring is not running")
        for kd in running:
            try:
                kd.stop()
            except DamonError:
                pass  # it ended between the check and the stop
        self._reap()


class DebugfsTree(Tree):
    """The debugfs tree, with the model behind it (``model.shutdown()`` at unmount)."""

    def __init__(self, root: Dir, model: DebugfsModel):
        super().__init__(root)
        self.model = model


class _LineByLineFile(File):
    """A debugfs file that also takes a multi-line input written a line at a time.

    A write at offset 0 is a whole input; a write that continues exactly
    where the previous accepted one ended, after a newline, extends it and
    the whole text is stored again. Anything else past offset 0 is EINVAL,
    as on the kernel.
    """

    def __init__(self, read: Callable[[], str], write: Callable[[str], None]):
        super().__init__(read, write, READ_WRITE, single_write=True)
        self._written = ""

    def write(self, data: str, offset: int = 0) -> None:
        if offset == 0:
            super().write(data)
            self._written = data
            return
        if offset != len(self._written) or not self._written.endswith("\n"):
            raise einval("continued write that does not follow the previous one")
        text = self._written + data
        super().write(text)
        self._written = text


def build_debugfs_tree(ops_factory: OpsFactory = make_ops, *,
                       clock_factory: ClockFactory | None = None,
                       trace_hub: object | None = None,
                       seed: int | None = None) -> DebugfsTree:
    """A :class:`Tree` whose root plays ``<debugfs>``: ``damon/`` holds the DAMON files.

    ``trace_hub`` (a :class:`~pydamon.interfaces.trace.TraceHub`) receives
    the ``damon_aggregated`` events of every context started through
    ``monitor_on``. The model behind the tree is ``tree.model`` (its
    ``shutdown()`` stops the kdamonds at unmount).
    """
    listeners: tuple[AggregationListener, ...] = ()
    if trace_hub is not None:
        listeners = (trace_hub.publish,)  # type: ignore[attr-defined]
    model = DebugfsModel(ops_factory, clock_factory=clock_factory,
                         aggregation_listeners=listeners, seed=seed)
    return model.tree
