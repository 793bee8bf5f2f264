"""Simulated workloads as data: a layout of mappings and access patterns over time.

A :class:`Workload` is loaded from a JSON document (see the package docstring
for the format) and resolved to absolute addresses once. At any virtual time
it yields a :class:`RateMap`: the exact per-page access rate of every address,
as a handful of constant-rate segments. Everything the simulator does per
sample is a ``searchsorted`` over those segments, so its cost depends on the
number of pattern pieces, never on the size of the address space.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

PAGE_SIZE = 4096
#: addresses are int64 numpy values; mappings must stay below this
ADDR_LIMIT = 1 << 63
#: the rate of a page "touched every sample": it reads as accessed in every check
EVERY_SAMPLE = math.inf

_UNITS = {
    "": 1, "b": 1,
    "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10,
    "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
    "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30,
    "t": 1 << 40, "tb": 1 << 40, "tib": 1 << 40,
}
_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*$")


class WorkloadError(ValueError):
    """A workload description is invalid; the message names the file and the field."""


def parse_size(value: Any, where: str = "size") -> int:
    """Bytes from an int, ``"0x1000"``, ``"4096"`` or ``"64MiB"`` (binary units; KB = KiB)."""
    if isinstance(value, bool):
        raise WorkloadError(f"{where}: {value!r} is not a size")
    if isinstance(value, int):
        if value < 0:
            raise WorkloadError(f"{where}: size {value} is negative")
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.lower().startswith("0x"):
            try:
                return int(text, 16)
            except ValueError:
                pass
        else:
            m = _SIZE_RE.match(text)
            if m and m.group(2).lower() in _UNITS:
                number = float(m.group(1)) * _UNITS[m.group(2).lower()]
                if number != int(number):
                    raise WorkloadError(f"{where}: {value!r} is not a whole number of bytes")
                return int(number)
    raise WorkloadError(
        f"{where}: {value!r} is not a size (examples: 4096, \"0x1000\", \"64MiB\", \"1TiB\")"
    )


def parse_rate(value: Any, where: str = "rate") -> float:
    """Accesses per second per page: a number, ``"every_sample"`` (always) or ``"never"``."""
    if isinstance(value, str):
        key = value.strip().lower()
        if key in ("every_sample", "always", "inf"):
            return EVERY_SAMPLE
        if key in ("never", "0"):
            return 0.0
        try:
            value = float(key)
        except ValueError:
            raise WorkloadError(
                f"{where}: {value!r} is not a rate (a number of accesses per second, "
                f"\"every_sample\" or \"never\")"
            ) from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise WorkloadError(f"{where}: {value!r} is not a rate")
    if math.isnan(value) or value < 0:
        raise WorkloadError(f"{where}: rate must be >= 0, got {value!r}")
    return float(value)


# -- resolved model ----------------------------------------------------------------


@dataclass(frozen=True)
class SimMapping:
    """One mapping of the layout (a line of ``/proc/<pid>/maps``)."""

    name: str
    start: int
    end: int
    anon: bool = True

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class RangePattern:
    """A fixed range accessed at a constant per-page rate."""

    start: int
    end: int
    rate: float

    @property
    def moves(self) -> bool:
        return False

    def pieces(self, t_ns: int) -> list[tuple[int, int, float]]:
        return [(self.start, self.end, self.rate)]


@dataclass(frozen=True)
class MovingPattern:
    """A window of ``size`` bytes sliding through ``[area_start, area_end)``, wrapping.

    The window starts at ``offset`` at time 0 and moves ``speed`` bytes per
    second; positions are page-aligned.
    """

    area_start: int
    area_end: int
    size: int
    speed: int
    offset: int
    rate: float

    @property
    def moves(self) -> bool:
        return self.speed != 0

    def window_start(self, t_ns: int) -> int:
        area = self.area_end - self.area_start
        pos = (self.offset + self.speed * t_ns // 1_000_000_000) % area
        return pos - pos % PAGE_SIZE

    def pieces(self, t_ns: int) -> list[tuple[int, int, float]]:
        area = self.area_end - self.area_start
        pos = self.window_start(t_ns)
        first_end = min(pos + self.size, area)
        out = [(self.area_start + pos, self.area_start + first_end, self.rate)]
        wrapped = pos + self.size - area
        if wrapped > 0:
            out.append((self.area_start, self.area_start + wrapped, self.rate))
        return out


@dataclass(frozen=True)
class ZipfPattern:
    """``buckets`` equal slices of a range; the k-th most popular has rate max_rate/k**exponent.

    ``order`` lists the slices from most to least popular (a permutation of
    range(buckets)); slice i covers ``[start + i*step, start + (i+1)*step)``
    (the last one takes the rest).
    """

    start: int
    end: int
    buckets: int
    exponent: float
    max_rate: float
    order: tuple[int, ...]

    @property
    def moves(self) -> bool:
        return False

    def bucket_rates(self) -> list[float]:
        """Rate of each slice, by address order."""
        rates = [0.0] * self.buckets
        for rank, bucket in enumerate(self.order):
            rates[bucket] = self.max_rate / (rank + 1) ** self.exponent
        return rates

    def pieces(self, t_ns: int) -> list[tuple[int, int, float]]:
        step = (self.end - self.start) // self.buckets
        step -= step % PAGE_SIZE
        out = []
        for i, rate in enumerate(self.bucket_rates()):
            s = self.start + i * step
            e = self.end if i == self.buckets - 1 else s + step
            out.append((s, e, rate))
        return out


Pattern = RangePattern | MovingPattern | ZipfPattern


@dataclass(frozen=True)
class Phase:
    """Patterns that hold for ``duration_ns`` (None: forever)."""

    duration_ns: int | None
    patterns: tuple[Pattern, ...]

    @property
    def moves(self) -> bool:
        return any(p.moves for p in self.patterns)


class RateMap:
    """Per-page access rate of an address space at one instant, as constant segments.

    ``rates[i]`` holds in ``[bounds[i], bounds[i+1])``; outside ``bounds`` the
    rate is 0. Overlapping patterns add up (independent accessors).
    """

    __slots__ = ("bounds", "rates")

    def __init__(self, bounds: np.ndarray, rates: np.ndarray):
        self.bounds = bounds
        self.rates = rates

    @classmethod
    def from_pieces(cls, pieces: list[tuple[int, int, float]]) -> RateMap:
        pieces = sorted(p for p in pieces if p[1] > p[0] and p[2] > 0)
        if not pieces:
            return cls(np.zeros(0, np.int64), np.zeros(0, np.float64))
        if all(a[1] <= b[0] for a, b in zip(pieces, pieces[1:], strict=False)):
            # disjoint pieces (the usual case, rebuilt every sample for moving spots):
            # bounds and rates directly, with 0-rate gaps between pieces that do not touch
            bounds_list = [pieces[0][0]]
            rate_list: list[float] = []
            for i, (start, end, rate) in enumerate(pieces):
                if i and start != bounds_list[-1]:
                    rate_list.append(0.0)
                    bounds_list.append(start)
                rate_list.append(rate)
                bounds_list.append(end)
            return cls(np.array(bounds_list, np.int64), np.array(rate_list, np.float64))
        starts = np.array([p[0] for p in pieces], dtype=np.int64)
        ends = np.array([p[1] for p in pieces], dtype=np.int64)
        rates = np.array([p[2] for p in pieces], dtype=np.float64)
        bounds = np.unique(np.concatenate((starts, ends)))
        lo = np.searchsorted(bounds, starts)
        hi = np.searchsorted(bounds, ends)
        # each segment sums the pieces covering it (exact for disjoint pieces, unlike a
        # running sum of differences); "every sample" pieces are counted apart
        seg = np.zeros(len(bounds) - 1, np.float64)
        nr_always = np.zeros(len(bounds) - 1, np.int64)
        for a, b, rate in zip(lo.tolist(), hi.tolist(), rates.tolist(), strict=True):
            if math.isinf(rate):
                nr_always[a:b] += 1
            else:
                seg[a:b] += rate
        seg = np.where(nr_always > 0, EVERY_SAMPLE, seg)
        return cls(bounds, seg)

    def rate_at(self, addrs: np.ndarray) -> np.ndarray:
        """Rate of the page at each address (int64 array in, float64 array out)."""
        addrs = np.asarray(addrs, dtype=np.int64)
        if len(self.bounds) < 2:
            return np.zeros(len(addrs), np.float64)
        # rates padded with 0 on both sides: index 0 is below bounds[0], the last above
        padded = np.concatenate(([0.0], self.rates, [0.0]))
        return padded[np.searchsorted(self.bounds, addrs, side="right")]

    @property
    def nr_segments(self) -> int:
        return len(self.rates)

    def ranges_above(self, min_rate: float) -> list[tuple[int, int]]:
        """Merged ranges whose rate is strictly above ``min_rate``."""
        out: list[tuple[int, int]] = []
        for i in np.nonzero(self.rates > min_rate)[0].tolist():
            s, e = int(self.bounds[i]), int(self.bounds[i + 1])
            if out and out[-1][1] == s:
                out[-1] = (out[-1][0], e)
            else:
                out.append((s, e))
        return out


@dataclass
class Workload:
    """A simulated process: mappings, the memory it populated, and its access phases."""

    name: str
    layout: list[SimMapping]
    phases: list[Phase]
    repeat: bool = True
    description: str = ""
    #: ranges populated (resident) at start; None: every mapping
    populated: list[tuple[int, int]] | None = None
    _cache: dict[int, RateMap] = field(default_factory=dict, repr=False, compare=False)
    _moving_cache: tuple[tuple[int, int], RateMap] | None = field(
        default=None, repr=False, compare=False)

    # -- construction --------------------------------------------------------------
    @classmethod
    def from_dict(cls, doc: MappingABC[str, Any], source: str = "<workload>") -> Workload:
        return _parse_workload(doc, source)

    @property
    def mappings(self) -> list[tuple[int, int]]:
        return [(m.start, m.end) for m in self.layout]

    @property
    def mapped_bytes(self) -> int:
        return sum(m.size for m in self.layout)

    def mapping(self, name: str) -> SimMapping:
        for m in self.layout:
            if m.name == name:
                return m
        raise KeyError(name)

    # -- time -----------------------------------------------------------------------
    @property
    def cycle_ns(self) -> int | None:
        """Length of one pass over the phases, None if a phase lasts forever."""
        if any(p.duration_ns is None for p in self.phases):
            return None
        return sum(p.duration_ns or 0 for p in self.phases)

    def phase_index(self, t_ns: int) -> int:
        t = max(int(t_ns), 0)
        cycle = self.cycle_ns
        if cycle and self.repeat:
            t %= cycle
        for i, p in enumerate(self.phases):
            if p.duration_ns is None or t < p.duration_ns:
                return i
            t -= p.duration_ns
        return len(self.phases) - 1

    def rate_map(self, t_ns: int) -> RateMap:
        """The exact access rates at virtual time ``t_ns``."""
        i = self.phase_index(t_ns)
        phase = self.phases[i]
        if not phase.moves:
            cached = self._cache.get(i)
            if cached is None:
                cached = RateMap.from_pieces([x for p in phase.patterns for x in p.pieces(0)])
                self._cache[i] = cached
            return cached
        # the same instant is asked for twice per check (sampling, then faults)
        key = (i, int(t_ns))
        if self._moving_cache is not None and self._moving_cache[0] == key:
            return self._moving_cache[1]
        rmap = RateMap.from_pieces([x for p in phase.patterns for x in p.pieces(int(t_ns))])
        self._moving_cache = (key, rmap)
        return rmap


# -- loading ------------------------------------------------------------------------


def load_workload(path: str | Path) -> Workload:
    """Load a workload from a JSON file; WorkloadError names the file and the bad field."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise WorkloadError(f"{p}: cannot read workload file: {e.strerror or e}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise WorkloadError(f"{p}: not valid JSON (line {e.lineno} column {e.colno}: {e.msg})") from None
    return _parse_workload(doc, str(p), default_name=p.stem)


def list_builtin_workloads() -> list[str]:
    root = resources.files(__package__).joinpath("workloads")
    return sorted(f.name[:-5] for f in root.iterdir() if f.name.endswith(".json"))


def builtin_workload(name: str) -> Workload:
    """A workload that ships with pydamon (see :func:`list_builtin_workloads`)."""
    names = list_builtin_workloads()
    if name not in names:
        raise WorkloadError(f"no built-in workload {name!r}; built-ins: {', '.join(names)}")
    res = resources.files(__package__).joinpath("workloads", f"{name}.json")
    return _parse_workload(json.loads(res.read_text()), f"builtin:{name}", default_name=name)


def resolve_workload(spec: str | Path | Workload) -> Workload:
    """A Workload from a built-in name, a file path, or a Workload (returned as is)."""
    if isinstance(spec, Workload):
        return spec
    if isinstance(spec, str) and spec in list_builtin_workloads():
        return builtin_workload(spec)
    if Path(spec).exists():
        return load_workload(spec)
    raise WorkloadError(
        f"{spec}: neither a built-in workload ({', '.join(list_builtin_workloads())}) "
        f"nor a readable file"
    )


_TOP_KEYS = {"name", "description", "layout", "patterns", "phases", "repeat", "populated"}


def _parse_workload(doc: Any, source: str, default_name: str = "workload") -> Workload:
    if not isinstance(doc, MappingABC):
        raise WorkloadError(f"{source}: a workload is a JSON object, got {type(doc).__name__}")
    unknown = set(doc) - _TOP_KEYS
    if unknown:
        raise WorkloadError(
            f"{source}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_TOP_KEYS)}"
        )
    layout = _parse_layout(doc.get("layout"), source)
    if "patterns" in doc and "phases" in doc:
        raise WorkloadError(f"{source}: give either 'patterns' or 'phases', not both")
    if "phases" in doc:
        raw_phases = doc["phases"]
        if not isinstance(raw_phases, list) or not raw_phases:
            raise WorkloadError(f"{source}: 'phases' must be a non-empty list")
        phases = []
        for i, ph in enumerate(raw_phases):
            where = f"{source}: phases[{i}]"
            if not isinstance(ph, MappingABC):
                raise WorkloadError(f"{where}: a phase is an object {{duration_s, patterns}}")
            extra = set(ph) - {"duration_s", "patterns", "name"}
            if extra:
                raise WorkloadError(f"{where}: unknown key(s) {sorted(extra)}")
            dur = ph.get("duration_s")
            if dur is None:
                duration_ns = None
            elif isinstance(dur, int | float) and not isinstance(dur, bool) and dur > 0:
                duration_ns = int(round(dur * 1e9))
            else:
                raise WorkloadError(f"{where}: duration_s must be a positive number, got {dur!r}")
            pats = _parse_patterns(ph.get("patterns", []), layout, where)
            phases.append(Phase(duration_ns, tuple(pats)))
    else:
        phases = [Phase(None, tuple(_parse_patterns(doc.get("patterns", []), layout, source)))]
    repeat = doc.get("repeat", True)
    if not isinstance(repeat, bool):
        raise WorkloadError(f"{source}: 'repeat' must be true or false")
    populated = None
    if "populated" in doc and doc["populated"] != "all":
        raw = doc["populated"]
        if not isinstance(raw, list):
            raise WorkloadError(f"{source}: 'populated' is \"all\" or a list of ranges")
        populated = []
        for i, item in enumerate(raw):
            s, e = _resolve_range(item, layout, f"{source}: populated[{i}]")
            populated.append((s, e))
    name = doc.get("name", default_name)
    if not isinstance(name, str):
        raise WorkloadError(f"{source}: 'name' must be a string")
    description = doc.get("description", "")
    return Workload(name=name, layout=layout, phases=phases, repeat=repeat,
                    description=str(description), populated=populated)


def _parse_layout(raw: Any, source: str) -> list[SimMapping]:
    if not isinstance(raw, list) or not raw:
        raise WorkloadError(f"{source}: 'layout' must be a non-empty list of mappings")
    out: list[SimMapping] = []
    names: set[str] = set()
    prev_end = 0
    for i, m in enumerate(raw):
        where = f"{source}: layout[{i}]"
        if not isinstance(m, MappingABC):
            raise WorkloadError(f"{where}: a mapping is an object {{name, start|gap, size}}")
        extra = set(m) - {"name", "start", "gap", "size", "kind"}
        if extra:
            raise WorkloadError(f"{where}: unknown key(s) {sorted(extra)}")
        name = m.get("name", f"map{i}")
        where = f"{where} ({name})"
        if not isinstance(name, str) or not name:
            raise WorkloadError(f"{where}: 'name' must be a non-empty string")
        if name in names:
            raise WorkloadError(f"{where}: mapping name {name!r} is used twice")
        names.add(name)
        if "start" in m and "gap" in m:
            raise WorkloadError(f"{where}: give 'start' or 'gap', not both")
        if "start" in m:
            start = parse_size(m["start"], f"{where}: start")
        else:
            start = prev_end + parse_size(m.get("gap", 0), f"{where}: gap")
        if "size" not in m:
            raise WorkloadError(f"{where}: 'size' is missing")
        size = parse_size(m["size"], f"{where}: size")
        if size == 0:
            raise WorkloadError(f"{where}: size must not be 0")
        if start % PAGE_SIZE or size % PAGE_SIZE:
            raise WorkloadError(f"{where}: start and size must be multiples of {PAGE_SIZE}")
        if start < prev_end:
            raise WorkloadError(
                f"{where}: starts at {start:#x}, inside or before the previous mapping "
                f"(which ends at {prev_end:#x}); mappings must be sorted and disjoint"
            )
        if start + size >= ADDR_LIMIT:
            raise WorkloadError(f"{where}: ends beyond {ADDR_LIMIT:#x}")
        kind = m.get("kind", "anon")
        if kind not in ("anon", "file"):
            raise WorkloadError(f"{where}: kind must be \"anon\" or \"file\", got {kind!r}")
        out.append(SimMapping(name, start, start + size, anon=kind == "anon"))
        prev_end = start + size
    return out


def _find_mapping(layout: list[SimMapping], name: Any, where: str) -> SimMapping:
    for m in layout:
        if m.name == name:
            return m
    raise WorkloadError(
        f"{where}: no mapping named {name!r}; mappings: {', '.join(m.name for m in layout)}"
    )


def _resolve_range(item: Any, layout: list[SimMapping], where: str,
                   extra_keys: frozenset[str] = frozenset()) -> tuple[int, int]:
    """[start, end) of ``{mapping, offset, size}`` (offset/size default: the whole mapping)."""
    if not isinstance(item, MappingABC):
        raise WorkloadError(f"{where}: expected an object with 'mapping'")
    extra = set(item) - {"mapping", "offset", "size", "type"} - extra_keys
    if extra:
        raise WorkloadError(f"{where}: unknown key(s) {sorted(extra)}")
    if "mapping" not in item:
        raise WorkloadError(f"{where}: 'mapping' is missing (the name of a layout mapping)")
    m = _find_mapping(layout, item["mapping"], where)
    offset = parse_size(item.get("offset", 0), f"{where}: offset")
    size = parse_size(item["size"], f"{where}: size") if "size" in item else m.size - offset
    if offset % PAGE_SIZE or size % PAGE_SIZE:
        raise WorkloadError(f"{where}: offset and size must be multiples of {PAGE_SIZE}")
    if size <= 0 or offset + size > m.size:
        raise WorkloadError(
            f"{where}: offset {offset:#x} + size {size:#x} does not fit in mapping "
            f"{m.name!r} of size {m.size:#x}"
        )
    return m.start + offset, m.start + offset + size


def _parse_patterns(raw: Any, layout: list[SimMapping], source: str) -> list[Pattern]:
    if not isinstance(raw, list):
        raise WorkloadError(f"{source}: 'patterns' must be a list")
    out: list[Pattern] = []
    for i, p in enumerate(raw):
        where = f"{source}: patterns[{i}]"
        if not isinstance(p, MappingABC):
            raise WorkloadError(f"{where}: a pattern is an object with a 'type'")
        kind = p.get("type", "range")
        if kind == "range":
            s, e = _resolve_range(p, layout, where, frozenset({"rate"}))
            if "rate" not in p:
                raise WorkloadError(f"{where}: 'rate' is missing")
            out.append(RangePattern(s, e, parse_rate(p["rate"], f"{where}: rate")))
        elif kind == "moving":
            keys = frozenset({"rate", "window", "speed", "start_offset"})
            s, e = _resolve_range(p, layout, where, keys)
            for key in ("window", "speed", "rate"):
                if key not in p:
                    raise WorkloadError(f"{where}: moving pattern needs {key!r}")
            window = parse_size(p["window"], f"{where}: window")
            if window <= 0 or window % PAGE_SIZE or window > e - s:
                raise WorkloadError(
                    f"{where}: window must be a positive multiple of {PAGE_SIZE} no larger "
                    f"than the area ({e - s:#x} bytes)"
                )
            speed = parse_size(p["speed"], f"{where}: speed (bytes per second)")
            start_offset = parse_size(p.get("start_offset", 0), f"{where}: start_offset")
            out.append(MovingPattern(s, e, window, speed, start_offset,
                                     parse_rate(p["rate"], f"{where}: rate")))
        elif kind == "zipf":
            keys = frozenset({"buckets", "exponent", "max_rate", "shuffle_seed"})
            s, e = _resolve_range(p, layout, where, keys)
            buckets = p.get("buckets", 64)
            if isinstance(buckets, bool) or not isinstance(buckets, int) or buckets < 1:
                raise WorkloadError(f"{where}: buckets must be a positive integer")
            if (e - s) // buckets < PAGE_SIZE:
                raise WorkloadError(f"{where}: {buckets} buckets leave less than a page each")
            exponent = p.get("exponent", 1.0)
            if isinstance(exponent, bool) or not isinstance(exponent, int | float) or exponent < 0:
                raise WorkloadError(f"{where}: exponent must be a number >= 0")
            if "max_rate" not in p:
                raise WorkloadError(f"{where}: zipf pattern needs 'max_rate'")
            max_rate = parse_rate(p["max_rate"], f"{where}: max_rate")
            seed = p.get("shuffle_seed")
            if seed is None:
                order = tuple(range(buckets))
            elif isinstance(seed, int) and not isinstance(seed, bool):
                order = tuple(np.random.default_rng(seed).permutation(buckets).tolist())
            else:
                raise WorkloadError(f"{where}: shuffle_seed must be an integer")
            out.append(ZipfPattern(s, e, buckets, float(exponent), max_rate, order))
        else:
            raise WorkloadError(
                f"{where}: unknown pattern type {kind!r} (range, moving, zipf)"
            )
    return out
