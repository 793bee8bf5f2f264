"""Latency of sysfs file reads and writes through a pydamon FUSE mount.

Starts ``pydamon daemon`` on a temporary mount point (root and /dev/fuse
needed), then times, from this separate process, open+read+close and
open(O_TRUNC)+write+close round trips on shallow and deep sysfs files, and
prints the median and 90th percentile of each in microseconds. The bar is a
median of at most 100 us for a sysfs file read or write.

    sudo .venv/bin/python bench/bench_fuse.py [--iterations N] [--simulate]

``--simulate`` also runs a kdamond (simulated paddr) while measuring, so the
engine competes with the FUSE thread for the interpreter.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

BAR_US = 100.0


def wait_for(path: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            return
        time.sleep(0.05)
    raise SystemExit(f"mount did not appear at {path}")


def write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def read(path: str) -> str:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 4096).decode()
    finally:
        os.close(fd)


def timed(fn: Callable[[], object], n: int) -> list[float]:
    for _ in range(min(200, n)):  # warm up the dentry cache and the interpreter
        fn()
    samples = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - t0) / 1000)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=5000)
    parser.add_argument("--simulate", action="store_true",
                        help="run a simulated kdamond while measuring")
    args = parser.parse_args()
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        print("bench_fuse: needs root and /dev/fuse", file=sys.stderr)
        return 2
    mnt = tempfile.mkdtemp(prefix="pydamon-bench-")
    cmd = [sys.executable, "-m", "pydamon.daemon", "--sysfs", mnt, "--debugfs", ""]
    if args.simulate:
        cmd.append("--simulate")
    log_file = tempfile.TemporaryFile(mode="w+")
    daemon = subprocess.Popen(cmd, stderr=log_file, text=True)
    try:
        try:
            wait_for(os.path.join(mnt, "kdamonds", "nr_kdamonds"))
        except SystemExit:
            log_file.seek(0)
            print(log_file.read(), file=sys.stderr)
            raise
        k = os.path.join(mnt, "kdamonds")
        write(f"{k}/nr_kdamonds", "1")
        write(f"{k}/0/contexts/nr_contexts", "1")
        ctx = f"{k}/0/contexts/0"
        if args.simulate:
            write(f"{ctx}/operations", "paddr")
            write(f"{ctx}/targets/nr_targets", "1")
            write(f"{k}/0/state", "on")
        sample_us = f"{ctx}/monitoring_attrs/intervals/sample_us"
        cases: list[tuple[str, Callable[[], object]]] = [
            ("read  kdamonds/nr_kdamonds", lambda: read(f"{k}/nr_kdamonds")),
            ("read  kdamonds/0/state", lambda: read(f"{k}/0/state")),
            ("read  .../intervals/sample_us", lambda: read(sample_us)),
            ("write .../intervals/sample_us", lambda: write(sample_us, "5000")),
            ("write .../nr_regions/max", lambda: write(
                f"{ctx}/monitoring_attrs/nr_regions/max", "1000")),
            ("listdir contexts/0", lambda: os.listdir(ctx)),
        ]
        print(f"{'operation':34} {'median_us':>10} {'p90_us':>8}")
        failed = False
        for name, fn in cases:
            s = timed(fn, args.iterations)
            median = statistics.median(s)
            p90 = statistics.quantiles(s, n=10)[-1]
            print(f"{name:34} {median:10.1f} {p90:8.1f}")
            if not name.startswith("listdir") and median > BAR_US:
                failed = True
        if args.simulate:
            write(f"{k}/0/state", "off")
        print(f"bar: median <= {BAR_US:.0f} us per sysfs file read/write: "
              f"{'FAILED' if failed else 'met'}")
        return 1 if failed else 0
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(15)
        except subprocess.TimeoutExpired:
            daemon.kill()
        try:
            os.rmdir(mnt)
        except OSError:
            pass


if __name__ == "__main__":
    sys.exit(main())
