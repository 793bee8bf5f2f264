"""Running a monitoring session for the command line: record, schemes, demo.

A session builds a context from the options, starts a kdamond, streams
every aggregation to a record file (if any), shows progress, and stops when
the monitored command exits, the target dies, the timeout passes or the
user presses Ctrl-C. Simulated workloads run in virtual time by default:
the kdamond runs in this thread and ten virtual minutes take seconds.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import TextIO

import numpy as np

from ..core.attrs import MonitoringAttrs
from ..core.clock import RealClock, VirtualClock
from ..core.context import Context
from ..core.damos import Scheme
from ..core.events import AggregatedEvent
from ..core.kdamond import Kdamond
from ..core.regions import AddrRange
from ..core.target import Target
from ..errors import DamonError
from ..records import Intervals, RecordWriter
from .units import format_size, format_time_ns


class SessionError(Exception):
    """A session that cannot start; the message names the cause and the fix."""


def sim_api():
    """(SimOps, SimWorld, list_builtin_workloads) of the simulator, or a clear error."""
    try:
        from ..ops.sim import SimOps, SimWorld, list_builtin_workloads  # type: ignore[attr-defined]
    except ImportError:
        try:
            from ..ops.sim.ops import SimOps
            from ..ops.sim.workload import list_builtin_workloads
            from ..ops.sim.world import SimWorld
        except ImportError as e:
            raise SessionError(f"the simulator (pydamon.ops.sim) is not available ({e}); "
                               f"reinstall pydamon (pip install -e .)") from None
    return SimOps, SimWorld, list_builtin_workloads


@dataclass
class Progress:
    """What the aggregation listener saw last (read by the progress printer)."""

    nr_snapshots: int = 0
    nr_regions: int = 0
    wss_bytes: int = 0
    total_bytes: int = 0
    last_time_ns: int = 0
    first_time_ns: int | None = None
    wss_history: list[int] = field(default_factory=list)

    def on_event(self, ev: AggregatedEvent) -> None:
        sizes = ev.end - ev.start
        self.nr_snapshots += 1
        self.nr_regions = ev.nr_regions
        self.wss_bytes = int(sizes[ev.nr_accesses > 0].sum())
        self.total_bytes = int(sizes.sum())
        if self.first_time_ns is None:
            self.first_time_ns = ev.time_ns
        self.last_time_ns = ev.time_ns
        if len(self.wss_history) < 100_000:  # a summary needs no more
            self.wss_history.append(self.wss_bytes)


@dataclass
class SessionSpec:
    ops_name: str
    attrs: MonitoringAttrs
    schemes: list[Scheme]
    pids: list[int] = field(default_factory=list)
    regions: list[tuple[int, int]] = field(default_factory=list)
    command: list[str] = field(default_factory=list)
    sim_workload: str | None = None
    virtual: bool = False
    timeout_s: float | None = None
    out_path: str | None = None
    out_format: str = "json_compressed"
    seed: int | None = None
    quiet: bool = False


@dataclass
class SessionResult:
    ctx: Context
    progress: Progress
    elapsed_s: float
    stop_reason: str
    sim_process: object | None = None
    child_returncode: int | None = None


def _make_ops(spec: SessionSpec):
    if spec.ops_name == "sim" or spec.sim_workload:
        SimOps, SimWorld, _ = sim_api()
        world = SimWorld(seed=spec.seed or 0)
        ops = SimOps(world, mode="sim" if spec.ops_name in ("sim", "vaddr") else spec.ops_name)
        return ops, world
    from ..ops import available_ops, make_ops

    if spec.ops_name not in available_ops():
        raise SessionError(f"operations set {spec.ops_name!r} is not available in this "
                           f"installation (available: {', '.join(available_ops()) or 'none'}); "
                           f"use --sim WORKLOAD to record a simulated workload")
    return make_ops(spec.ops_name), None


def _check_pid(pid: int) -> None:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        raise SessionError(f"process {pid} does not exist (it may have exited); "
                           f"check the pid with 'ps -p {pid}'") from None
    except PermissionError:
        pass  # it exists; the operations set says whether it may be monitored


def run_session(spec: SessionSpec, out: TextIO = sys.stderr) -> SessionResult:
    """Run one monitoring session as ``spec`` says; raise SessionError/DamonError on failure."""
    if not (spec.ops_name == "sim" or spec.sim_workload):
        for pid in spec.pids:
            _check_pid(pid)
    ops, world = _make_ops(spec)
    clock = VirtualClock() if spec.virtual else RealClock()
    sim_process = None
    child: subprocess.Popen | None = None
    targets: list[Target] = []
    init_regions = [AddrRange(s, e) for s, e in spec.regions]
    if world is not None:
        if spec.ops_name == "paddr":
            targets.append(Target(init_regions=init_regions))
            sim_process = world.physical
        else:
            try:
                pid = world.spawn(spec.sim_workload or "hotcold")
            except (ValueError, OSError) as e:
                raise SessionError(f"cannot start simulated workload: {e}") from None
            sim_process = world.process(pid)
            targets.append(Target(pid=pid, init_regions=init_regions))
    elif spec.ops_name == "paddr":
        targets.append(Target(init_regions=init_regions))
    elif spec.command:
        try:
            child = subprocess.Popen(spec.command)
        except OSError as e:
            raise SessionError(f"cannot run {spec.command[0]!r}: {e.strerror}; check the "
                               f"command name and PATH") from None
        targets.append(Target(pid=child.pid, init_regions=init_regions))
    else:
        if not spec.pids:
            raise SessionError("nothing to monitor: give a command after '--', --target_pid PID, "
                               "--ops paddr, or --sim WORKLOAD")
        for pid in spec.pids:
            _check_pid(pid)
            targets.append(Target(pid=pid, init_regions=init_regions))

    ctx = Context(ops, spec.attrs, targets, spec.schemes, clock=clock, seed=spec.seed)
    progress = Progress()
    ctx.add_aggregation_listener(progress.on_event)
    writer = None
    if spec.out_path:
        writer = RecordWriter(spec.out_path, spec.out_format,
                              Intervals(spec.attrs.sample_us, spec.attrs.aggr_us,
                                        spec.attrs.update_us), lazy=True)
        ctx.add_aggregation_listener(writer.add_event)
    kd = Kdamond(ctx)
    printer = _ProgressPrinter(progress, out, quiet=spec.quiet)
    restore_sigterm = _sigterm_as_interrupt()
    t0 = time.monotonic()
    stop_reason = "finished"
    try:
        if spec.virtual:
            stop_reason = _run_virtual(kd, ctx, spec, printer)
        else:
            stop_reason = _run_threaded(kd, spec, printer, child)
    except KeyboardInterrupt:
        stop_reason = "interrupted (Ctrl-C or SIGTERM)"
        if kd.running:
            try:
                kd.stop()
            except DamonError:
                pass
    except BaseException:
        if child is not None and child.poll() is None:
            child.terminate()
        raise
    finally:
        if writer is not None:
            writer.close()
        printer.finish()
        restore_sigterm()
    rc = None
    if child is not None:
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(5)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        rc = child.returncode
    if kd.error is not None:
        err = kd.error
        if isinstance(err, DamonError):
            raise err
        raise SessionError(f"monitoring stopped on an internal error: {err!r}")
    return SessionResult(ctx, progress, time.monotonic() - t0, stop_reason, sim_process, rc)


def _sigterm_as_interrupt():
    """Make SIGTERM stop a session like Ctrl-C (the record file is finished, not cut).

    Returns the function that restores the previous handler. Only the main
    thread may set signal handlers; elsewhere this does nothing.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    return lambda: signal.signal(signal.SIGTERM, previous)


def _run_virtual(kd: Kdamond, ctx: Context, spec: SessionSpec, printer: _ProgressPrinter) -> str:
    timeout_s = spec.timeout_s if spec.timeout_s is not None else 10.0
    start_ns = ctx.clock.now_ns()

    def tick(_ctx: Context) -> bool:
        printer.maybe_print((_ctx.clock.now_ns() - start_ns) / 1e9, virtual=True)
        return False

    ctx.callbacks.after_aggregation = tick
    end_ns = start_ns + int(timeout_s * 1e9)
    kd.run(duration_us=int(timeout_s * 1e6))
    if ctx.clock.now_ns() >= end_ns:
        return f"{timeout_s:g} s of virtual time passed"
    return "the target exited"


def _run_threaded(kd: Kdamond, spec: SessionSpec, printer: _ProgressPrinter,
                  child: subprocess.Popen | None) -> str:
    kd.start()
    t0 = time.monotonic()
    try:
        while True:
            time.sleep(0.05)
            elapsed = time.monotonic() - t0
            printer.maybe_print(elapsed)
            if not kd.running:
                return ("the monitored command exited" if child is not None
                        else "the target exited")
            if child is not None and child.poll() is not None:
                return "the monitored command exited"
            if spec.timeout_s is not None and elapsed >= spec.timeout_s:
                return f"timeout ({spec.timeout_s:g} s)"
    finally:
        if kd.running:
            try:
                kd.stop()
            except DamonError:
                pass
        kd.join(10)


class _ProgressPrinter:
    """One status line, rewritten in place on a terminal, printed every 2 s otherwise."""

    def __init__(self, progress: Progress, out: TextIO, quiet: bool):
        self.p = progress
        self.out = out
        self.quiet = quiet
        self.tty = hasattr(out, "isatty") and out.isatty()
        self.last_print = time.monotonic()  # the first line after one period, with data
        self.printed = False

    def maybe_print(self, elapsed_s: float, virtual: bool = False) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        period = 0.2 if self.tty else 2.0
        if now - self.last_print < period:
            return
        self.last_print = now
        p = self.p
        line = (f"{'virtual ' if virtual else ''}elapsed {format_time_ns(elapsed_s * 1e9):>10}"
                f"  snapshots {p.nr_snapshots:>6}  regions {p.nr_regions:>5}"
                f"  working set {format_size(p.wss_bytes):>12}")
        if self.tty:
            self.out.write("\r" + line + "\x1b[K")
        else:
            self.out.write(line + "\n")
        self.out.flush()
        self.printed = True

    def finish(self) -> None:
        if self.printed and self.tty:
            self.out.write("\n")
            self.out.flush()


def scheme_stats_lines(schemes: list[Scheme]) -> list[str]:
    lines = []
    for i, s in enumerate(schemes):
        st = s.stats
        lines.append(
            f"scheme {i} ({s.action.value}): tried {st.nr_tried} regions "
            f"({format_size(st.sz_tried)}), applied to {st.nr_applied} regions "
            f"({format_size(st.sz_applied)}), quota exceeded {st.qt_exceeds} times")
    return lines


def wss_percentiles(history: list[int]) -> dict[int, int]:
    if not history:
        return {}
    arr = np.sort(np.asarray(history))
    return {p: int(arr[min(len(arr) - 1, int(len(arr) * p / 100))]) for p in (0, 25, 50, 75, 100)}
