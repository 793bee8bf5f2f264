"""Monitoring-result record files, in the formats damo reads and writes.

A record file holds, per monitoring target, a time series of snapshots; a
snapshot is the list of regions (start, end, nr_accesses in samples, age in
aggregation intervals) at the end of one aggregation interval.

Formats (the names damo's ``--output_type`` takes):

``json_compressed`` (default)
    zlib stream of a JSON list of records, each
    ``{kdamond_idx, context_idx, intervals{sample_us, aggr_us, ops_update_us},
    scheme_idx, target_id, scheme_filters, data_source, snapshots[{start_time,
    end_time (ns), regions[{start, end, nr_accesses{samples, percent},
    age{usec, aggr_intervals}, ...}], total_bytes, ...}]}``.
``json``
    the same JSON, uncompressed.
``perf_script``
    ``perf script`` text of ``damon:damon_aggregated`` events, one line per
    region; a snapshot ends when ``nr_regions`` lines of a target were seen.
    Lines carry only end times, so a record of one snapshot gets a trailing
    fake snapshot (one 0-0 region with -1 accesses and age) whose time gives
    the first snapshot's duration; readers drop it.

Writing is streamed: :class:`RecordWriter` writes each snapshot as it comes
(through a streaming zlib compressor for ``json_compressed``), so recording
for hours keeps memory flat. Numbers are written as JSON numbers, which
damo's parser accepts like its own strings; the reader accepts both, with
thousands separators and units (``"4,096"``, ``"12.000 KiB"``, ``"100 ms"``).
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
import time
import warnings
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO

import numpy as np

from .core.events import AggregatedEvent
from .interfaces import trace

JSON_COMPRESSED = "json_compressed"
JSON = "json"
PERF_SCRIPT = "perf_script"
FORMATS = (JSON_COMPRESSED, JSON, PERF_SCRIPT)


class RecordError(Exception):
    """A record file that cannot be read or written; the message names the cause and the fix."""


@dataclass(frozen=True)
class Intervals:
    sample_us: int = 5_000
    aggr_us: int = 100_000
    update_us: int = 1_000_000

    @property
    def max_nr_accesses(self) -> int:
        return max(self.aggr_us // max(self.sample_us, 1), 1)


@dataclass
class Snapshot:
    """Regions of one target at the end of one aggregation interval (times in ns)."""

    start_ns: int
    end_ns: int
    start: np.ndarray
    end: np.ndarray
    nr_accesses: np.ndarray
    age: np.ndarray

    @classmethod
    def from_rows(cls, start_ns: int, end_ns: int,
                  rows: Iterable[tuple[int, int, int, int]]) -> Snapshot:
        arr = np.asarray(list(rows), dtype=np.int64).reshape(-1, 4)
        return cls(start_ns, end_ns, arr[:, 0].copy(), arr[:, 1].copy(), arr[:, 2].copy(),
                   arr[:, 3].copy())

    @property
    def nr_regions(self) -> int:
        return len(self.start)

    @property
    def sizes(self) -> np.ndarray:
        return self.end - self.start

    @property
    def total_bytes(self) -> int:
        return int(self.sizes.sum())

    def rows(self) -> Iterator[tuple[int, int, int, int]]:
        yield from zip(self.start.tolist(), self.end.tolist(), self.nr_accesses.tolist(),
                       self.age.tolist(), strict=True)

    def is_fake(self) -> bool:
        return (self.nr_regions == 1 and int(self.start[0]) == 0 and int(self.end[0]) == 0
                and int(self.nr_accesses[0]) == -1 and int(self.age[0]) == -1)


@dataclass
class Record:
    """The snapshots of one monitoring target."""

    target_id: int
    intervals: Intervals | None = None
    kdamond_idx: int = 0
    context_idx: int = 0
    scheme_idx: int | None = None
    snapshots: list[Snapshot] = field(default_factory=list)

    @property
    def start_ns(self) -> int:
        return self.snapshots[0].start_ns if self.snapshots else 0

    @property
    def end_ns(self) -> int:
        return self.snapshots[-1].end_ns if self.snapshots else 0


# -- number parsing of what damo may write ------------------------------------------------
_SIZE_UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
               "PiB": 1 << 50, "EiB": 1 << 60}
_TIME_UNITS = {"ns": 1, "us": 1000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000,
               "h": 3_600_000_000_000, "d": 86_400_000_000_000}
_ULONG_MAX = (1 << 64) - 1


def _num(v: object, units: dict[str, int] | None = None, default: int | None = None) -> int:
    """An integer from a JSON value: a number, ``"4,096"``, ``"12.000 KiB"``, ``"1 s 5 ms"``."""
    if v is None:
        if default is not None:
            return default
        raise ValueError("missing number")
    if isinstance(v, bool):
        raise ValueError(f"not a number: {v!r}")
    if isinstance(v, (int, float)):
        return int(v)
    s = str(v).strip()
    if s == "max":
        return _ULONG_MAX
    plain = s.replace(",", "")
    try:
        return int(plain)
    except ValueError:
        pass
    try:
        return int(float(plain))
    except ValueError:
        pass
    if units is None:
        raise ValueError(f"not a number: {v!r}")
    total = 0.0
    tokens = plain.split()
    if len(tokens) % 2:
        m = re.match(r"^(-?[0-9.]+)([A-Za-z]+)$", plain)
        if not m:
            raise ValueError(f"not a number: {v!r}")
        tokens = [m[1], m[2]]
    for i in range(0, len(tokens), 2):
        unit = tokens[i + 1]
        if unit not in units:
            raise ValueError(f"unknown unit {unit!r} in {v!r}")
        total += float(tokens[i]) * units[unit]
    return int(round(total))


def _bytes(v: object) -> int:
    return _num(v, _SIZE_UNITS)


def _ns(v: object) -> int:
    return _num(v, _TIME_UNITS)


def _us(v: object) -> int:
    # bare numbers are microseconds; a unit-suffixed text is converted
    try:
        return _num(v)
    except ValueError:
        return _num(v, _TIME_UNITS) // 1000


# -- reading --------------------------------------------------------------------------------
def detect_format(head: bytes) -> str | None:
    """The record format of a file starting with ``head``, or None if it is none of them."""
    if len(head) >= 2 and head[0] & 0x0F == 8 and (head[0] << 8 | head[1]) % 31 == 0:
        return JSON_COMPRESSED
    text = head.lstrip()
    if text[:1] in (b"[", b"{"):
        return JSON
    if head.startswith(b"PERFILE"):
        return "perf_data"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        # a multi-byte character cut at the end of the head is still text
        try:
            head[:-4].decode("utf-8")
        except UnicodeDecodeError:
            return None
    return PERF_SCRIPT


def read_records(path: str | os.PathLike) -> list[Record]:
    """Read a record file of any format damo writes (the format is detected)."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except FileNotFoundError:
        raise RecordError(f"record file {path!r} does not exist; record one first "
                          f"(pydamon record ... -o {path}) or name another with -i") from None
    except IsADirectoryError:
        raise RecordError(f"{path!r} is a directory, not a record file; name a file with -i") from None
    except PermissionError:
        raise RecordError(f"cannot read record file {path!r}: permission denied; "
                          f"run as its owner or fix its mode (chmod)") from None
    if not head:
        raise RecordError(f"record file {path!r} is empty; the recording produced no snapshot "
                          f"(record longer than one aggregation interval)")
    fmt = detect_format(head)
    try:
        if fmt in (JSON_COMPRESSED, JSON):
            with open(path, "rb") as f:
                raw = f.read()
            if fmt == JSON_COMPRESSED:
                z = zlib.decompressobj()
                data = z.decompress(raw)
                complete = z.eof
            else:
                data, complete = raw, True
            try:
                return records_from_json(json.loads(data))
            except json.JSONDecodeError:
                if complete and fmt == JSON_COMPRESSED:
                    raise
                recovered = _recover_cut_json(data.decode("utf-8", "replace"))
                if recovered is None:
                    raise
                records = records_from_json(json.loads(recovered))
                n = sum(len(r.snapshots) for r in records)
                warnings.warn(f"record file {path!r} was cut short (a recording killed before "
                              f"it finished?); read the {n} complete snapshots before the cut",
                              RecordWarning, stacklevel=2)
                return records
        if fmt == PERF_SCRIPT:
            with open(path, encoding="utf-8", errors="replace") as f:
                records = parse_perf_script(f)
            if not records:
                raise RecordError(f"{path!r} has no damon:damon_aggregated line; it is not a "
                                  f"DAMON record (give a json_compressed, json or perf_script file)")
            return records
        if fmt == "perf_data":
            raise RecordError(f"{path!r} is raw perf.data; convert it first with "
                              f"'perf script -i {path} > {path}.txt' and read that file")
    except zlib.error as e:
        raise RecordError(f"record file {path!r} is not valid zlib data ({e}); it may be "
                          f"truncated (a recording killed before it finished)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RecordError(f"record file {path!r} is not valid JSON ({e}); it may be truncated "
                          f"or not a DAMON record") from None
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise RecordError(f"record file {path!r} does not look like a DAMON record "
                          f"(bad or missing field: {e})") from None
    raise RecordError(f"{path!r} is not a DAMON record file (binary data of unknown format)")


class RecordWarning(UserWarning):
    """A record file that was readable only in part."""


_SNAPSHOT_END = '"sample_interval_us": null}'


def _recover_cut_json(text: str) -> str | None:
    """The JSON of a cut pydamon record, closed after its last complete snapshot.

    The writer flushes its compressor every second, so a recording killed
    with SIGKILL (or a full disk) leaves whole snapshots up to the last flush;
    only the first target's snapshots (the ones streamed directly) survive.
    """
    cut = text.rfind(_SNAPSHOT_END)
    if cut < 0 or not text.lstrip().startswith("[{"):
        return None
    return text[:cut + len(_SNAPSHOT_END)] + "]}]"


def records_from_json(data: object) -> list[Record]:
    """Records from damo's JSON structure (a list, or the ``record_list`` of a wrapper)."""
    if isinstance(data, dict):
        inner = data.get("damo_records", data)
        data = inner.get("record_list", inner.get("records")) if isinstance(inner, dict) else inner
    if not isinstance(data, list):
        raise ValueError("top level is not a list of records")
    return [_record_from_kv(kv) for kv in data]


def _record_from_kv(kv: dict) -> Record:
    iv = kv.get("intervals")
    intervals = None
    if iv is not None:
        intervals = Intervals(_us(iv["sample_us"]), _us(iv["aggr_us"]),
                              _us(iv.get("ops_update_us", iv.get("update_us", 1_000_000))))
    rec = Record(target_id=_num(kv["target_id"]), intervals=intervals,
                 kdamond_idx=_num(kv.get("kdamond_idx"), default=0),
                 context_idx=_num(kv.get("context_idx"), default=0),
                 scheme_idx=None if kv.get("scheme_idx") is None else _num(kv["scheme_idx"]))
    for s in kv["snapshots"]:
        regions = s["regions"]
        n = len(regions)
        cols = np.zeros((4, n), dtype=np.int64)
        for i, r in enumerate(regions):
            cols[0, i] = _bytes(r["start"])
            cols[1, i] = _bytes(r["end"])
            acc = r.get("nr_accesses")
            cols[2, i] = _access_samples(acc, intervals)
            cols[3, i] = _age_aggrs(r.get("age"), intervals)
        end_ns = _ns(s["end_time"])
        start_ns = _ns(s["start_time"]) if s.get("start_time") is not None else None
        if start_ns is None:
            start_ns = rec.snapshots[-1].end_ns if rec.snapshots else end_ns - (
                intervals.aggr_us * 1000 if intervals else 0)
        snap = Snapshot(start_ns, end_ns, cols[0], cols[1], cols[2], cols[3])
        if not snap.is_fake():
            rec.snapshots.append(snap)
    return rec


def _access_samples(acc: object, intervals: Intervals | None) -> int:
    if acc is None:
        return 0
    if isinstance(acc, dict):
        if acc.get("samples") is not None:
            return _num(acc["samples"])
        if acc.get("percent") is not None and intervals is not None:
            return int(float(str(acc["percent"]).rstrip("% ")) * intervals.max_nr_accesses / 100)
        return 0
    return _num(acc)


def _age_aggrs(age: object, intervals: Intervals | None) -> int:
    if age is None:
        return 0
    if isinstance(age, dict):
        if age.get("aggr_intervals") is not None:
            return _num(age["aggr_intervals"])
        if age.get("usec") is not None and intervals is not None:
            return _us(age["usec"]) // max(intervals.aggr_us, 1)
        return 0
    return _num(age)


_AGGR_EVENT = re.compile(
    r"(?P<ts>\d+\.\d+):\s+(?:damon:)?damon_aggregated:\s+target_id=(?P<tid>\d+)\s+"
    r"nr_regions=(?P<nr>\d+)\s+(?P<start>\d+)-(?P<end>\d+):\s+(?P<acc>-?\d+)(?:\s+(?P<age>-?\d+))?"
)


def _seconds_to_ns(ts: str) -> int:
    whole, frac = ts.split(".")
    return int(whole) * 1_000_000_000 + int((frac + "000000000")[:9])


def parse_perf_script(lines: Iterable[str]) -> list[Record]:
    """Records from ``perf script`` (or ``trace-cmd report``) damon_aggregated lines.

    Lines of other events are skipped. Accepts damo's placeholder pid and
    cpu fields (``kdamond.x xxxx xxxx``).
    """
    records: dict[int, Record] = {}
    pending: dict[int, tuple[int, int, list[tuple[int, int, int, int]]]] = {}
    for line in lines:
        if "damon_aggregated" not in line:
            continue
        m = _AGGR_EVENT.search(line)
        if not m:
            continue
        tid, nr = int(m["tid"]), int(m["nr"])
        end_ns = _seconds_to_ns(m["ts"])
        row = (int(m["start"]), int(m["end"]), int(m["acc"]), int(m["age"] or 0))
        rec = records.setdefault(tid, Record(target_id=tid))
        cur = pending.get(tid)
        if cur is None or cur[0] != end_ns:
            if cur is not None:  # an incomplete snapshot: keep what was seen
                _close_pending(rec, cur)
            cur = (end_ns, nr, [])
            pending[tid] = cur
        cur[2].append(row)
        if len(cur[2]) >= cur[1]:
            _close_pending(rec, cur)
            del pending[tid]
    for tid, cur in pending.items():
        _close_pending(records[tid], cur)
    out = []
    for rec in records.values():
        snaps = rec.snapshots
        if len(snaps) >= 2:
            # the first snapshot's start is unknown: assume the mean duration
            span = (snaps[-1].end_ns - snaps[0].end_ns) // (len(snaps) - 1)
            snaps[0].start_ns = snaps[0].end_ns - span
        elif snaps:
            snaps[0].start_ns = snaps[0].end_ns
        rec.snapshots = [s for s in snaps if not s.is_fake()]
        out.append(rec)
    return out


def _close_pending(rec: Record, cur: tuple[int, int, list]) -> None:
    end_ns, _, rows = cur
    start_ns = rec.snapshots[-1].end_ns if rec.snapshots else end_ns
    rec.snapshots.append(Snapshot.from_rows(start_ns, end_ns, rows))


# -- writing --------------------------------------------------------------------------------
def _intervals_kv(iv: Intervals | None) -> dict | None:
    if iv is None:
        return None
    return {"sample_us": iv.sample_us, "aggr_us": iv.aggr_us, "ops_update_us": iv.update_us,
            "intervals_goal": {"access_bp": 0, "aggrs": 0, "min_sample_us": 0,
                               "max_sample_us": 0}}


def _record_head(target_id: int, intervals: Intervals | None, kdamond_idx: int,
                 context_idx: int, scheme_idx: int | None) -> str:
    head = {"kdamond_idx": kdamond_idx, "context_idx": context_idx,
            "intervals": _intervals_kv(intervals), "scheme_idx": scheme_idx,
            "target_id": target_id, "scheme_filters": [], "data_source": "unknown"}
    # "snapshots" comes last so that snapshots can be appended as they arrive
    return json.dumps(head)[:-1] + ', "snapshots": ['


def snapshot_json(snap: Snapshot) -> str:
    """One snapshot as damo's JSON object (numbers, not strings)."""
    regions = ",".join(
        f'{{"start": {s}, "end": {e}, "nr_accesses": {{"samples": {a}, "percent": null}}, '
        f'"age": {{"usec": null, "aggr_intervals": {g}}}, "probe_hits": [], '
        f'"sz_filter_passed": 0}}'
        for s, e, a, g in snap.rows()
    )
    return (f'{{"start_time": {snap.start_ns}, "end_time": {snap.end_ns}, '
            f'"regions": [{regions}], "total_bytes": {snap.total_bytes}, '
            f'"damos_stats": null, "sample_interval_us": null}}')


class _Sink:
    """Where text goes: a plain file, or a file through a streaming zlib compressor."""

    FLUSH_PERIOD_S = 1.0

    def __init__(self, f: IO[bytes], compress: bool):
        self.f = f
        self.z = zlib.compressobj(6) if compress else None
        self.bytes_in = 0
        self.last_flush = time.monotonic()

    def write(self, text: str) -> None:
        data = text.encode()
        self.bytes_in += len(data)
        if self.z is not None:
            data = self.z.compress(data)
        if data:
            self.f.write(data)
        now = time.monotonic()
        if now - self.last_flush >= self.FLUSH_PERIOD_S:
            # what was recorded so far reaches the disk in a decodable state, so a
            # recording killed later still leaves a readable file (see the reader)
            if self.z is not None:
                self.f.write(self.z.flush(zlib.Z_SYNC_FLUSH))
            self.f.flush()
            self.last_flush = now

    def close(self) -> None:
        if self.z is not None:
            self.f.write(self.z.flush())
        self.f.close()


class RecordWriter:
    """Writes snapshots to a record file as they arrive.

    Snapshots of the first target seen go straight to the file; those of
    other targets go to one temporary file each and are copied in after the
    first target's list is closed (a JSON record lists one target's
    snapshots together). Memory use does not grow with the recording.

    Use :meth:`add_event` as an aggregation listener, or :meth:`add_snapshot`.
    """

    def __init__(self, path: str | os.PathLike, fmt: str = JSON_COMPRESSED,
                 intervals: Intervals | None = None, *, kdamond_idx: int = 0,
                 context_idx: int = 0, kdamond_pid: int = 0, mode: int = 0o600,
                 lazy: bool = False):
        if fmt not in FORMATS:
            raise RecordError(f"unknown record format {fmt!r}; use one of {', '.join(FORMATS)}")
        self.path = os.fspath(path)
        self.fmt = fmt
        self.intervals = intervals
        self.kdamond_idx = kdamond_idx
        self.context_idx = context_idx
        self.kdamond_pid = kdamond_pid
        self.mode = mode
        self._sink: _Sink | None = None
        if lazy:
            # the file is created with the first snapshot, so that a session that
            # fails to start leaves an existing file of that name alone
            check_writable(self.path)
        else:
            self._open()
        self._first_target: int | None = None
        self._spills: dict[int, tuple[IO[str], int]] = {}  # target -> (file, nr snapshots)
        self._nr_first = 0
        self._last_end: dict[int, int] = {}
        self._single: dict[int, Snapshot] = {}  # perf_script: first snapshot per target
        self.nr_snapshots = 0
        self.closed = False

    def _open(self) -> _Sink:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, self.mode)
        except OSError as e:
            raise RecordError(f"cannot write record file {self.path!r}: {e.strerror}; "
                              f"choose another path with -o") from None
        self._sink = _Sink(os.fdopen(fd, "wb"), compress=self.fmt == JSON_COMPRESSED)
        if self.fmt != PERF_SCRIPT:
            self._sink.write("[")
        return self._sink

    @property
    def sink(self) -> _Sink:
        return self._sink if self._sink is not None else self._open()

    # -- input -----------------------------------------------------------------------
    def add_event(self, ev: AggregatedEvent) -> None:
        """Aggregation listener: one snapshot of target ``ev.target_idx``."""
        aggr_ns = (self.intervals.aggr_us if self.intervals else 0) * 1000
        start_ns = self._last_end.get(ev.target_idx, ev.time_ns - aggr_ns)
        self.add_snapshot(ev.target_idx, Snapshot(start_ns, ev.time_ns, ev.start, ev.end,
                                                  ev.nr_accesses, ev.age))

    def add_snapshot(self, target_id: int, snap: Snapshot) -> None:
        if self.closed:
            raise RecordError("record writer is closed")
        self._last_end[target_id] = snap.end_ns
        self.nr_snapshots += 1
        if self.fmt == PERF_SCRIPT:
            self._write_perf(target_id, snap)
            return
        if self._first_target is None:
            self._first_target = target_id
            self.sink.write(_record_head(target_id, self.intervals, self.kdamond_idx,
                                          self.context_idx, None))
        if target_id == self._first_target:
            self.sink.write(("," if self._nr_first else "") + snapshot_json(snap))
            self._nr_first += 1
            return
        spill = self._spills.get(target_id)
        if spill is None:
            f = tempfile.TemporaryFile("w+", encoding="utf-8",
                                       dir=os.path.dirname(os.path.abspath(self.path)))
            f.write(_record_head(target_id, self.intervals, self.kdamond_idx,
                                 self.context_idx, None))
            spill = (f, 0)
        f, n = spill
        f.write(("," if n else "") + snapshot_json(snap))
        self._spills[target_id] = (f, n + 1)

    def _write_perf(self, target_id: int, snap: Snapshot) -> None:
        ev = AggregatedEvent(snap.end_ns, self.kdamond_idx, self.context_idx, target_id,
                             snap.start, snap.end, snap.nr_accesses, snap.age)
        self.sink.write("".join(line + "\n" for line in
                                 trace.perf_script_lines(ev, pid=self.kdamond_pid)))
        if target_id not in self._single:
            self._single[target_id] = snap
        else:
            self._single[target_id] = None  # type: ignore[assignment]  # more than one

    # -- output ----------------------------------------------------------------------
    def close(self) -> None:
        """Finish the file (JSON brackets, zlib trailer, fake snapshots)."""
        if self.closed:
            return
        self.closed = True
        if self._sink is None:
            if self.nr_snapshots == 0:
                return  # lazy and nothing recorded: no file
            self._open()
        try:
            if self.fmt == PERF_SCRIPT:
                for target_id, snap in self._single.items():
                    if snap is None:
                        continue
                    dur = max(snap.end_ns - snap.start_ns, 1000)
                    one = np.array([0], np.int64)
                    fake = Snapshot(snap.end_ns, snap.end_ns + dur, one * 0, one * 0, one - 1,
                                    one - 1)
                    self._write_perf(target_id, fake)
                return
            if self._first_target is not None:
                self.sink.write("]}")
            for f, _ in self._spills.values():
                self.sink.write(",")
                f.seek(0)
                while chunk := f.read(1 << 16):
                    self.sink.write(chunk)
                self.sink.write("]}")
                f.close()
            self.sink.write("]\n")
        finally:
            self.sink.close()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_writable(path: str) -> None:
    """Raise RecordError unless ``path`` can be created or overwritten (without touching it)."""
    if os.path.isdir(path):
        raise RecordError(f"record file {path!r} is a directory; choose a file path with -o")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise RecordError(f"cannot write record file {path!r}: directory {parent!r} does not "
                          f"exist; create it or choose another path with -o")
    target = path if os.path.exists(path) else parent
    if not os.access(target, os.W_OK):
        raise RecordError(f"cannot write record file {path!r}: permission denied; "
                          f"choose another path with -o")


def write_records(path: str | os.PathLike, records: list[Record], fmt: str = JSON_COMPRESSED) -> None:
    """Write whole records (conversion between formats, tests)."""
    intervals = next((r.intervals for r in records if r.intervals), None)
    with RecordWriter(path, fmt, intervals) as w:
        for rec in records:
            for snap in rec.snapshots:
                w.add_snapshot(rec.target_id, snap)


def dumps_json(records: list[Record]) -> str:
    """The JSON text of records (what the ``json`` format holds)."""
    buf = io.StringIO()
    buf.write("[")
    for i, rec in enumerate(records):
        buf.write(("," if i else "") + _record_head(rec.target_id, rec.intervals,
                                                    rec.kdamond_idx, rec.context_idx,
                                                    rec.scheme_idx))
        buf.write(",".join(snapshot_json(s) for s in rec.snapshots))
        buf.write("]}")
    buf.write("]")
    return buf.getvalue()
