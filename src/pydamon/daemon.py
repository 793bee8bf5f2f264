"""The pydamon daemon: serve the DAMON sysfs (and debugfs) trees over FUSE.

``pydamon daemon [--sysfs DIR] [--debugfs DIR] [--simulate]`` mounts the
sysfs admin tree at ``DIR`` (it plays ``/sys/kernel/mm/damon/admin``: the
tree appears as ``DIR/kdamonds/...``) and the debugfs tree at the other
``DIR`` (it plays ``<debugfs>/damon``), runs in the foreground, and on
SIGTERM/SIGINT/SIGHUP stops every kdamond and unmounts both.

Safety: it runs as root only, mounts without ``allow_other`` (only root sees
the files), refuses to mount on or under a real kernel sysfs/debugfs (a
tmpfs shield in between, as damon-sandbox makes, is fine), and cleans a
dead mount ("Transport endpoint is not connected") a crashed daemon left.
"""

from __future__ import annotations

import argparse
import errno
import inspect
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .interfaces.sysfs import SysfsTree, build_sysfs_tree, default_ops_factory
from .interfaces.trace import TraceHub, build_trace_dir
from .interfaces.tree import Tree

log = logging.getLogger("pydamon.daemon")

DEFAULT_SYSFS_DIR = "/run/pydamon/sysfs"
DEFAULT_DEBUGFS_DIR = "/run/pydamon/debugfs"
#: Kernel filesystems a mount must never shadow (the real DAMON lives in them).
KERNEL_FSTYPES = frozenset({
    "sysfs", "debugfs", "tracefs", "proc", "securityfs", "configfs", "cgroup", "cgroup2",
    "bpf", "pstore", "efivarfs", "fusectl",
})
MOUNT_WAIT_S = 10.0


class DaemonError(Exception):
    """A condition that keeps the daemon from starting; the message says what to do."""


@dataclass(frozen=True)
class MountInfo:
    mount_point: str
    fstype: str
    source: str


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and len(field[i + 1:i + 4]) == 3 and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def read_mounts(path: str = "/proc/self/mountinfo") -> list[MountInfo]:
    mounts = []
    with open(path) as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            rest = right.split()
            if len(fields) < 5 or len(rest) < 2:
                continue
            mounts.append(MountInfo(_unescape(fields[4]), rest[0], _unescape(rest[1])))
    return mounts


def containing_mount(path: str, mounts: list[MountInfo]) -> MountInfo | None:
    """The mount ``path`` lives on: the last-mounted one with the longest matching prefix."""
    path = os.path.normpath(path)
    best: MountInfo | None = None
    for m in mounts:
        mp = m.mount_point
        if path == mp or path.startswith(mp.rstrip("/") + "/") or mp == "/":
            if best is None or len(mp) >= len(best.mount_point):
                best = m
    return best


def is_mount_point(path: str, mounts: list[MountInfo]) -> MountInfo | None:
    path = os.path.normpath(path)
    found = None
    for m in mounts:
        if m.mount_point == path:
            found = m
    return found


def unmount(path: str, lazy: bool = False) -> bool:
    """Unmount a FUSE mount point; True on success."""
    fusermount = shutil.which("fusermount3")
    if fusermount:
        cmd = [fusermount, "-u"] + (["-z"] if lazy else []) + [path]
    else:
        cmd = ["umount"] + (["-l"] if lazy else []) + [path]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        log.warning("%s failed: %s", " ".join(cmd), result.stderr.strip())
    return result.returncode == 0


def prepare_mount_point(path: str, mounts_reader: Callable[[], list[MountInfo]] = read_mounts
                        ) -> str:
    """Check that ``path`` may be mounted on, clean a stale mount, create it if missing."""
    path = os.path.abspath(path)
    mounts = mounts_reader()
    existing = is_mount_point(path, mounts)
    stale = False
    try:
        # listdir, not stat: a dead mount may still answer stat from the
        # kernel's attribute cache, while a directory read needs the daemon
        os.listdir(path)
    except OSError as e:
        if e.errno == errno.ENOTCONN:
            stale = True
        elif e.errno not in (errno.ENOENT, errno.ENOTDIR):
            raise DaemonError(f"{path}: {e.strerror}") from None
    if stale:
        log.warning("%s: a dead FUSE mount is left from an earlier run; unmounting it", path)
        if not unmount(path, lazy=True):
            raise DaemonError(f"{path}: cannot remove the dead mount; run 'umount -l {path}'")
        mounts = mounts_reader()
        existing = is_mount_point(path, mounts)
    if existing is not None and existing.fstype.startswith("fuse"):
        raise DaemonError(f"{path}: already mounted ({existing.fstype} from {existing.source}); "
                          "is another pydamon daemon running?")
    if existing is not None and existing.fstype in KERNEL_FSTYPES:
        raise DaemonError(f"{path}: refusing to mount over a real kernel {existing.fstype}")
    holder = containing_mount(path, mounts)
    if holder is not None and holder.fstype in KERNEL_FSTYPES:
        raise DaemonError(
            f"{path}: refusing to mount inside a real kernel {holder.fstype} "
            f"(mounted at {holder.mount_point}); shield it with a tmpfs first "
            "(see damon-sandbox) or choose another directory")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise DaemonError(f"{path}: cannot create the mount point: {e.strerror}") from None
    if not os.path.isdir(path):
        raise DaemonError(f"{path}: not a directory")
    if os.listdir(path):
        # mounting would hide what is there; a shield or a fresh directory is empty
        raise DaemonError(f"{path}: not empty; refusing to hide its files under the mount")
    return path


def wait_mounted(path: str, timeout: float = MOUNT_WAIT_S) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = is_mount_point(path, read_mounts())
        if m is not None and m.fstype.startswith("fuse"):
            return True
        time.sleep(0.02)
    return False


def _build_debugfs_tree(ops_factory, avail, simulate: bool, world,
                        trace_hub: TraceHub) -> Tree | None:
    try:
        from .interfaces.debugfs import build_debugfs_tree  # type: ignore[attr-defined]
    except ImportError as e:
        log.warning("debugfs model not available (%s); serving sysfs only", e)
        return None
    offered = {"ops_factory": ops_factory, "avail_operations": avail, "simulate": simulate,
               "world": world, "trace_hub": trace_hub}
    params = inspect.signature(build_debugfs_tree).parameters
    kwargs = {k: v for k, v in offered.items() if k in params}
    tree = build_debugfs_tree(**kwargs)
    # debugfs/tracing/trace_pipe: the damon_aggregated events of every kdamond
    if "tracing" not in tree.root.children():
        tree.root.entries["tracing"] = build_trace_dir(trace_hub)
    return tree


class Daemon:
    """Mounts the trees, waits for a signal, then stops kdamonds and unmounts."""

    def __init__(self, sysfs_dir: str | None, debugfs_dir: str | None, simulate: bool,
                 sysfs_tree: SysfsTree | None = None, debugfs_tree: Tree | None = None):
        self.simulate = simulate
        self.stop_event = threading.Event()
        self.mounts: list[tuple[str, Tree, threading.Thread]] = []
        self.sysfs_dir = sysfs_dir
        self.debugfs_dir = debugfs_dir
        self.sysfs_tree = sysfs_tree
        self.debugfs_tree = debugfs_tree
        #: damon_aggregated events of every kdamond, read from tracing/trace_pipe
        self.trace_hub = TraceHub()

    def build_trees(self) -> None:
        """Build the trees to serve that were not given (both share one world)."""
        need_sysfs = self.sysfs_dir and self.sysfs_tree is None
        need_debugfs = self.debugfs_dir and self.debugfs_tree is None
        if not (need_sysfs or need_debugfs):
            return
        world = None
        if self.simulate:
            try:
                from .ops.sim import SimWorld
            except ImportError as e:
                raise DaemonError(f"--simulate needs pydamon.ops.sim: {e}") from None
            world = SimWorld()
        ops_factory, avail = default_ops_factory(self.simulate, world)
        if need_sysfs:
            self.sysfs_tree = build_sysfs_tree(
                ops_factory, avail, aggregation_listeners=(self.trace_hub.publish,))
        if need_debugfs:
            self.debugfs_tree = _build_debugfs_tree(ops_factory, avail, self.simulate, world,
                                                    self.trace_hub)

    def _serve_thread(self, tree: Tree, path: str, fsname: str) -> threading.Thread:
        from .interfaces.fuse import serve

        def run() -> None:
            try:
                serve(tree, path, fsname=fsname)
            except BaseException:
                log.exception("serving %s failed", path)
            finally:
                log.info("%s: FUSE loop ended", path)
                self.stop_event.set()

        thread = threading.Thread(target=run, name=f"fuse:{path}", daemon=True)
        thread.start()
        return thread

    def start(self) -> None:
        self.build_trees()
        plan: list[tuple[str, Tree, str]] = []
        if self.sysfs_dir and self.sysfs_tree is not None:
            plan.append((prepare_mount_point(self.sysfs_dir), self.sysfs_tree, "pydamon-sysfs"))
        if self.debugfs_dir and self.debugfs_tree is not None:
            plan.append((prepare_mount_point(self.debugfs_dir), self.debugfs_tree,
                         "pydamon-debugfs"))
        for path, tree, fsname in plan:
            thread = self._serve_thread(tree, path, fsname)
            self.mounts.append((path, tree, thread))
            if not wait_mounted(path):
                self.shutdown()
                raise DaemonError(f"{path}: the FUSE mount did not appear "
                                  "(is /dev/fuse available and libfuse3 installed?)")
            log.info("serving %s at %s%s", fsname, path, " (simulation)" if self.simulate else "")

    def request_stop(self, signum: int | None = None, frame=None) -> None:
        if signum is not None:
            log.info("got %s; stopping", signal.Signals(signum).name)
        self.stop_event.set()

    def wait(self) -> None:
        while not self.stop_event.wait(0.5):
            pass

    def shutdown(self) -> None:
        for tree in (self.sysfs_tree, self.debugfs_tree):
            shutdown = getattr(tree, "shutdown", None) or getattr(
                getattr(tree, "model", None), "shutdown", None)
            if shutdown is not None:
                try:
                    shutdown()
                except Exception:
                    log.exception("stopping the kdamonds failed")
        for path, _tree, thread in reversed(self.mounts):
            if thread.is_alive():
                if not unmount(path):
                    unmount(path, lazy=True)
                thread.join(5.0)
            log.info("unmounted %s", path)
        self.mounts.clear()


def run_daemon(sysfs_dir: str | None, debugfs_dir: str | None, simulate: bool) -> int:
    if os.geteuid() != 0:
        log.error("pydamon daemon must run as root (it mounts FUSE filesystems that only "
                  "root may use, as the kernel's DAMON files are)")
        return 1
    # A FUSE request waiting for the interpreter behind a kdamond thread would
    # wait up to the switch interval (5 ms by default); sysfs answers in tens of us.
    sys.setswitchinterval(0.0005)
    daemon = Daemon(sysfs_dir, debugfs_dir, simulate)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, daemon.request_stop)
    try:
        daemon.start()
    except DaemonError as e:
        log.error("%s", e)
        daemon.shutdown()
        return 1
    log.info("ready; send SIGTERM or SIGINT to stop")
    try:
        daemon.wait()
    finally:
        daemon.shutdown()
        log.info("stopped")
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sysfs", metavar="DIR", default=DEFAULT_SYSFS_DIR,
                        help="where to mount the sysfs admin tree, which appears as "
                        f"DIR/kdamonds/... (default {DEFAULT_SYSFS_DIR}; '' to skip)")
    parser.add_argument("--debugfs", metavar="DIR", default=DEFAULT_DEBUGFS_DIR,
                        help="where to mount the debugfs tree: DIR/damon/... and "
                        "DIR/tracing/trace_pipe "
                        f"(default {DEFAULT_DEBUGFS_DIR}; '' to skip)")
    parser.add_argument("--simulate", action="store_true",
                        help="back vaddr, fvaddr and paddr with simulated memory: a pid "
                        "written to pid_target names a simulated process")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logs")


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not verbose:
        logging.getLogger("mfusepy").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pydamon daemon", description=__doc__.split("\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    return run_daemon(args.sysfs or None, args.debugfs or None, args.simulate)


if __name__ == "__main__":
    sys.exit(main())
