"""``report raw``: every snapshot's regions as numbers (damo's ``--raw_form`` layout)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from ..cli.units import format_size, format_time_ns
from ..records import Record


def report_raw(records: Sequence[Record]) -> Iterator[str]:
    """Lines of the raw report (a generator: a long record is never held as text)."""
    base = min((r.start_ns for r in records if r.snapshots), default=0)
    yield f"base_time_absolute: {format_time_ns(base)}"
    yield ""
    for rec in records:
        for snap in rec.snapshots:
            yield f"monitoring_start:    {format_time_ns(snap.start_ns - base):>16}"
            yield f"monitoring_end:      {format_time_ns(snap.end_ns - base):>16}"
            yield f"monitoring_duration: {format_time_ns(snap.end_ns - snap.start_ns):>16}"
            yield f"target_id: {rec.target_id}"
            yield f"nr_regions: {snap.nr_regions}"
            yield "# start_addr     end_addr        length  nr_accesses   age"
            for s, e, a, g in snap.rows():
                yield f"{s:012x}-{e:012x} ({format_size(e - s):>12}) {a:>11} {g:>5}"
            yield ""
