"""``pydamon daemon``: serve the DAMON sysfs/debugfs trees over FUSE (see :mod:`pydamon.daemon`)."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    from ..daemon import add_arguments

    parser = subparsers.add_parser(
        "daemon", help="mount DAMON's sysfs and debugfs files, served by pydamon (root only)",
        description="Mount the DAMON sysfs admin tree (it plays /sys/kernel/mm/damon/admin) "
        "and the debugfs tree (damon/ and tracing/trace_pipe) over FUSE and serve them in "
        "the foreground until SIGTERM or SIGINT. Root only.")
    add_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from ..daemon import run_daemon, setup_logging

    setup_logging(getattr(args, "verbose", False))
    return run_daemon(args.sysfs or None, args.debugfs or None, args.simulate)
