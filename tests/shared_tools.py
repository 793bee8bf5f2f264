"""Where the workplace's shared tools are (``<repo>/../shared``), and a guest runner.

CI clones the repository next to a copy of ``shared/``, so every path is
taken relative to the checkout, never from an absolute location.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
GUEST = SHARED / "guest" / "run-in-guest"
SANDBOX = SHARED / "tools" / "damon-sandbox"

#: one region of ``damo report access --raw_number``: address, size, accesses
DAMO_REGION_LINE = re.compile(r"^\d+\s+addr (\d+)\s+size (\d+)\s+access ([\d.]+)\s+age")
DAMO = Path(sys.executable).parent / "damo"

#: the start of every damo scenario, run only inside damon-sandbox (its
#: /sys/kernel/mm/damon is a private tmpfs): the daemon, started with
#: $DAEMON_ARGS, serves its sysfs tree where damo looks; the scenario stops
#: unless that place is the sandbox's tmpfs before and our mount after. $1 is
#: the results directory; ``run NAME ARGS...`` runs damo, its output to
#: $1/NAME.out, its status to $1/NAME.rc.
DAMO_SCENARIO_START = r"""
set -u
out=$1
cd "$out"
admin=/sys/kernel/mm/damon/admin
# refuse before anything starts unless this is damon-sandbox's empty tmpfs
shield=$(findmnt -n -o FSTYPE --target $admin | tail -n 1)
if [ "$shield" != tmpfs ] || [ -e $admin/kdamonds ]; then
    echo "not in damon-sandbox: $admin is on $shield" > "$out/guard"; exit 3
fi
"$PY" -m pydamon.daemon $DAEMON_ARGS --sysfs $admin --debugfs '' 2> "$out/daemon.log" &
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
"""


def damo_missing(*tools: str) -> str | None:
    """Why a damo scenario cannot run here (it also needs ``tools`` on PATH), or None."""
    if os.geteuid() != 0:
        return "needs root"
    if not os.path.exists("/dev/fuse"):
        return "needs /dev/fuse"
    if not SANDBOX.exists():
        return f"needs {SANDBOX}"
    if not DAMO.exists():
        return "needs damo in the venv"
    for tool in ("findmnt", *tools):
        if not shutil.which(tool):
            return f"needs {tool} on PATH"
    return None


def run_damo_scenario(body: str, out_dir: Path, *args: str, daemon_args: str,
                      timeout: float) -> subprocess.CompletedProcess:
    """:data:`DAMO_SCENARIO_START` then ``body``, in damon-sandbox, with results
    in ``out_dir`` ($1) and ``args`` after it."""
    env = dict(os.environ, PY=sys.executable, DAMO=str(DAMO), DAEMON_ARGS=daemon_args)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return subprocess.run([str(SANDBOX), "--", "bash", "-c", DAMO_SCENARIO_START + body,
                           "scenario", str(out_dir), *args],
                          env=env, capture_output=True, text=True, timeout=timeout)

#: run-in-guest's status when the guest itself failed (boot failure, kernel panic)
GUEST_FAILED = 125


def run_in_guest(args: list[str], *, timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """``run-in-guest ARGS``, booted once more if the guest itself failed.

    Under TCG the emulated kernel rarely panics while booting (seen once:
    enqueue_timer during early boot); that says nothing about the code under
    test, so one more boot is tried before the result counts.
    """
    for _ in range(2):
        result = subprocess.run(["bash", str(GUEST), *args], capture_output=True, text=True,
                                timeout=timeout, **kwargs)
        if result.returncode != GUEST_FAILED:
            break
    return result
