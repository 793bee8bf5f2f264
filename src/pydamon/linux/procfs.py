"""Parsers of the ``/proc`` files the operations sets read, and readers for them.

The parsers are pure functions over text so that they are tested on the
host with made-up files; the readers only open and read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import DamonError


@dataclass(frozen=True)
class Mapping:
    """One line of ``/proc/PID/maps``."""

    start: int
    end: int
    perms: str
    path: str


def parse_maps(text: str) -> list[Mapping]:
    """Mappings of a ``/proc/PID/maps`` text, in address order."""
    out = []
    for line in text.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) < 5:
            continue
        start_s, _, end_s = fields[0].partition("-")
        out.append(Mapping(int(start_s, 16), int(end_s, 16), fields[1],
                           fields[5] if len(fields) > 5 else ""))
    out.sort(key=lambda m: m.start)
    return out


#: shown in maps but not a VMA of the process (the kernel's vaddr never sees it)
GATE_AREAS = frozenset({"[vsyscall]"})


def maps_ranges(text: str) -> list[tuple[int, int]]:
    """Sorted (start, end) of every VMA, what the three-regions init takes."""
    return [(m.start, m.end) for m in parse_maps(text) if m.path not in GATE_AREAS]


@dataclass(frozen=True)
class IomemResource:
    start: int
    end: int  # exclusive
    name: str
    depth: int  # 0 for top-level resources


def parse_iomem(text: str) -> list[IomemResource]:
    """Resources of ``/proc/iomem`` (its ends are inclusive; ours are exclusive)."""
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip(" "))
        span, sep, name = line.strip().partition(" : ")
        if not sep:
            continue
        lo, _, hi = span.partition("-")
        out.append(IomemResource(int(lo, 16), int(hi, 16) + 1, name.strip(), indent // 2))
    return out


def biggest_system_ram(text: str) -> tuple[int, int] | None:
    """The largest top-level "System RAM" range, as the kernel's paddr default uses."""
    best = None
    for r in parse_iomem(text):
        if r.depth == 0 and r.name == "System RAM":
            if best is None or r.end - r.start > best[1] - best[0]:
                best = (r.start, r.end)
    if best is not None and best[1] <= 1:
        return None  # addresses hidden (read without CAP_SYS_ADMIN show as zeros)
    return best


def parse_kb_file(text: str) -> dict[str, int]:
    """``Key: value kB`` lines (meminfo, status) to a dict of ints (kB where a unit is given)."""
    out = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        if not sep:
            continue
        words = rest.split()
        if words and words[0].lstrip("-").isdigit():
            out[key.strip()] = int(words[0])
    return out


def free_mem_rate_of(meminfo_text: str) -> int | None:
    """Free memory per mille of total: the kernel's DAMOS_WMARK_FREE_MEM_RATE."""
    info = parse_kb_file(meminfo_text)
    total = info.get("MemTotal")
    free = info.get("MemFree")
    if not total or free is None:
        return None
    return free * 1000 // total


def free_mem_rate(path: str = "/proc/meminfo") -> int | None:
    try:
        with open(path) as f:
            return free_mem_rate_of(f.read())
    except OSError:
        return None


def _stat_fields_after_comm(stat_text: str) -> list[str]:
    """The fields of a ``stat`` line from the state on (field 3, index 0)."""
    # the command name may hold spaces and parentheses: fields start after the last ')'
    return stat_text[stat_text.rindex(")") + 2:].split()


def parse_stat_cpu_ticks(stat_text: str) -> int:
    """utime + stime (clock ticks) of a ``/proc/PID/stat`` or ``task/TID/stat`` line."""
    rest = _stat_fields_after_comm(stat_text)
    return int(rest[11]) + int(rest[12])


def parse_stat_faults(stat_text: str) -> int:
    """minflt + majflt of a ``/proc/PID/stat`` line: the page faults of the whole
    process (every thread's, the exited ones' too)."""
    rest = _stat_fields_after_comm(stat_text)
    return int(rest[7]) + int(rest[9])


def read_text_at(dir_fd: int, name: str) -> str:
    """Read a whole proc file relative to an open ``/proc/PID`` directory."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as e:
        raise DamonError(e.errno or 0, f"cannot open {name}: {e.strerror}") from None
    try:
        chunks = []
        while True:
            b = os.read(fd, 1 << 16)
            if not b:
                break
            chunks.append(b)
        return b"".join(chunks).decode("utf-8", "replace")
    finally:
        os.close(fd)


def process_status(pid: int) -> dict[str, int]:
    """Numeric fields of ``/proc/PID/status`` (VmRSS, VmSwap, ... in kB)."""
    with open(f"/proc/{pid}/status") as f:
        return parse_kb_file(f.read())
