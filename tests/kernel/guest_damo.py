"""Unmodified damo drives pydamon monitoring a real process (run inside the guest).

The daemon runs with the real operations sets (vaddr on idle page tracking,
not the simulation) and serves its sysfs tree at /sys/kernel/mm/damon/admin
inside damon-sandbox, so the guest kernel's own DAMON tree stays hidden and
untouched. damo starts monitoring a workload whose hot range is known, and
its access report must show that range hot and the rest of the buffer cold.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from kernel_helpers import start_workload

from shared_tools import DAMO_REGION_LINE, SANDBOX

DAMO = Path(sys.executable).parent / "damo"
MIB = 1 << 20

# $1: results directory, $2: the workload's pid. Each damo command's exit
# status goes to $1/<name>.rc and its output to $1/<name>.out. Intervals are
# 10x the kernel's defaults: the guest's CPU is emulated.
SCENARIO = r"""
set -u
out=$1
pid=$2
admin=/sys/kernel/mm/damon/admin
"$PY" -m pydamon.daemon --sysfs $admin --debugfs '' 2> "$out/daemon.log" &
daemon=$!
for i in $(seq 1200); do [ -e $admin/kdamonds/nr_kdamonds ] && break; sleep 0.1; done
# never let damo near anything but our mount
fstype=$(findmnt -n -o FSTYPE --target $admin | tail -n 1)
if [ "$fstype" != fuse.pydamon ]; then
    echo "not our mount: $fstype" > "$out/guard"; kill $daemon; exit 3
fi
run() {
    name=$1; shift
    "$DAMO" "$@" > "$out/$name.out" 2>&1
    echo $? > "$out/$name.rc"
}
run start start $pid --monitoring_intervals 50ms 1s 10s --monitoring_nr_regions_range 20 100
sleep 20
run report report access --raw_number
run stop stop
kill -TERM $daemon
wait $daemon
echo $? > "$out/daemon.rc"
"""


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    if not os.path.exists("/dev/fuse"):
        return "needs /dev/fuse"
    if not SANDBOX.exists():
        return f"needs {SANDBOX}"
    if not DAMO.exists():
        return "needs damo in the venv"
    if not shutil.which("findmnt"):
        return "needs findmnt"
    return None


def test_damo_finds_the_hot_range_of_a_real_process(real_kernel, tmp_path):
    reason = _missing()
    if reason:
        pytest.skip(reason)
    w = start_workload(256, 128, 32, thp=False)
    try:
        env = dict(os.environ, PY=sys.executable, DAMO=str(DAMO))
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
        proc = subprocess.run([str(SANDBOX), "--", "bash", "-c", SCENARIO, "scenario",
                               str(tmp_path), str(w.pid)],
                              env=env, capture_output=True, text=True, timeout=600)
    finally:
        w.proc.kill()
        w.proc.wait()
    log = (tmp_path / "daemon.log").read_text() if (tmp_path / "daemon.log").exists() else ""
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}\n{log}"
    for name in ("start", "report", "stop"):
        rc = int((tmp_path / f"{name}.rc").read_text())
        out = (tmp_path / f"{name}.out").read_text()
        assert rc == 0, f"damo {name} failed ({rc}):\n{out}\n--- daemon log:\n{log}"
    assert int((tmp_path / "daemon.rc").read_text()) == 0, log

    report = (tmp_path / "report.out").read_text()
    regions = [(int(m.group(1)), int(m.group(2)), float(m.group(3)))
               for line in report.splitlines()
               if (m := DAMO_REGION_LINE.match(line.strip()))]
    assert regions, report

    def overlap(a: int, b: int, lo: int, hi: int) -> int:
        return max(0, min(b, hi) - max(a, lo))

    # within the buffer: the hot range reads accessed, the cold rest does not
    lo, hi = w.addr, w.addr + w.size
    hot_seen = sum(overlap(a, a + n, w.hot_start, w.hot_end) for a, n, acc in regions if acc > 0)
    cold_seen = sum(overlap(a, a + n, lo, hi) - overlap(a, a + n, w.hot_start, w.hot_end)
                    for a, n, acc in regions if acc > 0)
    hot_size = w.hot_end - w.hot_start
    print(f"damo report access: {hot_seen / MIB:.1f} of the {hot_size / MIB:.0f} MiB hot range "
          f"accessed, {cold_seen / MIB:.1f} MiB of the cold rest; {len(regions)} regions")
    assert hot_seen >= hot_size * 3 // 4, (hot_seen / MIB, report)
    assert cold_seen <= (w.size - hot_size) // 10, (cold_seen / MIB, report)
