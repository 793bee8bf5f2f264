"""``pydamon demo``: a short, self-explaining session on whatever this machine offers.

With idle page tracking (``/sys/kernel/mm/page_idle/bitmap``) and root, it
monitors a real child process that keeps a small part of a large buffer
hot; otherwise it monitors the simulated ``hotcold`` workload in virtual
time, and says why. Either way it applies a pageout scheme to cold memory
(with a size quota), writes ``damon.data`` and ``damon.png`` to the current
directory and prints a summary (with the workload's ground truth when
simulated).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from ..core.attrs import MonitoringAttrs
from ..core.damos import AccessPattern, Action, Quota, Scheme
from ..records import read_records
from ..reports.heatmap import build_heatmap, render_terminal, save_png
from .session import SessionError, SessionSpec, run_session, scheme_stats_lines, sim_api
from .units import UnitError, format_size, format_time_ns, parse_time_ns

PAGE_IDLE = "/sys/kernel/mm/page_idle/bitmap"
SIM_WORKLOAD = "hotcold"

# The real child: a 256 MiB buffer of which the first 32 MiB is touched all the time.
CHILD_PROGRAM = """
import mmap, time, sys
buf = mmap.mmap(-1, 256 << 20)
for off in range(0, 256 << 20, 4096):
    buf[off] = 1
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    for off in range(0, 32 << 20, 4096):
        buf[off] = (buf[off] + 1) & 0xff
"""


def choose_mode(force_sim: bool) -> tuple[str, str]:
    """("real" or "sim", the reason in one sentence)."""
    if force_sim:
        return "sim", "you asked for the simulation (--sim)"
    if not os.path.exists(PAGE_IDLE):
        return "sim", (f"this kernel has no {PAGE_IDLE} (CONFIG_IDLE_PAGE_TRACKING is off), "
                       "so no user-space program can see which pages a process touches")
    if os.geteuid() != 0:
        return "sim", f"{PAGE_IDLE} needs root and you are not root (try: sudo pydamon demo)"
    from ..ops import available_ops

    if "vaddr" not in available_ops():
        return "sim", "the vaddr operations set is not available in this installation"
    return "real", f"this kernel has idle page tracking ({PAGE_IDLE}) and you are root"


def _pageout_scheme(attrs: MonitoringAttrs) -> Scheme:
    # cold: not accessed in a whole aggregation interval, for at least 2 seconds;
    # at most 128 MiB per second, so a wrong guess cannot page out everything at once
    return Scheme(
        pattern=AccessPattern(min_sz_region=4096, min_nr_accesses=0, max_nr_accesses=0,
                              min_age_region=2_000_000 // attrs.aggr_us),
        action=Action.PAGEOUT,
        quota=Quota(sz=128 << 20, reset_interval_ms=1000),
    )


def _overlap(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> int:
    total = 0
    for s1, e1 in a:
        for s2, e2 in b:
            total += max(0, min(e1, e2) - max(s1, s2))
    return total


def _say(text: str = "") -> None:
    print(text, flush=True)


def run_demo(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    mode, why = choose_mode(args.sim)
    attrs = MonitoringAttrs(sample_us=5_000, aggr_us=100_000, update_us=1_000_000,
                            min_nr_regions=10, max_nr_regions=1000)
    try:
        duration_s = (parse_time_ns(args.duration, "s") / 1e9 if args.duration
                      else 20.0 if mode == "sim" else 8.0)
    except UnitError as e:
        raise SessionError(f"--duration: {e}") from None
    scheme = _pageout_scheme(attrs)
    _say("pydamon demo: DAMON finds which memory a program uses, and DAMOS acts on it.")
    if mode == "sim":
        sim_api()  # fail early, with a clear message, if the simulator is missing
        _say(f"- target: the simulated workload {SIM_WORKLOAD!r}, in virtual time "
             f"({duration_s:g} s of it), because {why}.")
    else:
        _say(f"- target: a real child process (256 MiB buffer, first 32 MiB kept hot), "
             f"monitored with the vaddr operations set for {duration_s:g} s, because {why}.")
    _say(f"- monitoring: one sampled page per region every {format_time_ns(attrs.sample_us * 1000)}"
         f", counts summed every {format_time_ns(attrs.aggr_us * 1000)} (a snapshot), "
         f"{attrs.min_nr_regions}..{attrs.max_nr_regions} regions that split and merge to fit "
         "the access pattern.")
    _say("- scheme: page out regions not accessed for 2 s or more (pageout, access 0%, "
         "age >= 2 s), at most 128 MiB per second (a size quota).")
    spec = SessionSpec(
        ops_name="sim" if mode == "sim" else "vaddr", attrs=attrs, schemes=[scheme],
        command=[] if mode == "sim" else [sys.executable, "-c", CHILD_PROGRAM,
                                          str(duration_s + 5)],
        sim_workload=SIM_WORKLOAD if mode == "sim" else None, virtual=mode == "sim",
        timeout_s=duration_s, out_path=args.out, out_format="json_compressed", seed=42,
        quiet=not sys.stderr.isatty())
    _say("")
    res = run_session(spec)
    records = read_records(args.out)
    rec = records[0]
    maps = [build_heatmap(rec, nr_time_bins=60, nr_addr_bins=200)]
    save_png(maps, args.png, title=f"pydamon demo ({'simulated ' + SIM_WORKLOAD if mode == 'sim' else 'real process'})"
             f": access rate over time and address")
    term_map = build_heatmap(rec, nr_time_bins=12, nr_addr_bins=64)
    _say("heat map (rows: time, oldest first; columns: addresses of the hottest span; "
         "0-9: access level):")
    sys.stdout.write(render_terminal(term_map, color=not args.no_color and sys.stdout.isatty()))
    _say("")
    last = rec.snapshots[-1]
    wss = np.array([int(s.sizes[s.nr_accesses > 0].sum()) for s in rec.snapshots])
    _say("summary")
    _say(f"  monitored for {format_time_ns(rec.end_ns - rec.start_ns)}"
         f"{' of virtual time' if mode == 'sim' else ''} in {res.elapsed_s:.1f} s of real "
         f"time: {len(rec.snapshots)} snapshots; stopped: {res.stop_reason}")
    _say(f"  regions at the end: {last.nr_regions} covering {format_size(last.total_bytes)}")
    _say(f"  working set (accessed regions) per snapshot: median "
         f"{format_size(float(np.median(wss)))}, max {format_size(int(wss.max()))}")
    found = [(int(s), int(e)) for s, e, a, _ in last.rows() if a > 0]
    found_bytes = sum(e - s for s, e in found)
    if mode == "sim" and res.sim_process is not None:
        truth = [(int(s), int(e)) for s, e in res.sim_process.hot_ranges(last.end_ns)]
        truth_bytes = sum(e - s for s, e in truth)
        hit = _overlap(found, truth)
        recall = hit / truth_bytes if truth_bytes else 1.0
        precision = hit / found_bytes if found_bytes else 0.0
        _say(f"  hot set found in the last snapshot: {format_size(found_bytes)}; ground truth "
             f"(the simulator's hot ranges): {format_size(truth_bytes)}; "
             f"{recall:.0%} of the true hot bytes found, {precision:.0%} of the found bytes "
             f"truly hot")
        paged = getattr(res.sim_process, "paged_out_bytes", None)
        if callable(paged):
            _say(f"  paged out by the scheme (simulated): {format_size(paged())}")
    else:
        _say(f"  hot set found in the last snapshot: {format_size(found_bytes)} "
             f"(the child keeps 32 MiB hot)")
    for line in scheme_stats_lines(res.ctx.schemes):
        _say("  " + line)
    _say(f"  files: {args.out} (record, damo's json_compressed), {args.png} (heat map PNG)")
    _say("  next, try:")
    _say(f"    pydamon report access -i {args.out} --sort_regions_by temperature --sort_reverse")
    _say(f"    pydamon report wss -i {args.out}")
    _say(f"    damo report heatmap -i {args.out}")
    _say(f"demo finished in {time.monotonic() - t0:.1f} s")
    return 0
