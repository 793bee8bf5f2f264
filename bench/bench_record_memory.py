"""Memory of a long recording: RSS at each virtual minute while the record grows.

Runs the engine on the simulated operations set under a VirtualClock
(sampling 5 ms, aggregation 100 ms, 1000 regions) and streams every
aggregation to a record file with :class:`pydamon.records.RecordWriter`,
as ``pydamon record`` does. Ten virtual minutes (6000 snapshots of 1000
regions) take a few minutes of real time. The process RSS must stay flat:
the writer keeps no snapshot in memory.

    python bench/bench_record_memory.py [--minutes 10] [--format json_compressed]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

from pydamon.core.attrs import MonitoringAttrs
from pydamon.core.clock import VirtualClock
from pydamon.core.context import Context
from pydamon.core.kdamond import Kdamond
from pydamon.core.target import Target
from pydamon.ops.sim import SimOps, SimWorld
from pydamon.records import FORMATS, Intervals, RecordWriter, read_records


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="virtual minutes to record")
    ap.add_argument("--format", choices=FORMATS, default="json_compressed")
    ap.add_argument("--workload", default="hotcold")
    ap.add_argument("--regions", type=int, default=1000)
    ap.add_argument("--out", default=None, help="record file (default: a temporary file)")
    ap.add_argument("--verify", action="store_true", help="read the record back at the end")
    args = ap.parse_args()

    world = SimWorld(seed=1)
    pid = world.spawn(args.workload)
    attrs = MonitoringAttrs(sample_us=5_000, aggr_us=100_000, update_us=1_000_000,
                            min_nr_regions=args.regions, max_nr_regions=args.regions)
    ctx = Context(SimOps(world), attrs, [Target(pid=pid)], clock=VirtualClock(), seed=1)
    out = args.out or os.path.join(tempfile.mkdtemp(prefix="pydamon-bench-"), "damon.data")
    writer = RecordWriter(out, args.format, Intervals(5_000, 100_000, 1_000_000))
    ctx.add_aggregation_listener(writer.add_event)

    samples: list[tuple[float, int, int, int, float]] = []
    region_counts: list[int] = []
    t0 = time.monotonic()
    next_minute = [1]

    def after_aggregation(c: Context) -> bool:
        region_counts.append(len(c.targets[0].regions))
        vmin = c.clock.now_ns() / 60e9
        if vmin >= next_minute[0]:
            writer.sink.f.flush()
            samples.append((vmin, rss_kib(), writer.nr_snapshots, os.path.getsize(out),
                            time.monotonic() - t0))
            print(f"virtual {vmin:5.2f} min  RSS {samples[-1][1] / 1024:7.1f} MiB  "
                  f"snapshots {writer.nr_snapshots:6d}  file {samples[-1][3] / 1e6:8.2f} MB  "
                  f"real {samples[-1][4]:6.1f} s", flush=True)
            next_minute[0] += 1
        return False

    ctx.callbacks.after_aggregation = after_aggregation
    rss_start = rss_kib()
    Kdamond(ctx).run(duration_us=int(args.minutes * 60e6))
    writer.close()
    size = os.path.getsize(out)
    print(f"\nrecord: {out} ({args.format}), {writer.nr_snapshots} snapshots, "
          f"{size / 1e6:.2f} MB on disk; regions per snapshot: mean "
          f"{sum(region_counts) / max(len(region_counts), 1):.0f}, "
          f"min {min(region_counts, default=0)}, max {max(region_counts, default=0)}")
    print(f"RSS before recording: {rss_start / 1024:.1f} MiB")
    by_minute = {round(m): r for m, r, *_ in samples}
    first = by_minute.get(1)
    last = samples[-1][1] if samples else None
    if first is not None and last is not None:
        print(f"RSS at 1 min: {first / 1024:.1f} MiB; at {samples[-1][0]:.0f} min: "
              f"{last / 1024:.1f} MiB; growth {(last - first) / 1024:+.1f} MiB")
    print(f"real time: {time.monotonic() - t0:.1f} s for {args.minutes:g} virtual minutes")
    if args.verify:
        recs = read_records(out)
        print(f"read back: {sum(len(r.snapshots) for r in recs)} snapshots")
    if not args.out:
        os.unlink(out)
        os.rmdir(os.path.dirname(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
