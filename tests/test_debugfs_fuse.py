"""The usage guide's debugfs commands, typed as written in a shell, on a FUSE mount.

Needs root and /dev/fuse (skipped otherwise; CI has both). The mount goes
under pytest's temporary directory; the kdamonds run on simulated processes.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from pydamon.core import nr_running_kdamonds
from pydamon.daemon import Daemon
from pydamon.interfaces.debugfs import build_debugfs_tree
from pydamon.interfaces.trace import TraceHub, build_trace_dir

sim = pytest.importorskip("pydamon.ops.sim", reason="the sim operations set is not available")

pytestmark = [
    pytest.mark.fuse,
    pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/dev/fuse"),
                       reason="needs root and /dev/fuse"),
]


@pytest.fixture
def mount(tmp_path):
    world = sim.SimWorld(seed=0)
    world.spawn(sim.builtin_workload("hotcold"), pid=42)
    world.spawn(sim.builtin_workload("zipf"), pid=4242)
    hub = TraceHub()
    tree = build_debugfs_tree(lambda name: sim.SimOps(world, mode=name), trace_hub=hub)
    tree.root.entries["tracing"] = build_trace_dir(hub)
    mnt = tmp_path / "debugfs"
    daemon = Daemon(None, str(mnt), True, debugfs_tree=tree)
    daemon.start()
    try:
        yield mnt
    finally:
        daemon.shutdown()
    assert nr_running_kdamonds() == 0


def sh(mnt, script: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", f"cd {mnt}/damon\n{script}"], capture_output=True,
                          text=True, timeout=60)


def test_guide_commands_in_a_shell(mount):
    out = sh(mount, """
        echo 5000 100000 1000000 10 1000 > attrs
        cat attrs
        echo 42 4242 > target_ids
        cat target_ids
        cat > init_regions <<'END'
0 1 100
0 100 200
1 20 40
1 50 100
END
        cat init_regions
        scheme="4096 8192 0 5 10 20 2"  # target access pattern and action
        scheme+=" 10 $((1024*1024*1024)) 1000"  # quotas
        scheme+=" 0 0 100"  # prioritization weights
        scheme+=" 1 5000000 600 500 300"  # watermarks
        echo "$scheme" > schemes
        cat schemes
        echo paddr > target_ids
        cat target_ids
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout == (
        "5000 100000 1000000 10 1000\n"
        "42 4242\n"
        "0 1 100\n0 100 200\n1 20 40\n1 50 100\n"
        "4096 8192 0 5 10 20 2 10 1073741824 1000 0 0 100 1 5000000 600 500 300 0 0 0 0 0\n"
        "42\n")


def test_echo_of_several_lines_is_several_writes(mount):
    """bash's echo writes line by line, which debugfs takes only as one write per open.

    The guide's multi-line ``echo ... > init_regions`` (which fails on the
    6.12 kernel) sets every region here; other files still refuse a
    continued write, as the kernel's do.
    """
    out = sh(mount, """
        echo 42 4242 > target_ids
        echo "0 1 100
0 100 200
1 20 40
1 50 100" > init_regions
        cat init_regions
        echo "1 2 3 4 5
6" > attrs
        cat attrs
    """)
    assert out.stdout == "0 1 100\n0 100 200\n1 20 40\n1 50 100\n1 2 3 4 5\n"
    assert out.stderr.count("Invalid argument") == 1


def test_guide_on_off_pid_and_contexts_in_a_shell(mount):
    out = sh(mount, """
        echo 42 > target_ids
        cat monitor_on
        cat kdamond_pid
        echo on > monitor_on
        cat monitor_on
        cat kdamond_pid
        echo off > monitor_on
        cat monitor_on
        cat kdamond_pid
        ls foo 2>&1
        echo foo > mk_contexts
        ls foo
        echo foo > rm_contexts
        ls foo 2>&1
        echo on > monitor_on
    """)
    lines = out.stdout.splitlines()
    assert lines[:3] == ["off", "none", "on"]
    assert lines[3].isdigit()
    assert lines[4:6] == ["off", "none"]
    assert "No such file or directory" in lines[6]
    assert lines[7:12] == ["attrs", "init_regions", "kdamond_pid", "schemes", "target_ids"]
    assert "No such file or directory" in lines[12]
    # the targets went away with the stop, so the last "on" is EINVAL
    assert "Invalid argument" in out.stderr


def test_errors_reach_the_shell(mount):
    out = sh(mount, """
        echo 42 > target_ids
        echo on > monitor_on
        echo 1 2 3 4 5 > attrs || echo busy
        echo off > monitor_on
        echo off > monitor_on || echo notrunning
        echo 99999 > target_ids || echo nopid
        echo bar > rm_contexts || echo nocontext
        cat mk_contexts || echo noread
    """)
    assert out.stdout.split() == ["busy", "notrunning", "nopid", "nocontext", "noread"]
    assert "Device or resource busy" in out.stderr
    assert "Operation not permitted" in out.stderr
    assert "No such file or directory" in out.stderr


def test_trace_pipe_through_the_mount(mount):
    out = sh(mount, """
        echo 1000 10000 1000000 10 1000 > attrs
        echo 42 > target_ids
        echo on > monitor_on
        timeout 20 head -n 20 ../tracing/trace_pipe
        echo off > monitor_on
    """)
    lines = out.stdout.splitlines()
    assert len(lines) == 20, out.stderr
    assert all(" damon_aggregated: target_id=0 nr_regions=" in line for line in lines)
    assert lines[0].lstrip().startswith("kdamond.0-")


def test_a_long_write_is_taken_whole(mount):
    """debugfs takes a write() of any size at once (sysfs stops at a page)."""
    line = "0 18446744073709551615 0 4294967295 0 4294967295 5 0 0 0 0 0 0 0 0 0 0 0\n"
    text = (line * 256).encode()
    assert len(text) > 4 * 4096
    fd = os.open(mount / "damon" / "schemes", os.O_WRONLY | os.O_TRUNC)
    try:
        assert os.write(fd, text) == len(text)
    finally:
        os.close(fd)
    with open(mount / "damon" / "schemes") as f:
        assert len(f.read().splitlines()) == 256
