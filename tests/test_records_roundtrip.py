"""Record files: every format round-trips, streaming keeps targets apart, bad files fail clearly."""

import json
import os
import zlib

import numpy as np
import pytest

from pydamon.core.events import AggregatedEvent
from pydamon.records import (
    FORMATS,
    JSON,
    JSON_COMPRESSED,
    PERF_SCRIPT,
    Intervals,
    RecordError,
    RecordWriter,
    Snapshot,
    detect_format,
    parse_perf_script,
    read_records,
    write_records,
)

IV = Intervals(5_000, 100_000, 1_000_000)


def snap(i: int, shift: int = 0) -> Snapshot:
    base = 0x7F0000000000 + shift
    return Snapshot(
        i * 100_000_000, (i + 1) * 100_000_000,
        np.array([base, base + 4096, base + 65536], np.int64),
        np.array([base + 4096, base + 65536, base + (1 << 30)], np.int64),
        np.array([i % 21, 0, 3], np.int64), np.array([i, 2 * i, 7], np.int64))


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_two_targets(tmp_path, fmt):
    path = tmp_path / f"rec.{fmt}"
    with RecordWriter(path, fmt, IV) as w:
        for i in range(25):
            w.add_snapshot(0, snap(i))
            w.add_snapshot(1, snap(i, shift=1 << 32))
    recs = read_records(path)
    assert detect_format(path.read_bytes()[:4096]) == fmt
    assert [r.target_id for r in recs] == [0, 1]
    for rec, shift in zip(recs, (0, 1 << 32), strict=True):
        assert len(rec.snapshots) == 25
        for i, s in enumerate(rec.snapshots):
            want = snap(i, shift)
            assert list(s.rows()) == list(want.rows())
            assert s.end_ns == want.end_ns
            assert s.start_ns == want.start_ns  # perf_script: deduced from the end times
        if fmt != PERF_SCRIPT:
            assert rec.intervals == IV


def test_single_snapshot_perf_script_gets_fake_trailer(tmp_path):
    path = tmp_path / "one.txt"
    with RecordWriter(path, PERF_SCRIPT, IV) as w:
        w.add_snapshot(0, snap(3))
    lines = path.read_text().splitlines()
    assert lines[-1].endswith("nr_regions=1 0-0: -1 -1")
    [rec] = read_records(path)
    assert len(rec.snapshots) == 1
    s = rec.snapshots[0]
    assert (s.start_ns, s.end_ns) == (300_000_000, 400_000_000)


def test_json_is_damos_structure(tmp_path):
    path = tmp_path / "rec.json"
    with RecordWriter(path, JSON, IV) as w:
        w.add_snapshot(5, snap(1))
    [kv] = json.loads(path.read_text())
    assert kv["target_id"] == 5 and kv["intervals"]["aggr_us"] == 100_000
    region = kv["snapshots"][0]["regions"][0]
    assert region["nr_accesses"]["samples"] == 1
    assert region["age"]["aggr_intervals"] == 1 and region["age"]["usec"] is None
    assert kv["snapshots"][0]["total_bytes"] == (1 << 30)


def test_add_event_listener_tracks_start_times(tmp_path):
    path = tmp_path / "ev.data"
    w = RecordWriter(path, JSON_COMPRESSED, IV)
    for i in range(3):
        s = snap(i)
        w.add_event(AggregatedEvent(s.end_ns, 0, 0, 0, s.start, s.end, s.nr_accesses, s.age))
    w.close()
    [rec] = read_records(path)
    assert [(s.start_ns, s.end_ns) for s in rec.snapshots] == [
        (0, 100_000_000), (100_000_000, 200_000_000), (200_000_000, 300_000_000)]


def test_reads_damo_text_values(tmp_path):
    # what damo writes in its human-readable mode: separators and units
    kv = [{"kdamond_idx": 0, "context_idx": 0,
           "intervals": {"sample_us": "5 ms", "aggr_us": "100 ms", "ops_update_us": "1 s"},
           "scheme_idx": None, "target_id": 0, "scheme_filters": [],
           "snapshots": [{"start_time": "10000000000", "end_time": "10100000000",
                          "regions": [{"start": "4,096", "end": "8,192",
                                       "nr_accesses": {"samples": 3, "percent": None},
                                       "age": {"usec": None, "aggr_intervals": "1"},
                                       "probe_hits": [], "sz_filter_passed": "0 B"},
                                      {"start": "8,192", "end": "16,384",
                                       "nr_accesses": {"samples": None, "percent": 50},
                                       "age": {"usec": "200 ms", "aggr_intervals": None}}],
                          "total_bytes": "12.000 KiB"}]}]
    path = tmp_path / "damo.json"
    path.write_text(json.dumps(kv, indent=4))
    [rec] = read_records(path)
    assert rec.intervals == IV
    assert list(rec.snapshots[0].rows()) == [(4096, 8192, 3, 1), (8192, 16384, 10, 2)]


def test_parse_damo_perf_script_placeholders():
    text = """kdamond.x xxxx xxxx 10.100000: damon:damon_aggregated: target_id=0 nr_regions=2 4096-8192: 3 1
kdamond.x xxxx xxxx 10.100000: damon:damon_aggregated: target_id=0 nr_regions=2 8192-16384: 0 2
   perf  1234 [001] 10.150000: sched:sched_switch: prev_comm=x
kdamond.x xxxx xxxx 10.200000: damon:damon_aggregated: target_id=0 nr_regions=1 4096-16384: 5 0
"""
    [rec] = parse_perf_script(text.splitlines())
    assert [s.nr_regions for s in rec.snapshots] == [2, 1]
    assert rec.snapshots[1].start_ns == 10_100_000_000
    assert rec.snapshots[0].start_ns == 10_000_000_000


def test_streaming_writes_as_it_goes(tmp_path):
    # the compressed file grows while recording, before close
    path = tmp_path / "big.data"
    w = RecordWriter(path, JSON_COMPRESSED, IV)
    rng = np.random.default_rng(0)
    for i in range(200):
        s = snap(i)
        s.nr_accesses = rng.integers(0, 20, len(s.start))
        w.add_snapshot(0, s)
    w.sink.f.flush()
    assert os.path.getsize(path) > 0
    w.close()
    assert len(read_records(path)[0].snapshots) == 200


def test_write_records_converts(tmp_path):
    a = tmp_path / "a.txt"
    with RecordWriter(a, PERF_SCRIPT, IV) as w:
        for i in range(4):
            w.add_snapshot(2, snap(i))
    recs = read_records(a)
    b = tmp_path / "b.data"
    write_records(b, recs, JSON_COMPRESSED)
    assert [list(s.rows()) for s in read_records(b)[0].snapshots] == [
        list(s.rows()) for s in recs[0].snapshots]


@pytest.mark.parametrize("content,msg", [
    (b"", "is empty"),
    (zlib.compress(b'[{"target_id": 0, "snapshots": [')[:-6], "not valid zlib|truncated|JSON"),
    (b'[{"target_id": 0, "snapshots": [{"start_time": 0}', "not valid JSON"),
    (b'[{"snapshots": []}]', "bad or missing field"),
    (b"hello world\n", "no damon:damon_aggregated line"),
    (b"PERFILE2\x00\x01", "raw perf.data"),
    (bytes(range(128, 256)) * 4, "not a DAMON record"),
])
def test_bad_files_fail_clearly(tmp_path, content, msg):
    path = tmp_path / "bad.data"
    path.write_bytes(content)
    with pytest.raises(RecordError, match=msg):
        read_records(path)


def test_missing_and_unwritable(tmp_path):
    with pytest.raises(RecordError, match="does not exist"):
        read_records(tmp_path / "nope.data")
    with pytest.raises(RecordError, match="is a directory"):
        read_records(tmp_path)
    with pytest.raises(RecordError, match="cannot write record file"):
        RecordWriter(tmp_path / "no" / "such" / "dir.data")
    with pytest.raises(RecordError, match="unknown record format"):
        RecordWriter(tmp_path / "x", "xml")


@pytest.mark.parametrize("fmt", [JSON_COMPRESSED, JSON])
def test_cut_record_is_read_up_to_the_last_flush(tmp_path, monkeypatch, fmt):
    from pydamon import records

    monkeypatch.setattr(records._Sink, "FLUSH_PERIOD_S", 0.0)  # flush after every write
    path = tmp_path / "cut.data"
    w = RecordWriter(path, fmt, IV)
    for i in range(50):
        w.add_snapshot(0, snap(i))
    w.sink.f.flush()
    data = path.read_bytes()
    w.close()
    # as if the recorder had been killed: the file ends mid-way, no trailer
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.warns(records.RecordWarning, match="cut short"):
        [rec] = read_records(path)
    assert 20 <= len(rec.snapshots) < 50
    assert [list(s.rows()) for s in rec.snapshots] == [
        list(snap(i).rows()) for i in range(len(rec.snapshots))]
