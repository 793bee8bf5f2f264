"""The damon_aggregated stream: hub, trace_pipe readers, perf-script recorder."""

from __future__ import annotations

import os
import re
import threading
import time
import tracemalloc

import numpy as np
import pytest

from pydamon.core import AggregatedEvent, Context, Kdamond, MonitoringAttrs, Target, VirtualClock
from pydamon.interfaces.trace import (
    EVENT,
    PerfScriptRecorder,
    TraceHub,
    build_trace_dir,
    parse_perf_script_line,
)
from pydamon.interfaces.tree import File, StreamFile, Tree

sim = pytest.importorskip("pydamon.ops.sim", reason="the sim operations set is not available")

TRACE_PIPE_LINE = re.compile(
    r"^\s*kdamond\.(?P<kd>\d+)-(?P<pid>\d+) +\[(?P<cpu>\d{3})\] \.\.\.\.\. +"
    r"(?P<secs>\d+)\.(?P<usecs>\d{6}): damon_aggregated: target_id=(?P<tid>\d+) "
    r"nr_regions=(?P<nr>\d+) (?P<start>\d+)-(?P<end>\d+): (?P<acc>\d+) (?P<age>\d+)$"
)


def event(time_ns: int, nr_regions: int, target_idx: int = 0, kdamond_idx: int = 0) -> AggregatedEvent:
    start = np.arange(nr_regions, dtype=np.int64) * 4096
    return AggregatedEvent(time_ns, kdamond_idx, 0, target_idx, start, start + 4096,
                           np.arange(nr_regions, dtype=np.int64) % 7,
                           np.full(nr_regions, 3, dtype=np.int64))


def sim_context(attrs: MonitoringAttrs | None = None, seed: int = 0) -> Context:
    world = sim.SimWorld(seed=seed)
    pid = world.spawn(sim.builtin_workload("hotcold"))
    return Context(sim.SimOps(world), attrs=attrs or MonitoringAttrs(),
                   targets=[Target(pid=pid)], clock=VirtualClock(), seed=seed)


# -- hub and readers -----------------------------------------------------------------


def test_reader_gets_only_what_is_published_after_it_opens():
    hub = TraceHub()
    hub.publish(event(1_000, 3))  # nobody listens: not kept
    with hub.open_reader() as early:
        hub.publish(event(2_000, 2))
        with hub.open_reader() as late:
            hub.publish(event(3_000, 4))
            assert len(early.read_lines(0)) == 6
            assert len(late.read_lines(0)) == 4
            assert early.read_lines(0) == [] and late.read_lines(0) == []
    assert hub.nr_published_lines == 6
    assert hub.nr_readers == 0 and hub.lines_held == 0


def test_publish_without_readers_keeps_nothing():
    hub = TraceHub(capacity_lines=4)
    for i in range(100):
        hub.publish(event(i, 10))
    assert hub.lines_held == 0 and hub.nr_published_lines == 0


def test_ring_buffer_drops_oldest_and_counts_what_a_slow_reader_lost():
    hub = TraceHub(capacity_lines=10)
    with hub.open_reader("perf") as reader:
        for i in range(5):
            hub.publish(event(i * 1_000_000_000, 4))
            assert hub.lines_held <= 10 or hub.lines_held == 4
        # held: the two newest batches (8 lines); 12 lines were overwritten
        assert hub.lines_held == 8
        lines = reader.read_lines(0)
        assert len(lines) == 8
        assert reader.nr_lost_lines == 12 and hub.nr_lost_lines == 12
        times = {parse_perf_script_line(line)["time_ns"] for line in lines}
        assert times == {3_000_000_000, 4_000_000_000}
        # a fast reader loses nothing afterwards
        hub.publish(event(5_000_000_000, 4))
        assert len(reader.read_lines(0)) == 4 and reader.nr_lost_lines == 12


def test_a_batch_bigger_than_the_capacity_is_still_delivered_whole():
    hub = TraceHub(capacity_lines=3)
    with hub.open_reader() as reader:
        hub.publish(event(0, 50))
        assert len(reader.read_lines(0)) == 50 and reader.nr_lost_lines == 0


def test_trace_pipe_read_waits_for_lines_and_slices_by_size():
    hub = TraceHub()
    reader = hub.open_reader()
    t0 = time.monotonic()
    assert reader.read(4096, 0.05) == b""
    assert time.monotonic() - t0 >= 0.04
    threading.Timer(0.05, hub.publish, args=(event(1_500_000, 3),)).start()
    first = reader.read(10, 5.0)
    assert len(first) == 10
    rest = reader.read(1 << 20, 0)
    text = (first + rest).decode()
    assert text.endswith("\n") and len(text.splitlines()) == 3
    assert all(TRACE_PIPE_LINE.match(line) for line in text.splitlines())
    reader.close()
    assert reader.read(100, 0) == b""


def test_close_wakes_a_blocked_reader():
    hub = TraceHub()
    reader = hub.open_reader()
    threading.Timer(0.05, reader.close).start()
    t0 = time.monotonic()
    assert reader.read_lines(10.0) == []
    assert time.monotonic() - t0 < 5.0


def test_trace_dir_files():
    hub = TraceHub()
    tree = Tree(build_trace_dir(hub))
    assert tree.read("available_events") == EVENT + "\n"
    assert isinstance(tree.lookup("available_events"), File)
    node = tree.lookup("trace_pipe")
    assert isinstance(node, StreamFile) and node.mode == 0o400
    reader = node.open()
    hub.publish(event(0, 2))
    assert reader.read(1 << 16, 1.0).count(b"\n") == 2
    reader.close()
    assert hub.nr_readers == 0


def test_line_formats_of_one_event():
    hub = TraceHub()
    with hub.open_reader("trace_pipe") as tp, hub.open_reader("perf") as perf:
        hub.publish(event(79357_842179_123, 2, target_idx=1, kdamond_idx=3))
        tp_lines, perf_lines = tp.read_lines(0), perf.read_lines(0)
    pid = threading.get_native_id()
    m = TRACE_PIPE_LINE.match(tp_lines[0])
    assert m and m["kd"] == "3" and int(m["pid"]) == pid
    assert (m["secs"], m["usecs"]) == ("79357", "842179")
    assert tp_lines[1].endswith("damon_aggregated: target_id=1 nr_regions=2 4096-8192: 1 3")
    # the columns of ftrace and perf script (16-wide comm, then pid)
    assert tp_lines[0].startswith(f"{'kdamond.3':>16}-{pid:<7} [")
    assert perf_lines[0].startswith(f"{'kdamond.3':>16} {pid:>5} [")
    assert perf_lines[0].endswith(
        "79357.842179: damon:damon_aggregated: target_id=1 nr_regions=2 0-4096: 0 3")
    assert parse_perf_script_line(perf_lines[1])["start"] == 4096


# -- with a real kdamond on the simulated operations set -------------------------------


def check_batches(lines: list[str], aggr_us: int) -> int:
    """Every line well formed; each batch covers contiguous regions; times on aggregations."""
    parsed = []
    for line in lines:
        m = TRACE_PIPE_LINE.match(line)
        assert m, line
        parsed.append(m)
    i = batches = 0
    while i < len(parsed):
        nr = int(parsed[i]["nr"])
        batch = parsed[i:i + nr]
        assert len(batch) == nr and {b["nr"] for b in batch} == {str(nr)}
        t_us = int(batch[0]["secs"]) * 1_000_000 + int(batch[0]["usecs"])
        assert t_us % aggr_us == 0
        for prev, cur in zip(batch, batch[1:], strict=False):
            assert int(prev["end"]) <= int(cur["start"])
        assert all(int(b["start"]) < int(b["end"]) for b in batch)
        i += nr
        batches += 1
    return batches


def test_trace_pipe_of_a_virtual_time_run():
    attrs = MonitoringAttrs(5_000, 100_000, 1_000_000, 10, 1000)
    ctx = sim_context(attrs)
    hub = TraceHub(capacity_lines=1 << 20)
    ctx.add_aggregation_listener(hub.publish)
    with hub.open_reader() as reader:
        Kdamond(ctx).run(duration_us=2_000_000)
        lines = reader.read_lines(0)
    # one batch per aggregation: 2 s of 100 ms aggregations
    assert check_batches(lines, attrs.aggr_us) == 20
    assert reader.nr_lost_lines == 0


def test_trace_pipe_is_readable_live_while_a_kdamond_runs():
    ctx = sim_context(MonitoringAttrs(5_000, 100_000, 1_000_000, 10, 1000))
    hub = TraceHub()
    ctx.add_aggregation_listener(hub.publish)
    kd = Kdamond(ctx)
    reader = build_trace_dir(hub).entries["trace_pipe"].open()
    kd.start()
    try:
        data = b""
        deadline = time.monotonic() + 10
        while data.count(b"\n") < 100 and time.monotonic() < deadline:
            data += reader.read(4096, 1.0)
    finally:
        kd.stop()
        reader.close()
    lines = data.decode().splitlines()
    assert len(lines) >= 100
    m = TRACE_PIPE_LINE.match(lines[0])
    assert m and int(m["pid"]) == kd.tid and m["kd"] == "0"


def test_recorder_as_listener_writes_every_line_in_perf_script_format(tmp_path):
    attrs = MonitoringAttrs(5_000, 100_000, 1_000_000, 10, 1000)
    ctx = sim_context(attrs)
    seen: list[AggregatedEvent] = []
    ctx.add_aggregation_listener(seen.append)
    path = tmp_path / "perf.data.txt"
    with PerfScriptRecorder(path) as rec:
        ctx.add_aggregation_listener(rec.record)
        Kdamond(ctx).run(duration_us=3_000_000)
    lines = path.read_text().splitlines()
    assert len(lines) == rec.nr_lines == sum(ev.nr_regions for ev in seen)
    rows = [parse_perf_script_line(line) for line in lines]
    assert all(rows)
    expected = [(ev.time_ns, s, e, a, g) for ev in seen for s, e, a, g in ev.rows()]
    assert [(r["time_ns"], r["start"], r["end"], r["nr_accesses"], r["age"]) for r in rows] \
        == expected


def test_recorder_following_a_hub_records_a_threaded_run(tmp_path):
    ctx = sim_context(MonitoringAttrs(5_000, 100_000, 1_000_000, 10, 1000))
    hub = TraceHub(capacity_lines=1 << 20)
    ctx.add_aggregation_listener(hub.publish)
    path = tmp_path / "rec.txt"
    rec = PerfScriptRecorder(path, poll_s=0.01)
    rec.start(hub)
    kd = Kdamond(ctx)
    kd.start()
    deadline = time.monotonic() + 10
    while rec.nr_lines < 500 and time.monotonic() < deadline:
        time.sleep(0.01)
    kd.stop()
    rec.stop()
    lines = path.read_text().splitlines()
    assert len(lines) == rec.nr_lines >= 500
    assert rec.nr_lost_lines == 0
    assert all(parse_perf_script_line(line) for line in lines)
    assert hub.nr_readers == 0


@pytest.mark.slow
def test_recorder_memory_stays_flat_over_a_long_run(tmp_path):
    """Half a run and the whole run leave the same memory: lines go to disk as they come."""
    ctx = sim_context(MonitoringAttrs(5_000, 100_000, 1_000_000, 300, 1000))
    path = tmp_path / "long.txt"
    sizes_on_disk: list[tuple[int, int]] = []
    with PerfScriptRecorder(path) as rec:
        ctx.add_aggregation_listener(rec.record)
        ctx.add_aggregation_listener(
            lambda ev: sizes_on_disk.append((rec.nr_lines, os.path.getsize(path))))
        tracemalloc.start()
        try:
            kd = Kdamond(ctx)
            kd.run(duration_us=2_000_000)
            half_lines, half_mem = rec.nr_lines, tracemalloc.get_traced_memory()[0]
            kd.run(duration_us=4_000_000)
            full_lines, full_mem = rec.nr_lines, tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
    assert full_lines > 2 * half_lines > 10_000
    # the second part wrote megabytes of text; memory grew by far less
    grown = full_mem - half_mem
    print(f"recorded {full_lines} lines, {os.path.getsize(path)} bytes; memory grew {grown} B")
    assert os.path.getsize(path) > 2 * 1_000_000 > 4 * grown, grown
    # flushed as it goes: the file held every line written so far at each aggregation
    nr, size = sizes_on_disk[len(sizes_on_disk) // 2]
    assert size > 0 and nr > 0 and size >= nr * 60
