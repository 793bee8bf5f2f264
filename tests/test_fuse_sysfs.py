"""The sysfs tree through a real FUSE mount, and the daemon's mount handling.

Needs root and /dev/fuse (skipped otherwise; CI has both). Mounts go under
pytest's temporary directory, never under /sys.
"""

from __future__ import annotations

import errno
import os
import queue
import signal
import stat
import subprocess
import sys
import threading
import time

import pytest

from pydamon.daemon import (
    Daemon,
    DaemonError,
    MountInfo,
    containing_mount,
    prepare_mount_point,
    read_mounts,
    run_daemon,
)
from pydamon.interfaces.sysfs import build_sysfs_tree
from pydamon.interfaces.tree import Dir, File, StreamFile, StreamReader, Tree
from sysfs_fakeops import fake_factory

needs_fuse = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/dev/fuse"), reason="needs root and /dev/fuse")


def write(path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def read(path) -> str:
    with open(path) as f:
        return f.read()


def write_errno(path, text: str) -> int:
    with pytest.raises(OSError) as info:
        write(path, text)
    return info.value.errno


def fuse_mounted(path) -> bool:
    path = os.path.abspath(path)
    return any(m.mount_point == path and m.fstype.startswith("fuse") for m in read_mounts())


@pytest.fixture
def mounted(tmp_path):
    tree = build_sysfs_tree(fake_factory, ["vaddr", "fvaddr", "paddr"])
    mnt = tmp_path / "admin"
    daemon = Daemon(str(mnt), None, False, sysfs_tree=tree)
    daemon.start()
    try:
        yield mnt, tree
    finally:
        daemon.shutdown()
        assert not fuse_mounted(mnt)


@needs_fuse
@pytest.mark.fuse
def test_files_read_and_write_through_the_mount(mounted):
    mnt, _tree = mounted
    k = mnt / "kdamonds"
    assert read(k / "nr_kdamonds") == "0\n"
    write(k / "nr_kdamonds", "1")
    assert sorted(os.listdir(k)) == ["0", "nr_kdamonds"]
    st = os.stat(k / "0" / "state")
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_size == 4096
    assert stat.S_IMODE(os.stat(k / "0" / "pid").st_mode) == 0o400
    assert stat.S_ISDIR(os.stat(k / "0" / "contexts").st_mode)
    write(k / "0" / "contexts" / "nr_contexts", "1")
    ctx = k / "0" / "contexts" / "0"
    assert read(ctx / "avail_operations") == "vaddr\nfvaddr\npaddr\n"
    sample = ctx / "monitoring_attrs" / "intervals" / "sample_us"
    write(sample, "0x2000\n")
    assert read(sample) == "8192\n"
    # errors reach the writer with the kernel's errno
    assert write_errno(sample, "18446744073709551616") == errno.ERANGE
    assert write_errno(sample, "abc") == errno.EINVAL
    assert write_errno(k / "0" / "state", "bogus") == errno.EINVAL
    with pytest.raises(PermissionError):
        os.open(k / "0" / "pid", os.O_WRONLY)
    with pytest.raises(FileNotFoundError):
        os.stat(k / "1")
    assert read(sample) == "8192\n"


@needs_fuse
@pytest.mark.fuse
def test_removed_directories_vanish_at_once(mounted):
    mnt, _tree = mounted
    k = mnt / "kdamonds"
    write(k / "nr_kdamonds", "1")
    write(k / "0" / "contexts" / "nr_contexts", "1")
    targets = k / "0" / "contexts" / "0" / "targets"
    write(targets / "nr_targets", "3")
    write(targets / "2" / "regions" / "nr_regions", "2")
    # warm the kernel's caches with every path, then shrink
    assert os.path.isfile(targets / "2" / "regions" / "1" / "end")
    assert os.path.isdir(targets / "2")
    write(targets / "nr_targets", "1")
    assert not os.path.isdir(targets / "2")
    assert not os.path.exists(targets / "2" / "regions" / "1" / "end")
    assert sorted(os.listdir(targets)) == ["0", "nr_targets"]
    write(targets / "nr_targets", "3")
    assert os.path.isdir(targets / "2")
    assert os.listdir(targets / "2" / "regions") == ["nr_regions"]  # fresh, with defaults
    # the whole kdamond goes
    write(k / "nr_kdamonds", "0")
    assert not os.path.exists(targets)
    assert os.listdir(k) == ["nr_kdamonds"]


@needs_fuse
@pytest.mark.fuse
def test_guide_examples_typed_in_a_shell(mounted):
    mnt, tree = mounted
    child = subprocess.Popen(["sleep", "60"])
    try:
        script = f"""
set -e
cd {mnt}
echo 1 > kdamonds/nr_kdamonds && echo 1 > kdamonds/0/contexts/nr_contexts
echo vaddr > kdamonds/0/contexts/0/operations
echo 1 > kdamonds/0/contexts/0/targets/nr_targets
echo {child.pid} > kdamonds/0/contexts/0/targets/0/pid_target
echo on > kdamonds/0/state
cat kdamonds/0/state
echo 1 > kdamonds/0/contexts/0/schemes/nr_schemes
cd kdamonds/0/contexts/0/schemes/0
echo 4096 > access_pattern/sz/min
echo 8192 > access_pattern/sz/max
echo 0 > access_pattern/nr_accesses/min
echo 5 > access_pattern/nr_accesses/max
echo 10 > access_pattern/age/min
echo 20 > access_pattern/age/max
echo pageout > action
echo 10 > quotas/ms
echo $((1024*1024*1024)) > quotas/bytes
echo 1000 > quotas/reset_interval_ms
echo free_mem_rate > watermarks/metric
echo 5000000 > watermarks/interval_us
echo 600 > watermarks/high
echo 500 > watermarks/mid
echo 300 > watermarks/low
echo commit > ../../../../state
cat action quotas/bytes watermarks/mid
"""
        out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert out.stdout == "on\npageout\n1073741824\n500\n"
        kdamond = tree.model.kdamond_dirs()[0].kdamond
        assert kdamond.running and kdamond.ctx.targets[0].pid == child.pid
        scheme = kdamond.ctx.schemes[0]
        assert scheme.action.value == "pageout" and scheme.quota.sz == 1 << 30
        assert scheme.wmarks.metric.value == "free_mem_rate"
        assert int(read(mnt / "kdamonds/0/pid")) > 0
        err = subprocess.run(["bash", "-c", f"echo bogus > {mnt}/kdamonds/0/state"],
                             capture_output=True, text=True)
        assert err.returncode != 0 and "Invalid argument" in err.stderr
    finally:
        child.kill()
        child.wait()


class _QueueReader(StreamReader):
    def __init__(self, q: queue.Queue[bytes]):
        self.q = q

    def read(self, size: int, timeout: float) -> bytes:
        try:
            return self.q.get(timeout=timeout)[:size]
        except queue.Empty:
            return b""


@needs_fuse
@pytest.mark.fuse
def test_blocking_stream_file_does_not_stall_other_requests(tmp_path):
    data: queue.Queue[bytes] = queue.Queue()
    value = {"x": "1\n"}
    tree = Tree(Dir({
        "trace_pipe": StreamFile(lambda: _QueueReader(data)),
        "attr": File(read=lambda: value["x"], write=lambda s: value.update(x=s)),
    }))
    mnt = tmp_path / "stream"
    daemon = Daemon(None, str(mnt), False, debugfs_tree=tree)
    daemon.start()
    try:
        got: list[bytes] = []

        def reader() -> None:
            with open(mnt / "trace_pipe", "rb", buffering=0) as f:
                got.append(f.read(4096))

        t = threading.Thread(target=reader)
        t.start()
        time.sleep(0.3)
        assert t.is_alive()  # blocked: nothing to read yet
        t0 = time.monotonic()
        assert read(mnt / "attr") == "1\n"  # other requests go on
        write(mnt / "attr", "2\n")
        assert read(mnt / "attr") == "2\n"
        assert time.monotonic() - t0 < 1.0
        data.put(b"line\n")
        t.join(5)
        assert got == [b"line\n"]
    finally:
        daemon.shutdown()
    assert not fuse_mounted(mnt)


@needs_fuse
@pytest.mark.fuse
@pytest.mark.slow
def test_daemon_command_stops_cleanly_and_cleans_stale_mounts(tmp_path):
    mnt = tmp_path / "admin"
    cmd = [sys.executable, "-m", "pydamon.daemon", "--sysfs", str(mnt), "--debugfs", "",
           "--simulate"]

    logs: list = []
    procs: list[subprocess.Popen] = []

    def start() -> subprocess.Popen:
        log_path = tmp_path / f"daemon{len(logs)}.log"
        logs.append(log_path)
        proc = subprocess.Popen(cmd, stderr=open(log_path, "w"), text=True)
        procs.append(proc)
        deadline = time.monotonic() + 20
        # a dead mount still answers from the kernel's caches: wait for the log
        while "ready;" not in log_path.read_text():
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        return proc

    child = subprocess.Popen(["sleep", "60"])
    try:
        proc = start()
        # a running simulated kdamond, then SIGTERM: stopped and unmounted
        k = mnt / "kdamonds"
        write(k / "nr_kdamonds", "1")
        write(k / "0/contexts/nr_contexts", "1")
        write(k / "0/contexts/0/targets/nr_targets", "1")
        write(k / "0/contexts/0/targets/0/pid_target", str(child.pid))
        write(k / "0/state", "on")
        assert read(k / "0/state") == "on\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        log = logs[-1].read_text()
        assert "kdamonds/0/state: on" in log and "unmounted" in log
        assert not fuse_mounted(mnt)

        # a crash leaves a dead mount; the next start cleans it
        proc = start()
        proc.kill()
        proc.wait()
        with pytest.raises(OSError) as info:
            os.listdir(mnt / "kdamonds")
        assert info.value.errno == errno.ENOTCONN
        proc = start()
        assert read(mnt / "kdamonds/nr_kdamonds") == "0\n"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0
        assert "dead FUSE mount" in logs[-1].read_text()
        assert not fuse_mounted(mnt)
    finally:
        child.kill()
        child.wait()
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        if fuse_mounted(mnt):
            subprocess.run(["umount", "-l", str(mnt)])


def test_refuses_real_kernel_filesystems(tmp_path):
    mounts = [MountInfo("/", "ext4", "/dev/root"), MountInfo("/sys", "sysfs", "sysfs"),
              MountInfo("/sys/kernel/debug", "debugfs", "debugfs"),
              MountInfo("/sys/kernel/mm/damon", "tmpfs", "damon-shield")]
    assert containing_mount("/sys/kernel/mm/damon/admin", mounts).fstype == "tmpfs"
    assert containing_mount("/sys/kernel/mm", mounts).fstype == "sysfs"
    assert containing_mount("/sys/kernel/debug/damon", mounts).fstype == "debugfs"
    for path in ("/sys/kernel/mm/damon-nope", "/sys/kernel/debug/damon", "/sys"):
        with pytest.raises(DaemonError, match="real kernel"):
            prepare_mount_point(path, lambda: mounts)
    # the shield of damon-sandbox is fine: a directory on a tmpfs
    ok = tmp_path / "ok"
    assert prepare_mount_point(str(ok), lambda: [MountInfo("/", "ext4", "x")]) == str(ok)
    assert ok.is_dir()
    (ok / "file").write_text("x")
    with pytest.raises(DaemonError, match="not empty"):
        prepare_mount_point(str(ok), lambda: [MountInfo("/", "ext4", "x")])


def test_refuses_to_run_without_root(monkeypatch, caplog):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert run_daemon("/nonexistent/x", None, False) == 1
    assert "root" in caplog.text


@needs_fuse
@pytest.mark.fuse
def test_daemon_serves_debugfs_and_trace_pipe_next_to_sysfs(tmp_path):
    pytest.importorskip("pydamon.interfaces.debugfs")
    daemon = Daemon(str(tmp_path / "sys"), str(tmp_path / "dbg"), True)
    daemon.start()
    child = subprocess.Popen(["sleep", "60"])
    try:
        dbg = tmp_path / "dbg"
        assert {"damon", "tracing"} <= set(os.listdir(dbg))
        assert read(dbg / "damon" / "attrs") == "5000 100000 60000000 10 1000\n"
        k = tmp_path / "sys" / "kdamonds"
        write(k / "nr_kdamonds", "1")
        write(k / "0/contexts/nr_contexts", "1")
        write(k / "0/contexts/0/targets/nr_targets", "1")
        write(k / "0/contexts/0/targets/0/pid_target", str(child.pid))
        write(k / "0/state", "on")
        # the sysfs kdamond's damon_aggregated events stream out of trace_pipe
        with open(dbg / "tracing" / "trace_pipe", "rb", buffering=0) as f:
            line = f.read(4096).split(b"\n")[0].decode()
        assert "damon_aggregated: target_id=0 nr_regions=" in line
        # debugfs and sysfs exclude each other, as in the kernel
        write(dbg / "damon" / "target_ids", str(child.pid))
        monitor_on = "monitor_on_DEPRECATED" if (dbg / "damon" / "monitor_on_DEPRECATED").exists() \
            else "monitor_on"
        assert write_errno(dbg / "damon" / monitor_on, "on") == errno.EBUSY
    finally:
        child.kill()
        child.wait()
        daemon.shutdown()
    assert not fuse_mounted(tmp_path / "sys") and not fuse_mounted(tmp_path / "dbg")
