"""The ``pydamon`` command: damo-style monitoring, schemes, records and reports.

Start with ``pydamon demo``. Every failure a user can act on ends in one
line ``pydamon <command>: error: <cause>; <fix>`` and a non-zero exit
status, never a traceback (``PYDAMON_DEBUG=1`` shows one).
"""

from __future__ import annotations

import argparse
import errno
import os
import shlex
import subprocess
import sys
import warnings

from .. import records as recfmt
from ..errors import DamonError
from .admin import DEFAULT_SYSFS_DIR, AdminError
from .damon_args import ArgsError, add_damos_args, add_monitoring_args
from .session import SessionError
from .units import UnitError, parse_number, parse_size, parse_time_ns

EXIT_ERROR = 1
EXIT_USAGE = 2


class CliError(Exception):
    """An error to print as one line (with the exit status to use)."""

    def __init__(self, message: str, status: int = EXIT_ERROR):
        super().__init__(message)
        self.status = status


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the command's --help."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


# -- record / schemes ---------------------------------------------------------------------
def _add_record_args(p: argparse.ArgumentParser, *, recording: bool) -> None:
    p.add_argument("target", nargs="*",
                   help="what to monitor: '-- CMD ARGS' (a command to run), a pid, "
                        "'paddr' (physical memory), or a quoted command line")
    add_monitoring_args(p)
    add_damos_args(p)
    p.add_argument("--sim", metavar="<workload>",
                   help="monitor a simulated workload (a built-in name or a JSON file; "
                        "see --list_workloads); implies --ops sim and virtual time")
    p.add_argument("--list_workloads", action="store_true",
                   help="list the built-in simulated workloads and exit")
    p.add_argument("--virtual", dest="virtual", action="store_true", default=None,
                   help="virtual time (default for simulated workloads): runs as fast as "
                        "the engine computes")
    p.add_argument("--real_time", dest="virtual", action="store_false",
                   help="real time even for a simulated workload")
    p.add_argument("--timeout", metavar="<time>",
                   help="stop after this long (10s, 1m; bare numbers are seconds); "
                        "default: when the command exits or on Ctrl-C (10s for simulations)")
    p.add_argument("--seed", type=int, default=None, help="random seed (reproducible runs)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    if recording:
        p.add_argument("-o", "--out", metavar="<file>", default="damon.data",
                       help="record file (default: damon.data in the current directory)")
        p.add_argument("--output_type", "-f", choices=recfmt.FORMATS,
                       default=recfmt.JSON_COMPRESSED, help="record format (json_compressed)")
    else:
        p.add_argument("-o", "--out", metavar="<file>", default=None,
                       help="also write a record file (not by default)")
        p.add_argument("--output_type", "-f", choices=recfmt.FORMATS,
                       default=recfmt.JSON_COMPRESSED, help=argparse.SUPPRESS)


def _timeout_s(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return parse_time_ns(text, bare_unit="s") / 1e9
    except UnitError as e:
        raise CliError(f"--timeout: {e}", EXIT_USAGE) from None


def _parse_target(args: argparse.Namespace) -> tuple[list[str], list[int], bool]:
    """(command, pids, paddr) from the positional target and --target_pid."""
    words = list(args.target or [])
    if words and words[0] == "--":
        words = words[1:]
    pids = [args.target_pid] if args.target_pid is not None else []
    if not words:
        return [], pids, False
    if len(words) == 1:
        w = words[0]
        if w == "paddr":
            return [], pids, True
        if w.isdigit():
            return [], pids + [int(w)], False
        if " " in w:
            words = shlex.split(w)
    return words, pids, False


def _session_spec(args: argparse.Namespace, out_path: str | None):
    from .damon_args import attrs_from_args, regions_from_args, schemes_from_args
    from .session import SessionSpec

    attrs = attrs_from_args(args)
    schemes = schemes_from_args(args, attrs)
    command, pids, paddr = _parse_target(args)
    sim = args.sim
    ops = args.ops
    if ops == "sim" and not sim:
        sim = "hotcold"
    if sim:
        if command or pids:
            raise CliError("--sim runs a simulated workload; do not also give a command or pid",
                           EXIT_USAGE)
        ops = "paddr" if (ops == "paddr" or paddr) else "sim"
    elif ops is None:
        ops = "paddr" if paddr else "vaddr"
    if not sim and ops in ("vaddr", "fvaddr") and not command and not pids:
        raise CliError("nothing to monitor: give '-- CMD ARGS', a pid, 'paddr', or "
                       "--sim WORKLOAD (try: pydamon record --sim hotcold)", EXIT_USAGE)
    if paddr and ops not in ("paddr",):
        raise CliError(f"'paddr' target with --ops {ops}; use --ops paddr", EXIT_USAGE)
    virtual = args.virtual if args.virtual is not None else bool(sim)
    if virtual and not sim:
        raise CliError("--virtual works only with simulated workloads (--sim); real "
                       "processes run in real time", EXIT_USAGE)
    if ops == "sim" and not sim:
        sim = "hotcold"
    return SessionSpec(
        ops_name=ops, attrs=attrs, schemes=schemes, pids=pids,
        regions=regions_from_args(args), command=command, sim_workload=sim,
        virtual=virtual, timeout_s=_timeout_s(args.timeout), out_path=out_path,
        out_format=args.output_type, seed=args.seed, quiet=args.quiet)


def _list_workloads() -> int:
    from .session import sim_api

    _, _, list_builtin = sim_api()
    for name in list_builtin():
        print(name)
    return 0


def cmd_record(args: argparse.Namespace) -> int:
    if args.list_workloads:
        return _list_workloads()
    from .session import run_session, scheme_stats_lines

    spec = _session_spec(args, args.out)
    res = run_session(spec)
    p = res.progress
    what = ("simulated physical memory" if spec.sim_workload and spec.ops_name == "paddr"
            else f"simulated workload {spec.sim_workload!r}" if spec.sim_workload
            else f"command {' '.join(spec.command)!r}" if spec.command
            else f"pid {', '.join(map(str, spec.pids))}" if spec.pids else "physical memory")
    print(f"recorded {what} with ops {spec.ops_name}: {p.nr_snapshots} snapshots, "
          f"{p.nr_regions} regions at the end; stopped: {res.stop_reason}")
    print(f"record file: {spec.out_path} ({spec.out_format}); see it with "
          f"'pydamon report heatmap -i {spec.out_path}'")
    for line in scheme_stats_lines(res.ctx.schemes):
        print(line)
    if res.child_returncode not in (None, 0):
        print(f"note: the monitored command exited with status {res.child_returncode}")
    return 0


def cmd_schemes(args: argparse.Namespace) -> int:
    if args.list_workloads:
        return _list_workloads()
    from .session import run_session, scheme_stats_lines

    spec = _session_spec(args, args.out)
    if not spec.schemes:
        raise CliError("no scheme given; add --damos_action ACTION (e.g. --damos_action "
                       "pageout --damos_access_rate 0% 0% --damos_age 5s max) or --schemes JSON",
                       EXIT_USAGE)
    res = run_session(spec)
    print(f"applied {len(spec.schemes)} scheme(s) for "
          f"{res.progress.nr_snapshots} aggregation intervals; stopped: {res.stop_reason}")
    for line in scheme_stats_lines(res.ctx.schemes):
        print(line)
    return 0


# -- daemon control -----------------------------------------------------------------------
def _admin(args: argparse.Namespace):
    from .admin import RealAdminDir

    return RealAdminDir(args.sysfs)


def _stage_request(args: argparse.Namespace):
    from .admin import StageRequest, StageTarget
    from .damon_args import attrs_from_args, regions_from_args, schemes_from_args

    attrs = attrs_from_args(args)
    schemes = schemes_from_args(args, attrs)
    command, pids, paddr = _parse_target(args)
    regions = regions_from_args(args)
    if command:
        try:
            child = subprocess.Popen(command, start_new_session=True)
        except OSError as e:
            raise CliError(f"cannot run {command[0]!r}: {e.strerror}") from None
        pids = [child.pid]
        print(f"started {' '.join(command)!r} as pid {child.pid}")
    ops = args.ops or ("vaddr" if pids else "paddr")
    if ops in ("vaddr", "fvaddr"):
        if not pids:
            raise CliError(f"--ops {ops} needs a target: a pid, '-- CMD ARGS' or --target_pid",
                           EXIT_USAGE)
        targets = [StageTarget(pid, regions) for pid in pids]
    else:
        targets = [StageTarget(None, regions)]
    return StageRequest(ops, attrs, targets, schemes)


def cmd_start(args: argparse.Namespace) -> int:
    from .admin import start

    adm = _admin(args)
    pid = start(adm, _stage_request(args))
    print(f"kdamond 0 started (pid {pid}) in {adm.describe('kdamonds')}")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from .admin import tune

    tune(_admin(args), _stage_request(args))
    print("kdamond 0 tuned (committed)")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    from .admin import stop

    stopped = stop(_admin(args))
    print(f"stopped kdamond {', '.join(map(str, stopped))}" if stopped
          else "no kdamond was running")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from .admin import status

    sys.stdout.write(status(_admin(args)))
    return 0


def _add_control_args(p: argparse.ArgumentParser, *, staging: bool) -> None:
    p.add_argument("--sysfs", metavar="<dir>", default=DEFAULT_SYSFS_DIR,
                   help=f"the DAMON sysfs admin directory to drive (default {DEFAULT_SYSFS_DIR}, "
                        "where 'pydamon daemon' mounts it)")
    if staging:
        p.add_argument("target", nargs="*",
                       help="a pid, 'paddr', or '-- CMD ARGS' to start and monitor")
        add_monitoring_args(p, default_update="1s")
        add_damos_args(p)


# -- reports ------------------------------------------------------------------------------
def _read(args: argparse.Namespace) -> list[recfmt.Record]:
    records = recfmt.read_records(args.input)
    tid = getattr(args, "target_id", None)
    if tid is not None:
        records = [r for r in records if r.target_id == tid]
        if not records:
            raise CliError(f"{args.input} has no target id {tid}")
    if not any(r.snapshots for r in records):
        raise CliError(f"{args.input} holds no snapshot; record for longer than one "
                       f"aggregation interval")
    return [r for r in records if r.snapshots]


def _ns_range(pair: list[str] | None, name: str) -> tuple[int, int] | None:
    if not pair:
        return None
    try:
        lo, hi = parse_time_ns(pair[0], "s"), parse_time_ns(pair[1], "s")
    except UnitError as e:
        raise CliError(f"{name}: {e}", EXIT_USAGE) from None
    if lo >= hi:
        raise CliError(f"{name}: start must be before end", EXIT_USAGE)
    return lo, hi


def _addr_range(pair: list[str] | None) -> tuple[int, int] | None:
    if not pair:
        return None
    try:
        lo, hi = parse_size(pair[0]), parse_size(pair[1])
    except UnitError as e:
        raise CliError(f"--address_range: {e}", EXIT_USAGE) from None
    if lo >= hi:
        raise CliError("--address_range: start must be below end", EXIT_USAGE)
    return lo, hi


def cmd_report_access(args: argparse.Namespace) -> int:
    from ..reports.access import report_access

    try:
        text = report_access(_read(args), snapshot_index=args.snapshot_idx,
                             sort_by=args.sort_regions_by, reverse=args.sort_reverse,
                             min_access_pct=args.min_access, raw_numbers=args.raw_form)
    except IndexError as e:
        raise CliError(str(e), EXIT_USAGE) from None
    sys.stdout.write(text)
    return 0


def cmd_report_heatmap(args: argparse.Namespace) -> int:
    from ..reports.heatmap import build_heatmap, render_terminal, save_png

    records = _read(args)
    rows, cols = args.resol
    maps = []
    try:
        for rec in records:
            maps.append(build_heatmap(
                rec, nr_time_bins=rows, nr_addr_bins=cols, addr_range=_addr_range(args.address_range),
                time_range_ns=_ns_range(args.time_range, "--time_range"),
                draw_range=args.draw_range))
    except ValueError as e:
        raise CliError(str(e), EXIT_USAGE) from None
    if args.output:
        if args.output.endswith(".png"):
            save_png(maps, args.output)
            print(f"heat map written to {args.output}")
            return 0
        raise CliError(f"--output {args.output}: only .png images are supported", EXIT_USAGE)
    color = not args.no_color and (args.color or sys.stdout.isatty())
    for hm in maps:
        sys.stdout.write(render_terminal(hm, color=color))
    return 0


def _percentiles(rng: list[str] | None) -> list[int]:
    if not rng:
        return [0, 25, 50, 75, 100]
    start, end, step = (parse_number(x) for x in rng)
    if step <= 0 or start > end or end > 100:
        raise CliError("--range takes <start> <end> <step> with 0 <= start <= end <= 100, step > 0",
                       EXIT_USAGE)
    return list(range(start, end + 1, step))


def cmd_report_wss(args: argparse.Namespace) -> int:
    from ..reports.wss import plot_series, report_wss

    records = _read(args)
    if args.plot:
        plot_series(records, args.plot, what="wss", acc_thres=args.acc_thres)
        print(f"working set size plot written to {args.plot}")
        return 0
    sys.stdout.write(report_wss(records, acc_thres=args.acc_thres, sz_thres=parse_size(args.sz_thres),
                                exclude_samples=args.exclude_samples,
                                percentiles=_percentiles(args.range), time_series=args.time_series,
                                raw_numbers=args.raw_number))
    return 0


def cmd_report_nr_regions(args: argparse.Namespace) -> int:
    from ..reports.wss import plot_series, report_nr_regions

    records = _read(args)
    if args.plot:
        plot_series(records, args.plot, what="nr_regions")
        print(f"number of regions plot written to {args.plot}")
        return 0
    sys.stdout.write(report_nr_regions(records, exclude_samples=args.exclude_samples,
                                       percentiles=_percentiles(args.range),
                                       time_series=args.time_series))
    return 0


def cmd_report_raw(args: argparse.Namespace) -> int:
    from ..reports.raw import report_raw

    for line in report_raw(_read(args)):
        sys.stdout.write(line + "\n")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    records = recfmt.read_records(args.input)
    recfmt.write_records(args.out, records, args.format)
    print(f"{args.input} -> {args.out} ({args.format}, "
          f"{sum(len(r.snapshots) for r in records)} snapshots)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args)


# -- the parser ---------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="pydamon", description="DAMON and DAMOS in user space, damo-style. "
                "New here? Run 'pydamon demo'.")
    p.add_argument("--version", action="version", version="pydamon 0.1.0")
    sub = p.add_subparsers(dest="command", metavar="<command>", parser_class=_Parser)

    d = sub.add_parser("demo", help="a one-minute guided session: record, scheme, heat map")
    d.add_argument("-o", "--out", default="damon.data", help="record file (damon.data)")
    d.add_argument("--png", default="damon.png", help="heat map image (damon.png)")
    d.add_argument("--duration", default=None,
                   help="monitoring time (default 20s virtual for a simulation, 8s real)")
    d.add_argument("--sim", action="store_true", help="use the simulated workload even if the "
                   "kernel could monitor a real process")
    d.add_argument("--no_color", action="store_true", help="no colours in the terminal heat map")
    d.set_defaults(func=cmd_demo)

    r = sub.add_parser("record", help="monitor accesses and write a record file (damon.data)")
    _add_record_args(r, recording=True)
    r.set_defaults(func=cmd_record)

    s = sub.add_parser("schemes", help="apply DAMOS schemes without recording; print their stats")
    _add_record_args(s, recording=False)
    s.set_defaults(func=cmd_schemes)

    for name, fn, staging, help_ in (
            ("start", cmd_start, True, "start a kdamond through a DAMON sysfs tree"),
            ("tune", cmd_tune, True, "change a running kdamond's parameters (commit)"),
            ("stop", cmd_stop, False, "stop running kdamonds"),
            ("status", cmd_status, False, "show kdamonds, their parameters and scheme stats")):
        c = sub.add_parser(name, help=help_)
        _add_control_args(c, staging=staging)
        c.set_defaults(func=fn)

    rep = sub.add_parser("report", help="reports on a record file (or the kdamonds: damon)")
    rsub = rep.add_subparsers(dest="report", metavar="<report>", parser_class=_Parser)

    def report_parser(name: str, help_: str) -> argparse.ArgumentParser:
        rp = rsub.add_parser(name, help=help_)
        rp.add_argument("-i", "--input", default="damon.data", help="record file (damon.data)")
        rp.add_argument("--target_id", type=int, default=None, help="only this target")
        return rp

    a = report_parser("access", "regions of a snapshot: address, size, access rate, age")
    a.add_argument("--snapshot_idx", type=int, default=None,
                   help="which snapshot (default: the last; negative counts from the end)")
    from ..reports.access import SORT_KEYS

    a.add_argument("--sort_regions_by", choices=SORT_KEYS, default="address")
    a.add_argument("--sort_reverse", action="store_true")
    a.add_argument("--min_access", type=float, default=0.0, metavar="<percent>",
                   help="hide regions accessed less than this")
    a.add_argument("--raw_form", action="store_true", help="numbers in bytes, samples, aggrs")
    a.set_defaults(func=cmd_report_access)

    h = report_parser("heatmap", "access heat map over time and address (terminal or PNG)")
    h.add_argument("--output", metavar="<file.png>", help="write a PNG instead of printing")
    h.add_argument("--address_range", nargs=2, metavar=("<start>", "<end>"))
    h.add_argument("--time_range", nargs=2, metavar=("<start>", "<end>"),
                   help="relative to the record's start (5s, 1m; bare numbers are seconds)")
    h.add_argument("--draw_range", choices=("hottest", "all"), default="hottest",
                   help="address span drawn when --address_range is not given")
    h.add_argument("--resol", nargs=2, type=int, default=(40, 80), metavar=("<rows>", "<cols>"),
                   help="time rows x address columns (40 80)")
    h.add_argument("--no_color", action="store_true")
    h.add_argument("--color", action="store_true", help="colours even when not a terminal")
    h.set_defaults(func=cmd_report_heatmap)

    for name, fn, help_ in (("wss", cmd_report_wss, "working set size: percentiles or series"),
                            ("nr_regions", cmd_report_nr_regions, "number of regions")):
        w = report_parser(name, help_)
        w.add_argument("--exclude_samples", type=int, default=0,
                       help="skip the first N snapshots (damo's default is 20)")
        w.add_argument("--range", nargs=3, metavar=("<start>", "<end>", "<step>"),
                       help="percentiles to print (0 100 25)")
        w.add_argument("--time_series", action="store_true", help="one line per snapshot")
        w.add_argument("--plot", metavar="<file.png>", help="plot the time series to a PNG")
        if name == "wss":
            w.add_argument("--acc_thres", type=int, default=1,
                           help="min nr_accesses (samples) of a region in the working set")
            w.add_argument("--sz_thres", default="1", help="min size of a region in it")
            w.add_argument("--raw_number", action="store_true", help="sizes in bytes")
        w.set_defaults(func=fn)

    raw = report_parser("raw", "every snapshot's regions as numbers")
    raw.set_defaults(func=cmd_report_raw)

    dm = rsub.add_parser("damon", help="kdamonds of a sysfs tree (same as 'pydamon status')")
    _add_control_args(dm, staging=False)
    dm.set_defaults(func=cmd_status)

    cv = sub.add_parser("convert", help="convert a record file to another format")
    cv.add_argument("-i", "--input", default="damon.data")
    cv.add_argument("-o", "--out", required=True)
    cv.add_argument("--format", choices=recfmt.FORMATS, default=recfmt.JSON_COMPRESSED)
    cv.set_defaults(func=cmd_convert)

    try:
        from . import daemon_cmd  # written separately; absent in some trees
    except ImportError:
        daemon_cmd = None
    if daemon_cmd is not None:
        daemon_cmd.add_parser(sub)
    return p


def _damon_error_line(e: DamonError) -> str:
    msg = e.strerror or str(e)
    name = e.errname if hasattr(e, "errname") else errno.errorcode.get(e.errno or 0, "?")
    text = f"{msg} ({name})"
    if "IDLE_PAGE_TRACKING" in msg.upper() or "page_idle" in msg:
        if "CONFIG_IDLE_PAGE_TRACKING" not in msg:
            text += "; the kernel needs CONFIG_IDLE_PAGE_TRACKING=y"
        text += ("; on this kernel, monitor a simulated workload instead: "
                 "pydamon record --sim hotcold (or run pydamon demo)")
    elif e.errno in (errno.EPERM, errno.EACCES):
        text += "; run as root (monitoring other processes' memory needs it)"
    elif e.errno == errno.ESRCH or "no such process" in msg.lower() or "exited" in msg:
        text += "; the process is gone: check the pid with 'ps -p PID'"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        if args.command == "report":
            parser.exit(EXIT_USAGE, "pydamon report: error: name a report: access, heatmap, "
                        "wss, nr_regions, raw, damon (see 'pydamon report --help')\n")
        parser.print_help()
        return EXIT_USAGE
    prog = f"pydamon {args.command}" + (f" {args.report}" if getattr(args, "report", None) else "")

    def one_line_warning(message, category, filename, lineno, file=None, line=None):
        print(f"{prog}: warning: {message}", file=sys.stderr)

    warnings.showwarning = one_line_warning
    try:
        return args.func(args) or 0
    except (CliError, ArgsError, UnitError) as e:
        status = e.status if isinstance(e, CliError) else EXIT_USAGE
        print(f"{prog}: error: {e}", file=sys.stderr)
        return status
    except (SessionError, AdminError, recfmt.RecordError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except DamonError as e:
        if os.environ.get("PYDAMON_DEBUG"):
            raise
        print(f"{prog}: error: {_damon_error_line(e)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader (head, less) went away: not an error worth a message
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        except OSError:
            pass
        return 0
    except OSError as e:
        if os.environ.get("PYDAMON_DEBUG"):
            raise
        where = f" ({e.filename})" if e.filename else ""
        print(f"{prog}: error: {e.strerror or e}{where}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
