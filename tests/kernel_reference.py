"""A literal, one-region-at-a-time transcription of the kernel's merge and
split rules, written for clarity rather than speed. The vectorized engine
must agree with it exactly (merge) or in distribution (split)."""

from __future__ import annotations

from dataclasses import dataclass

MIN_REGION = 4096


@dataclass
class Reg:
    start: int
    end: int
    nr_accesses: int = 0
    last_nr_accesses: int = 0
    age: int = 0
    nr_accesses_bp: int = 0

    @property
    def size(self) -> int:
        return self.end - self.start


def merge_pass(regs: list[Reg], thres: int, sz_limit: int) -> list[Reg]:
    out: list[Reg] = []
    prev = None
    for r in regs:
        if abs(r.nr_accesses - r.last_nr_accesses) > thres:
            r.age = 0
        else:
            r.age += 1
        if (prev is not None and prev.end == r.start
                and abs(prev.nr_accesses - r.nr_accesses) <= thres
                and prev.size + r.size <= sz_limit):
            sl, sr = prev.size, r.size
            prev.nr_accesses = (prev.nr_accesses * sl + r.nr_accesses * sr) // (sl + sr)
            prev.nr_accesses_bp = prev.nr_accesses * 10000
            prev.age = (prev.age * sl + r.age * sr) // (sl + sr)
            prev.end = r.end
        else:
            out.append(r)
            prev = r
    return out
