"""Parsing of the values damo's options take: times, sizes, rates, ranges.

damo accepts bare numbers (microseconds for intervals and ages, bytes for
sizes, percent for access rates) as well as numbers with units (``5ms``,
``1 s``, ``4KiB``, ``5%``), ``min``/``max`` and thousands separators. The
parsers here accept the same inputs and raise :class:`UnitError` with a
message that names the bad value and an example of a good one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ULONG_MAX = (1 << 64) - 1
UINT_MAX = (1 << 32) - 1


class UnitError(ValueError):
    """A value that cannot be parsed; the message says what a good one looks like."""


_TIME_NS = {
    "ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
    "sec": 1_000_000_000, "m": 60 * 1_000_000_000, "min": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000, "d": 86400 * 1_000_000_000,
}
_SIZE = {
    "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mb": 1 << 20,
    "mib": 1 << 20, "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30, "t": 1 << 40,
    "tb": 1 << 40, "tib": 1 << 40, "p": 1 << 50, "pib": 1 << 50, "e": 1 << 60, "eib": 1 << 60,
}
_NUM_UNIT = re.compile(r"^\s*(-?[0-9][0-9,]*(?:\.[0-9]+)?|-?\.[0-9]+)\s*([a-zA-Zµ%]*)\s*$")


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def parse_number(text: str | int | float) -> int:
    """An integer, allowing ``1,000``, ``0x1000`` and ``max`` (ULONG_MAX)."""
    if isinstance(text, bool):
        raise UnitError(f"not a number: {text!r}")
    if isinstance(text, int):
        return text
    if isinstance(text, float):
        return int(text)
    s = text.strip().lower()
    if s == "max":
        return ULONG_MAX
    if s == "min":
        return 0
    try:
        if s.startswith(("0x", "-0x")):
            return int(s, 16)
        return int(_number(s)) if "." in s else int(s.replace(",", ""))
    except ValueError:
        raise UnitError(f"not a number: {text!r} (e.g. 1000, 0x1000, max)") from None


def parse_time_ns(text: str | int | float, bare_unit: str = "us") -> int:
    """A duration in nanoseconds. Bare numbers are in ``bare_unit``.

    Accepts ``5ms``, ``100 ms``, ``1.5s``, ``1 s 500 ms``, ``max``.
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return int(text * _TIME_NS[bare_unit])
    s = str(text).strip()
    if s.lower() == "max":
        return ULONG_MAX
    if s.lower() == "min":
        return 0
    parts = re.findall(r"(-?[0-9][0-9,]*(?:\.[0-9]+)?)\s*([a-zA-Zµ]*)", s)
    if not parts or "".join(n + u for n, u in parts).replace(" ", "") != s.replace(" ", ""):
        raise UnitError(f"not a time: {text!r} (e.g. 5ms, 100ms, 1s, or microseconds)")
    if len(parts) > 1 and any(not unit for _, unit in parts):
        raise UnitError(f"not a time: {text!r} (every number of a compound time needs a unit, "
                        f"e.g. 1s 500ms)")
    total = 0.0
    for num, unit in parts:
        unit = unit.lower() or bare_unit
        if unit not in _TIME_NS:
            raise UnitError(f"unknown time unit {unit!r} in {text!r} (use ns, us, ms, s, m, h)")
        total += _number(num) * _TIME_NS[unit]
    if total < 0:
        raise UnitError(f"time must not be negative: {text!r}")
    return int(round(total))


def parse_time_us(text: str | int | float) -> int:
    """A duration in microseconds (bare numbers are microseconds, as damo takes them)."""
    ns = parse_time_ns(text, "us")
    return ULONG_MAX if ns == ULONG_MAX else ns // 1000


def parse_time_ms(text: str | int | float) -> int:
    """A duration in milliseconds (bare numbers are milliseconds)."""
    ns = parse_time_ns(text, "ms")
    return ULONG_MAX if ns == ULONG_MAX else ns // 1_000_000


def parse_size(text: str | int | float) -> int:
    """A size in bytes: ``4096``, ``4K``, ``4 KiB``, ``1.5GiB``, ``max``."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return int(text)
    s = str(text).strip()
    low = s.lower()
    if low == "max":
        return ULONG_MAX
    if low == "min":
        return 0
    if low.startswith("0x"):
        return parse_number(s)
    m = _NUM_UNIT.match(s)
    if not m:
        raise UnitError(f"not a size: {text!r} (e.g. 4096, 4K, 2MiB, 1G, max)")
    unit = m[2].lower() or "b"
    if unit not in _SIZE:
        raise UnitError(f"unknown size unit {m[2]!r} in {text!r} (use B, K/KiB, M/MiB, G/GiB, T)")
    value = _number(m[1]) * _SIZE[unit]
    if value < 0:
        raise UnitError(f"size must not be negative: {text!r}")
    return min(int(value), ULONG_MAX)


@dataclass(frozen=True)
class AccessRate:
    """An access rate as the user gave it: a percentage or a count of samples."""

    value: float
    is_percent: bool

    def to_samples(self, max_nr_accesses: int) -> int:
        if not self.is_percent:
            return int(self.value)
        if self.value >= 100:
            return max(max_nr_accesses, 0) if self.value == 100 else UINT_MAX
        return int(self.value * max_nr_accesses / 100)


def parse_access_rate(text: str | int | float) -> AccessRate:
    """``5%``, ``5`` (percent, as damo) or ``3samples``; ``min``/``max``."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return AccessRate(float(text), True)
    s = str(text).strip().lower()
    if s == "min":
        return AccessRate(0.0, True)
    if s == "max":
        return AccessRate(float(UINT_MAX), False)
    m = _NUM_UNIT.match(s)
    if not m or m[2] not in ("", "%", "samples", "sample"):
        raise UnitError(f"not an access rate: {text!r} (e.g. 0%, 5%, 100%, or 3samples)")
    value = _number(m[1])
    if value < 0:
        raise UnitError(f"access rate must not be negative: {text!r}")
    is_percent = m[2] in ("", "%")
    if is_percent and value > 100:
        raise UnitError(f"access rate {text!r} is over 100%")
    return AccessRate(value, is_percent)


def parse_percent(text: str | int | float) -> float:
    """A plain percentage: ``5``, ``5%``, ``12.5 %``."""
    s = str(text).strip().rstrip("%").strip()
    try:
        value = _number(s)
    except ValueError:
        raise UnitError(f"not a percentage: {text!r} (e.g. 5 or 5%)") from None
    if not 0 <= value <= 100:
        raise UnitError(f"percentage {text!r} is not in [0, 100]")
    return value


def parse_addr_range(text: str) -> tuple[int, int]:
    """``start-end`` with decimal or 0x addresses (``4096-8192``, ``0x1000-0x2000``)."""
    m = re.match(r"^\s*([0-9a-fA-Fx,]+)\s*-\s*([0-9a-fA-Fx,]+)\s*$", text)
    if not m:
        raise UnitError(f"not an address range: {text!r} (e.g. 4096-8192 or 0x1000-0x2000)")
    start, end = parse_number(m[1]), parse_number(m[2])
    if start >= end:
        raise UnitError(f"address range {text!r} is empty or reversed (start must be < end)")
    return start, end


def parse_addr_ranges(text: str) -> list[tuple[int, int]]:
    """Space- or comma-separated ``start-end`` ranges, sorted, not overlapping."""
    pieces = [p for p in re.split(r"[\s]+", text.strip()) if p]
    ranges = sorted(parse_addr_range(p) for p in pieces)
    for (_, e1), (s2, _) in zip(ranges, ranges[1:], strict=False):
        if s2 < e1:
            raise UnitError(f"address ranges overlap in {text!r}")
    return ranges


# -- formatting -------------------------------------------------------------------
def format_size(sz: int | float) -> str:
    """``4.000 KiB`` style (damo's), exact bytes below 1 KiB."""
    sz = float(sz)
    for shift, unit in ((60, "EiB"), (50, "PiB"), (40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")):
        if sz >= (1 << shift):
            return f"{sz / (1 << shift):.3f} {unit}"
    return f"{int(sz)} B"


def format_time_ns(ns: int | float) -> str:
    """Largest unit with three decimals: ``100 ms``, ``1.500 s``, ``0 ns``."""
    ns = float(ns)
    for unit_ns, unit in ((86400e9, "d"), (3600e9, "h"), (60e9, "m"), (1e9, "s"), (1e6, "ms"),
                          (1e3, "us")):
        if abs(ns) >= unit_ns:
            v = ns / unit_ns
            return f"{int(v)} {unit}" if v == int(v) else f"{v:.3f} {unit}"
    return f"{int(ns)} ns"


def format_time_us(us: int | float) -> str:
    return format_time_ns(us * 1000)
