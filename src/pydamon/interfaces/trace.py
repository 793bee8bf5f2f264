"""The ``damon:damon_aggregated`` tracepoint, as text.

The kernel prints ``target_id=%lu nr_regions=%u %lu-%lu: %u %u`` (target
index, regions of the target, start, end, nr_accesses, age); ``perf script``
prefixes it with the task, pid, cpu, timestamp and event name. These
functions produce and parse exactly those lines, one per region.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from ..core.events import AggregatedEvent

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
    head = f"kdamond.{ev.kdamond_idx} {pid:>6} [{cpu:03d}] {secs:>5}.{usecs:06d}: {EVENT}: "
    n = ev.nr_regions
    for start, end, nr, age in ev.rows():
        yield head + tracepoint_text(ev.target_idx, n, start, end, nr, age)


def trace_pipe_lines(ev: AggregatedEvent, pid: int = 0, cpu: int = 0) -> Iterator[str]:
    """``trace_pipe`` (ftrace) lines: ``comm-pid [cpu] flags ts: event: text``."""
    secs = ev.time_ns // 1_000_000_000
    usecs = (ev.time_ns // 1000) % 1_000_000
    head = (f"{'kdamond.' + str(ev.kdamond_idx) + '-' + str(pid):>16} [{cpu:03d}] ..... "
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
