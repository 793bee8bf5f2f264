"""The ``damon:damon_aggregated`` tracepoint, as text, live and recorded.

The kernel prints ``target_id=%lu nr_regions=%u %lu-%lu: %u %u`` (target
index, regions of the target, start, end, nr_accesses, age); ``perf script``
prefixes it with the task, pid, cpu, timestamp and event name, ``trace_pipe``
with ``task-pid [cpu] flags timestamp: event:``. The line functions produce
and parse exactly those lines, one per region.

The live side: kdamonds publish into a :class:`TraceHub` (a bounded ring
buffer, ``ctx.add_aggregation_listener(hub.publish)``);
:func:`build_trace_dir` gives the ``trace_pipe`` and ``available_events``
files that serve it, and :class:`PerfScriptRecorder` writes it to a file in
``perf script`` format, as ``perf record`` followed by ``perf script`` would.
Timestamps are the kdamond clock's (virtual time under a VirtualClock), the
pid is the kdamond thread's id and the cpu the one it ran on.
"""

from __future__ import annotations

import bisect
import ctypes
import ctypes.util
import itertools
import os
import re
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TextIO

from ..core.events import AggregatedEvent
from .tree import READ_ONLY, Dir, File, StreamFile, StreamReader

EVENT = "damon:damon_aggregated"

_PERF_LINE = re.compile(
    r"^\s*(?P<comm>\S+)\s+(?P<pid>\d+)\s+(?:\[(?P<cpu>\d+)\]\s+)?(?P<ts>\d+\.\d+):\s+"
    r"damon:damon_aggregated:\s+target_id=(?P<tid>\d+)\s+nr_regions=(?P<nr>\d+)\s+"
    r"(?P<start>\d+)-(?P<end>\d+):\s+(?P<acc>-?\d+)\s+(?P<age>\d+)\s*$"
)


def tracepoint_text(target_id: int, nr_regions: int, start: int, end: int,
                    nr_accesses: int, age: int) -> str:
    """The TP_printk part of one damon_aggregated event."""
    return f"target_id={target_id} nr_regions={nr_regions} {start}-{end}: {nr_accesses} {age}"


def perf_script_lines(ev: AggregatedEvent, pid: int = 0, cpu: int = 0) -> Iterator[str]:
    """``perf script`` lines for one batch of events (one line per region)."""
    secs = ev.time_ns // 1_000_000_000
    usecs = (ev.time_ns // 1000) % 1_000_000
    # perf script's columns: comm right-aligned in 16, pid in 5 (checked against perf 6.1)
    head = f"{'kdamond.' + str(ev.kdamond_idx):>16} {pid:>5} [{cpu:03d}] {secs:>5}.{usecs:06d}: {EVENT}: "
    n = ev.nr_regions
    for start, end, nr, age in ev.rows():
        yield head + tracepoint_text(ev.target_idx, n, start, end, nr, age)


def trace_pipe_lines(ev: AggregatedEvent, pid: int = 0, cpu: int = 0) -> Iterator[str]:
    """``trace_pipe`` (ftrace) lines: ``comm-pid [cpu] flags ts: event: text``."""
    secs = ev.time_ns // 1_000_000_000
    usecs = (ev.time_ns // 1000) % 1_000_000
    # ftrace's columns: comm right-aligned in 16, "-", pid left-aligned in 7
    # (checked against the 6.12 guest kernel's trace_pipe)
    head = (f"{'kdamond.' + str(ev.kdamond_idx):>16}-{pid:<7} [{cpu:03d}] ..... "
            f"{secs:>5}.{usecs:06d}: damon_aggregated: ")
    n = ev.nr_regions
    for start, end, nr, age in ev.rows():
        yield head + tracepoint_text(ev.target_idx, n, start, end, nr, age)


def parse_perf_script_line(line: str) -> dict | None:
    """Fields of one ``perf script`` damon_aggregated line, or None if it is not one."""
    m = _PERF_LINE.match(line)
    if not m:
        return None
    return {
        "time_ns": int(m["ts"].replace(".", "")) * 1000 if len(m["ts"].split(".")[1]) == 6
        else int(float(m["ts"]) * 1e9),
        "target_id": int(m["tid"]),
        "nr_regions": int(m["nr"]),
        "start": int(m["start"]),
        "end": int(m["end"]),
        "nr_accesses": int(m["acc"]),
        "age": int(m["age"]),
    }


# -- the live stream: a bounded buffer kdamonds publish into -------------------------

#: lines a :class:`TraceHub` keeps for its slowest reader by default (ftrace's
#: per-cpu buffer holds about this many damon_aggregated events)
DEFAULT_CAPACITY_LINES = 65536


def _cpu_getter() -> Callable[[], int]:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        getcpu = libc.sched_getcpu
        getcpu.restype = ctypes.c_int
        getcpu.argtypes = []
    except (OSError, AttributeError):
        return lambda: 0
    return lambda: max(getcpu(), 0)


current_cpu = _cpu_getter()


@dataclass(frozen=True)
class TraceRecord:
    """One published batch: the event and who emitted it.

    ``seq`` numbers the batch's first line; lines are numbered across the
    hub's whole life, so a reader knows how many it lost.
    """

    seq: int
    pid: int
    cpu: int
    event: AggregatedEvent

    @property
    def nr_lines(self) -> int:
        return self.event.nr_regions


class TraceHub:
    """The ring buffer of the ``damon_aggregated`` tracepoint.

    Kdamonds publish into it (``ctx.add_aggregation_listener(hub.publish)``)
    from their own threads; each reader (an open ``trace_pipe``, a recorder)
    gets every event published after it opened. The hub keeps at most
    ``capacity_lines`` lines (whole batches; the newest batch is always
    kept): like ftrace's ring buffer it overwrites the oldest, and a reader
    that falls behind skips what was overwritten and counts it as lost.
    With no reader, publishing costs one check.
    """

    def __init__(self, capacity_lines: int = DEFAULT_CAPACITY_LINES):
        if capacity_lines < 1:
            raise ValueError("capacity_lines must be positive")
        self.capacity_lines = capacity_lines
        self._cond = threading.Condition()
        self._records: deque[TraceRecord] = deque()
        self._lines_held = 0
        self._next_seq = 0
        self._nr_readers = 0
        #: lines published while at least one reader was open
        self.nr_published_lines = 0
        #: lines readers lost because the buffer overwrote them first (summed over readers)
        self.nr_lost_lines = 0

    @property
    def nr_readers(self) -> int:
        return self._nr_readers

    @property
    def lines_held(self) -> int:
        return self._lines_held

    def publish(self, ev: AggregatedEvent) -> None:
        """Take one batch from a kdamond (called in the kdamond's thread)."""
        if not self._nr_readers or not ev.nr_regions:
            return
        pid, cpu = threading.get_native_id(), current_cpu()
        with self._cond:
            if not self._nr_readers:
                return
            self._records.append(TraceRecord(self._next_seq, pid, cpu, ev))
            self._next_seq += ev.nr_regions
            self._lines_held += ev.nr_regions
            self.nr_published_lines += ev.nr_regions
            while self._lines_held > self.capacity_lines and len(self._records) > 1:
                self._lines_held -= self._records.popleft().nr_lines
            self._cond.notify_all()

    # -- readers --------------------------------------------------------------------
    def open_reader(self, fmt: str = "trace_pipe") -> TraceReader:
        """A reader of the events published from now on, as ``trace_pipe`` or ``perf`` lines."""
        return TraceReader(self, fmt)

    def _register(self) -> int:
        with self._cond:
            self._nr_readers += 1
            return self._next_seq

    def _unregister(self) -> None:
        with self._cond:
            self._nr_readers -= 1
            if not self._nr_readers:
                self._records.clear()
                self._lines_held = 0
            self._cond.notify_all()

    def _take(self, cursor: int, timeout: float | None, closed: Callable[[], bool]
              ) -> tuple[list[TraceRecord], int]:
        """Batches from line ``cursor`` on, waiting up to ``timeout`` for one; and lines lost."""
        with self._cond:
            if timeout is None or timeout > 0:
                self._cond.wait_for(lambda: self._next_seq > cursor or closed(), timeout)
            if self._next_seq <= cursor:
                return [], 0
            oldest = self._records[0].seq if self._records else self._next_seq
            lost = max(0, oldest - cursor)
            self.nr_lost_lines += lost
            start = bisect.bisect_left(self._records, max(cursor, oldest), key=lambda r: r.seq)
            return list(itertools.islice(self._records, start, None)), lost

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()


class TraceReader(StreamReader):
    """One open ``trace_pipe`` (or recorder): lines published since it opened."""

    def __init__(self, hub: TraceHub, fmt: str = "trace_pipe"):
        if fmt not in ("trace_pipe", "perf"):
            raise ValueError(f"unknown trace line format {fmt!r}")
        self._hub = hub
        self._lines_of = trace_pipe_lines if fmt == "trace_pipe" else perf_script_lines
        self._cursor = hub._register()
        self._pending = b""
        self._closed = False
        #: lines this reader lost to the ring buffer's overwriting
        self.nr_lost_lines = 0

    def read_records(self, timeout: float | None) -> list[TraceRecord]:
        """The batches published since the last call, waiting up to ``timeout`` for one."""
        if self._closed:
            return []
        records, lost = self._hub._take(self._cursor, timeout, lambda: self._closed)
        self.nr_lost_lines += lost
        if records:
            last = records[-1]
            self._cursor = last.seq + last.nr_lines
        return records

    def read_lines(self, timeout: float | None) -> list[str]:
        lines: list[str] = []
        for rec in self.read_records(timeout):
            lines.extend(self._lines_of(rec.event, pid=rec.pid, cpu=rec.cpu))
        return lines

    def read(self, size: int, timeout: float) -> bytes:
        if not self._pending:
            lines = self.read_lines(timeout)
            if lines:
                self._pending = ("\n".join(lines) + "\n").encode()
        out, self._pending = self._pending[:size], self._pending[size:]
        return out

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._pending = b""
            self._hub._unregister()

    def __enter__(self) -> TraceReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def build_trace_dir(hub: TraceHub) -> Dir:
    """A tracefs-like directory: ``trace_pipe`` (live lines) and ``available_events``."""
    return Dir({
        "trace_pipe": StreamFile(lambda: hub.open_reader("trace_pipe")),
        "available_events": File(lambda: EVENT + "\n", mode=READ_ONLY),
    })


# -- recording: perf record -e damon:damon_aggregated, then perf script ---------------


class PerfScriptRecorder:
    """Writes ``damon_aggregated`` events to a file as ``perf script`` lines, as they come.

    Two ways to feed it: :meth:`record` as an aggregation listener (in the
    kdamond's thread; nothing is ever lost, the kdamond waits for the
    write), or :meth:`start` to follow a :class:`TraceHub` from a thread of
    its own (the kdamond never waits; if the writer falls more than the
    hub's capacity behind, lines are lost and counted, as ``perf`` counts
    LOST events). Each batch is written and flushed at once, so memory
    stays flat however long the run.
    """

    def __init__(self, path: str | os.PathLike[str], *, poll_s: float = 0.1):
        self.path = os.fspath(path)
        self._file: TextIO | None = open(self.path, "w", encoding="ascii")
        self._lock = threading.Lock()
        self._poll_s = poll_s
        self._reader: TraceReader | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.nr_lines = 0

    @property
    def nr_lost_lines(self) -> int:
        return self._reader.nr_lost_lines if self._reader is not None else 0

    def record(self, ev: AggregatedEvent, pid: int | None = None, cpu: int | None = None) -> None:
        """Write one batch now (usable as ``ctx.add_aggregation_listener(rec.record)``)."""
        if pid is None:
            pid = threading.get_native_id()
        if cpu is None:
            cpu = current_cpu()
        self._write(perf_script_lines(ev, pid=pid, cpu=cpu), ev.nr_regions)

    def _write(self, lines: Iterator[str], nr: int) -> None:
        with self._lock:
            if self._file is None:
                return
            for line in lines:
                self._file.write(line + "\n")
            self._file.flush()
            self.nr_lines += nr

    def start(self, hub: TraceHub) -> None:
        """Follow ``hub`` from a thread of its own until :meth:`stop`."""
        if self._thread is not None:
            raise RuntimeError("the recorder already follows a hub")
        self._reader = hub.open_reader("perf")
        self._thread = threading.Thread(target=self._follow, name="pydamon-trace-recorder",
                                        daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        reader = self._reader
        assert reader is not None
        while not self._stop.is_set():
            self._drain(reader, self._poll_s)
        self._drain(reader, 0)

    def _drain(self, reader: TraceReader, timeout: float) -> None:
        for rec in reader.read_records(timeout):
            self._write(perf_script_lines(rec.event, pid=rec.pid, cpu=rec.cpu), rec.nr_lines)

    def stop(self) -> None:
        """Write what is still buffered and close the file."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        if self._reader is not None:
            self._reader.close()
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> PerfScriptRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
