"""The debugfs model against the real kernel's debugfs files, step by step.

The same scenario (reads, writes, contexts, on/off, errors) runs on the
guest kernel's ``/sys/kernel/debug/damon`` (6.12) and on the model, inside
the guest; every step must give the same text or errno, except the
deviations the model documents (listed in :data:`DEVIATIONS`).

Run as a script (``python tests/test_debugfs_kernel.py``) it plays the
scenario and prints the results as JSON; it refuses to run anywhere but in
the guest kernel, so the host's DAMON is never touched.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

GUEST = Path("/work/shared/guest/run-in-guest")
KERNEL_DBGFS = "/sys/kernel/debug/damon"
GUEST_RELEASE_SUFFIX = "-damon-guest"
PID = "{pid}"  # replaced by the pid of a process both sides know
GUIDE_SCHEME = "4096 8192 0 5 10 20 2  10 1073741824 1000  0 0 100  1 5000000 600 500 300\n"
STAT_ALL = "0 100 0 10 0 10 5 0 0 0 0 0 0 0 0 0 0 0\n"
MONITOR_ON = "monitor_on_DEPRECATED"  # the 6.12 name; the model has it too

# (operation, file, data...) ; operations: read, write, write2 (two writes on one open), ls
SCENARIO: list[tuple[str, ...]] = [
    ("read", "attrs"), ("read", "target_ids"), ("read", "init_regions"), ("read", "schemes"),
    ("read", "kdamond_pid"), ("read", MONITOR_ON),
    ("write", "attrs", "5000 100000 1000000 10 1000\n"), ("read", "attrs"),
    ("write", "attrs", "1 2 3 4\n"), ("write", "attrs", "1 2 3 2 100\n"),
    ("write", "attrs", "1 2 3 10 5\n"), ("write", "attrs", "200 100 3 10 20\n"),
    ("write", "attrs", "a b c d e\n"), ("write", "attrs", "1 2 3 4 5 6\n"), ("read", "attrs"),
    ("write2", "attrs", "7 8 9 10 11\n", "12\n"), ("read", "attrs"),
    ("write", "target_ids", PID + "\n"), ("read", "target_ids"),
    ("write", "target_ids", "99999\n"), ("read", "target_ids"),
    ("write", "target_ids", "abc\n"), ("read", "target_ids"),
    ("write", "target_ids", "paddr\n"), ("read", "target_ids"),
    ("write", "target_ids", f"{PID} {PID}\n"), ("read", "target_ids"),
    ("write", "init_regions", "0 4096 8192\n1 8192 12288\n"), ("read", "init_regions"),
    ("write", "init_regions", "0 100 50\n"), ("read", "init_regions"),
    ("write", "init_regions", "0 4096 8192\n2 0 4096\n"), ("read", "init_regions"),
    ("write", "init_regions", "0 4096 8192\n0 6000 9000\n"), ("read", "init_regions"),
    ("write", "init_regions", "1 0 4096 junk 0 0 4096\n"), ("read", "init_regions"),
    ("write", "schemes", GUIDE_SCHEME), ("read", "schemes"),
    ("write", "schemes", STAT_ALL.replace(" 5 ", " 6 ", 1)), ("read", "schemes"),
    ("write", "schemes", "200 100 0 10 0 10 5 0 0 0 0 0 0 0 0 0 0 0\n"),
    ("write", "schemes", "0 100 0 10 0 10 5 0 0 0 0 0 0 1 0 500 600 300\n"),
    ("read", "schemes"),
    ("write", "schemes", STAT_ALL.replace(" 5 ", " -1 ", 1)), ("read", "schemes"),
    ("write", "schemes", STAT_ALL + STAT_ALL + "garbage\n"), ("read", "schemes"),
    ("write", "schemes", "\n"), ("read", "schemes"),
    ("write", "mk_contexts", "foo\n"), ("ls", "foo"), ("read", "foo/attrs"),
    ("write", "foo/attrs", "1000 10000 1000000 10 1000\n"), ("read", "foo/attrs"),
    ("read", "attrs"),
    ("write", "mk_contexts", "foo\n"), ("write", "mk_contexts", "  \n"),
    ("write", "rm_contexts", "bar\n"), ("write", "rm_contexts", "foo\n"), ("ls", "foo"),
    ("write", MONITOR_ON, "off\n"), ("write", MONITOR_ON, "bogus\n"),
    ("write", MONITOR_ON, "on\n"),  # the root context still has its two targets
    ("read", "kdamond_pid"),
    ("write", "target_ids", PID + "\n"), ("write", "init_regions", "\n"),
    ("write", "schemes", STAT_ALL),
    ("write", MONITOR_ON, "on\n"), ("read", MONITOR_ON), ("read", "kdamond_pid"),
    ("write", "attrs", "5000 100000 1000000 10 1000\n"), ("write", "schemes", STAT_ALL),
    ("write", "target_ids", PID + "\n"), ("write", "init_regions", "0 4096 8192\n"),
    ("read", "init_regions"), ("read", "target_ids"), ("read", "attrs"),
    ("write", "mk_contexts", "bar\n"), ("write", "rm_contexts", "foo\n"),
    ("write", MONITOR_ON, "on\n"),
    ("write", MONITOR_ON, "off\n"), ("read", MONITOR_ON), ("read", "kdamond_pid"),
    ("read", "target_ids"), ("read", "init_regions"),
    ("write", MONITOR_ON, "off\n"), ("write", MONITOR_ON, "on\n"),
    ("write", "target_ids", "paddr\n"), ("write", "init_regions", "0 4096 1048576\n"),
    ("read", "init_regions"),
]

#: steps where the model deliberately differs: index -> (kernel result, model result)
DEVIATIONS: dict[tuple[str, ...], tuple[list, list]] = {
    # a missing pid: 6.x says ENOMEM, the guide and the model EINVAL
    ("write", "target_ids", "99999\n"): (["err", "ENOMEM"], ["err", "EINVAL"]),
    # whitespace-only context name: 6.12 EACCES, the 5.x/6.1 code and the model EINVAL
    ("write", "mk_contexts", "  \n"): (["err", "EACCES"], ["err", "EINVAL"]),
}


# -- the guest side -------------------------------------------------------------------


def _kernel_ops(root: str):
    def path(name: str) -> str:
        return os.path.join(root, name)

    def read(name: str) -> str:
        fd = os.open(path(name), os.O_RDONLY)
        try:
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
            return b"".join(chunks).decode()
        finally:
            os.close(fd)

    def write(name: str, *parts: str) -> None:
        fd = os.open(path(name), os.O_WRONLY)
        try:
            for part in parts:  # one write() per part, all on one open file
                os.write(fd, part.encode())
        finally:
            os.close(fd)

    def ls(name: str) -> list[str]:
        return sorted(os.listdir(path(name)))

    return read, write, ls


def _model_ops(pid: int):
    from pydamon.interfaces.debugfs import build_debugfs_tree
    from pydamon.ops.sim import SimOps, SimWorld, builtin_workload

    world = SimWorld(seed=0)
    world.spawn(builtin_workload("hotcold"), pid=pid)
    tree = build_debugfs_tree(lambda name: SimOps(world, mode=name), seed=0)

    def read(name: str) -> str:
        return tree.read("damon/" + name)

    def write(name: str, *parts: str) -> None:
        offset = 0
        for part in parts:
            tree.write("damon/" + name, part, offset)
            offset += len(part)

    def ls(name: str) -> list[str]:
        return sorted(tree.listdir("damon/" + name))

    return (read, write, ls), tree


def _normalize(step: tuple[str, ...], text: str) -> str:
    if step[1].endswith("kdamond_pid") and text.strip().isdigit():
        return "<pid>\n"
    if step[1].endswith("schemes"):  # stats depend on what each side monitored
        return "".join(" ".join(line.split()[:18]) + f" +{len(line.split()) - 18}\n"
                       for line in text.splitlines())
    return text


def play(ops, pid: int) -> list[list]:
    read, write, ls = ops
    results: list[list] = []
    for step in SCENARIO:
        kind, name, *data = (s.replace(PID, str(pid)) for s in step)
        try:
            if kind == "read":
                results.append(["ok", _normalize(step, read(name))])
            elif kind == "ls":
                results.append(["ok", ls(name)])
            else:
                write(name, *data)
                results.append(["ok", None])
        except OSError as e:
            results.append(["err", errno.errorcode.get(e.errno, str(e.errno))])
    return results


def guest_main() -> int:
    if not os.uname().release.endswith(GUEST_RELEASE_SUFFIX) or not os.path.isdir(KERNEL_DBGFS):
        print("refusing to run: not the DAMON guest kernel", file=sys.stderr)
        return 2
    child = subprocess.Popen(["sleep", "600"])
    try:
        kernel = play(_kernel_ops(KERNEL_DBGFS), child.pid)
        model_ops, tree = _model_ops(child.pid)
        try:
            model = play(model_ops, child.pid)
        finally:
            tree.model.shutdown()
    finally:
        child.kill()
        child.wait()
        try:  # leave the guest's DAMON off
            _kernel_ops(KERNEL_DBGFS)[1](MONITOR_ON, "off\n")
        except OSError:
            pass
    print("RESULTS " + json.dumps({"kernel": kernel, "model": model}))
    return 0


# -- the host side ----------------------------------------------------------------------


@pytest.mark.guest
@pytest.mark.slow
def test_model_matches_the_kernel_step_by_step():
    if not GUEST.exists() or not shutil.which("qemu-system-x86_64"):
        pytest.skip("needs the QEMU guest (../shared/guest)")
    pytest.importorskip("pydamon.ops.sim")
    here = Path(__file__).resolve()
    proc = subprocess.run(
        ["bash", str(GUEST), "--timeout", "600", "--", sys.executable, str(here)],
        capture_output=True, text=True, timeout=900, cwd=here.parent.parent)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULTS ")]
    if not lines:
        pytest.fail(f"no results from the guest (rc {proc.returncode}):\n"
                    f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    results = json.loads(lines[-1][len("RESULTS "):])
    kernel, model = results["kernel"], results["model"]
    assert len(kernel) == len(model) == len(SCENARIO)
    mismatches = []
    for i, (step, k, m) in enumerate(zip(SCENARIO, kernel, model, strict=True)):
        expected = DEVIATIONS.get(step)
        if expected is not None:
            if (k, m) != (expected[0], expected[1]):
                mismatches.append((i, step, k, m, "documented deviation changed"))
        elif k != m:
            mismatches.append((i, step, k, m))
    assert not mismatches, "\n".join(repr(x) for x in mismatches)


if __name__ == "__main__":
    sys.exit(guest_main())
