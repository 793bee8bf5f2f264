"""Unmodified damo drives pydamon monitoring a real process (run inside the guest).

The daemon runs with the real operations sets (vaddr on idle page tracking,
not the simulation) and serves its sysfs tree at /sys/kernel/mm/damon/admin
inside damon-sandbox, so the guest kernel's own DAMON tree stays hidden and
untouched. damo starts monitoring a workload whose hot range is known, and
its access report must show that range hot and the rest of the buffer cold.
"""

from __future__ import annotations

import pytest
from kernel_helpers import start_workload

from shared_tools import DAMO_REGION_LINE, damo_missing, run_damo_scenario

MIB = 1 << 20

# After DAMO_SCENARIO_START (the daemon, on the real operations sets); $2:
# the workload's pid. Intervals are 10x the kernel's defaults: the guest's
# CPU is emulated.
SCENARIO = r"""
pid=$2
run start start $pid --monitoring_intervals 50ms 1s 10s --monitoring_nr_regions_range 20 100
sleep 20
run report report access --raw_number
run stop stop
kill -TERM $daemon
wait $daemon
echo $? > "$out/daemon.rc"
"""


def test_damo_finds_the_hot_range_of_a_real_process(real_kernel, tmp_path):
    reason = damo_missing()
    if reason:
        pytest.skip(reason)
    w = start_workload(256, 128, 32, thp=False)
    try:
        proc = run_damo_scenario(SCENARIO, tmp_path, str(w.pid), daemon_args="", timeout=600)
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
