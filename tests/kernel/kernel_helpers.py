"""Helpers of the real-kernel tests: workload processes, a kdamond runner, masks.

See conftest.py for how these tests run (inside the QEMU guest).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
WORKLOAD = HERE / "workload.py"
BITMAP = "/sys/kernel/mm/page_idle/bitmap"
PAGE = 4096

#: the guest's memory and NUMA topology (test_in_guest.py): two nodes of 2 GiB,
#: both vCPUs on node 0, node 1 memory only, for the migrate tests to move
#: pages from node 0 (where processes allocate) to node 1
GUEST_MEM = "4G"
GUEST_CPUS = 2
GUEST_NUMA_QEMU_ARGS = [
    "-object", "memory-backend-ram,id=m0,size=2G",
    "-object", "memory-backend-ram,id=m1,size=2G",
    "-numa", "node,nodeid=0,cpus=0-1,memdev=m0",
    "-numa", "node,nodeid=1,memdev=m1",
]
#: no page moves between nodes but by the tests (balancing is on by default
#: once there are two nodes)
GUEST_APPEND = "numa_balancing=disable"


def real_kernel_reason() -> str | None:
    """Why the real-kernel tests cannot run here, or None if they can."""
    if not os.path.exists(BITMAP):
        return "no idle page tracking here (CONFIG_IDLE_PAGE_TRACKING); run through the guest"
    if os.geteuid() != 0:
        return "needs root (idle page bitmap, pagemap frame numbers)"
    return None


@dataclass
class Workload:
    proc: subprocess.Popen
    pid: int
    addr: int
    size: int
    hot_start: int
    hot_end: int
    thp: bool

    def status(self) -> dict[str, int]:
        from pydamon.linux.procfs import process_status

        return process_status(self.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def spawn_workload(size_mib: int, hot_offset_mib: int, hot_mib: int, thp: bool,
                   duration: float = 3600.0, period_ms: float = 0.0,
                   extra: tuple[str, ...] = ()) -> tuple[subprocess.Popen, str]:
    """Start a workload; :func:`wait_workload` waits until its buffer is populated."""
    fd, ready = tempfile.mkstemp(prefix="workload-", suffix=".json")
    os.close(fd)
    os.unlink(ready)
    cmd = [sys.executable, str(WORKLOAD), "--size-mib", str(size_mib), "--hot-offset-mib",
           str(hot_offset_mib), "--hot-size-mib", str(hot_mib), "--ready", ready,
           "--duration", str(duration), "--period-ms", str(period_ms)]
    if thp:
        cmd.append("--thp")
    cmd += extra
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL), ready


def wait_workload(spawned: tuple[subprocess.Popen, str]) -> Workload:
    proc, ready = spawned
    deadline = time.monotonic() + 600
    while not os.path.exists(ready):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"workload did not start (exit {proc.returncode})")
        time.sleep(0.1)
    with open(ready) as f:
        info = json.load(f)
    os.unlink(ready)
    return Workload(proc, info["pid"], info["addr"], info["size"], info["hot_start"],
                    info["hot_end"], info["thp"])


def start_workload(size_mib: int, hot_offset_mib: int, hot_mib: int, thp: bool,
                   duration: float = 3600.0, period_ms: float = 0.0,
                   extra: tuple[str, ...] = ()) -> Workload:
    return wait_workload(spawn_workload(size_mib, hot_offset_mib, hot_mib, thp, duration,
                                        period_ms, extra))


@dataclass
class Snapshot:
    start: np.ndarray
    end: np.ndarray
    nr_accesses: np.ndarray


def run_kdamond(ctx, nr_samples: int) -> list[list[Snapshot]]:
    """Run ``ctx`` in this thread; per target, the regions of every aggregation."""
    from pydamon.core.kdamond import Kdamond

    snaps: list[list[Snapshot]] = [[] for _ in ctx.targets]

    def on_aggr(ev) -> None:
        snaps[ev.target_idx].append(Snapshot(np.asarray(ev.start), np.asarray(ev.end),
                                              np.asarray(ev.nr_accesses)))

    ctx.add_aggregation_listener(on_aggr)
    Kdamond(ctx).run(nr_samples=nr_samples)
    return snaps


def hot_mask(snaps: list[Snapshot], lo: int, hi: int, threshold: int, last: int = 3) -> np.ndarray:
    """Pages of [lo, hi) with nr_accesses >= threshold in most of the last aggregations."""
    use = snaps[-last:]
    votes = np.zeros((hi - lo) // PAGE, np.int32)
    for s in use:
        sel = s.nr_accesses >= threshold
        for a, b in zip(s.start[sel].tolist(), s.end[sel].tolist(), strict=True):
            a, b = max(a, lo), min(b, hi)
            if a < b:
                votes[(a - lo) // PAGE:(b - lo + PAGE - 1) // PAGE] += 1
    return votes * 2 > len(use)


def truth_mask(w: Workload) -> np.ndarray:
    m = np.zeros(w.size // PAGE, bool)
    m[(w.hot_start - w.addr) // PAGE:(w.hot_end - w.addr) // PAGE] = True
    return m
