"""start / status / tune / stop against a real FUSE mount of ``pydamon daemon --simulate``.

Needs root, /dev/fuse and mfusepy; skipped otherwise.
"""

import importlib.util
import os
import subprocess
import sys
import time

import pytest

pytestmark = [pytest.mark.fuse, pytest.mark.slow]


def _need_fuse():
    if os.geteuid() != 0:
        pytest.skip("FUSE mounts need root")
    if not os.path.exists("/dev/fuse"):
        pytest.skip("no /dev/fuse")
    if importlib.util.find_spec("mfusepy") is None:
        pytest.skip("mfusepy is not installed")


def cli(*argv):
    return subprocess.run([sys.executable, "-m", "pydamon.cli.main", *argv],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def daemon_dir(tmp_path):
    _need_fuse()
    mnt = tmp_path / "sysfs"
    mnt.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "pydamon.cli.main", "daemon", "--sysfs",
                             str(mnt), "--debugfs", "", "--simulate"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 20
    while not (mnt / "kdamonds").is_dir():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out = proc.communicate()[0]
            pytest.skip(f"the daemon did not mount: {out[-300:]}")
        time.sleep(0.1)
    yield mnt
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_control_commands_through_fuse(daemon_dir):
    target = subprocess.Popen(["sleep", "60"])
    try:
        d = str(daemon_dir)
        r = cli("start", "--sysfs", d, str(target.pid), "--damos_action", "stat",
                "-a", "50ms", "-s", "5ms")
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith("kdamond 0 started (pid ")
        time.sleep(0.5)
        r = cli("status", "--sysfs", d)
        assert r.returncode == 0, r.stderr
        assert "state on" in r.stdout and f"target 0: pid {target.pid}" in r.stdout
        assert "aggr 50000 us" in r.stdout and "scheme 0: action stat" in r.stdout
        r = cli("start", "--sysfs", d, str(target.pid))
        assert r.returncode == 1 and "already running" in r.stderr
        r = cli("tune", "--sysfs", d, str(target.pid), "-a", "200ms")
        assert r.returncode == 0, r.stderr
        assert "aggr 200000 us" in cli("report", "damon", "--sysfs", d).stdout
        r = cli("tune", "--sysfs", d, str(target.pid), "-s", "1s", "-a", "2s", "-n", "2")
        assert r.returncode == 2 and "below 3" in r.stderr
        r = cli("stop", "--sysfs", d)
        assert r.returncode == 0 and "stopped kdamond 0" in r.stdout
        assert "state off" in cli("status", "--sysfs", d).stdout
    finally:
        target.kill()
        target.wait()
