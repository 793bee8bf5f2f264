"""damo 3.4.3 reads pydamon's record files and pydamon reads damo's.

Needs the ``damo`` tool (``.venv/bin/damo`` from PyPI) and the ``file``
command damo uses to sniff formats; skipped without them.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pydamon.records import (
    JSON,
    JSON_COMPRESSED,
    PERF_SCRIPT,
    Intervals,
    RecordWriter,
    Snapshot,
    read_records,
)
from pydamon.reports.wss import wss_series

pytestmark = pytest.mark.damo


def _damo() -> str:
    local = Path(sys.executable).parent / "damo"
    found = str(local) if local.exists() else shutil.which("damo")
    if not found:
        pytest.skip("damo is not installed (pip install damo==3.4.3)")
    if not shutil.which("file"):
        pytest.skip("the 'file' command (which damo needs to read records) is missing")
    return found


def run_damo(tmp_path, *args) -> subprocess.CompletedProcess:
    env = dict(os.environ, HOME=str(tmp_path))  # damo caches sysinfo in $HOME
    return subprocess.run([_damo(), *args], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)


def make_record(path, fmt, nr=30):
    iv = Intervals(5_000, 100_000, 1_000_000)
    base = 0x7F0000000000
    with RecordWriter(path, fmt, iv) as w:
        for i in range(nr):
            hot = 10 + i % 10
            w.add_snapshot(0, Snapshot(
                i * 100_000_000, (i + 1) * 100_000_000,
                np.array([base, base + (16 << 20), base + (32 << 20)]),
                np.array([base + (16 << 20), base + (32 << 20), base + (256 << 20)]),
                np.array([0, hot, 0]), np.array([i, 1, i])))


@pytest.mark.parametrize("fmt", [JSON_COMPRESSED, PERF_SCRIPT])
def test_damo_reports_read_pydamon_records(tmp_path, fmt):
    path = tmp_path / f"pydamon.{fmt}"
    make_record(path, fmt)
    wss = run_damo(tmp_path, "report", "wss", "-i", str(path), "--exclude_samples", "0",
                   "--raw_number")
    assert wss.returncode == 0, wss.stderr
    # every snapshot has 16 MiB accessed
    values = [int(m) for m in re.findall(r"^\s*\d+\s+(\d+)\s", wss.stdout, re.M)]
    assert values and all(v == 16 << 20 for v in values), wss.stdout
    hm = run_damo(tmp_path, "report", "heatmap", "-i", str(path))
    assert hm.returncode == 0, hm.stderr
    assert len(hm.stdout.splitlines()) >= 10
    if fmt == JSON_COMPRESSED:
        # perf_script carries no intervals, which damo's access report needs (as for
        # damo's own perf_script records)
        acc = run_damo(tmp_path, "report", "access", "-i", str(path))
        assert acc.returncode == 0, acc.stderr
        assert "16.000 MiB" in acc.stdout


def test_damo_heatmap_png_of_pydamon_record_needs_only_the_file(tmp_path):
    path = tmp_path / "damon.data"
    make_record(path, JSON_COMPRESSED)
    # damo's --output draws with gnuplot; without it, the text map must still work
    res = run_damo(tmp_path, "report", "heatmap", "-i", str(path), "--resol", "10", "20")
    assert res.returncode == 0, res.stderr
    rows = [line for line in res.stdout.splitlines() if not line.startswith("#")]
    assert len(rows) == 10


@pytest.mark.parametrize("fmt", [JSON_COMPRESSED, JSON, PERF_SCRIPT])
def test_pydamon_reads_damo_written_records(tmp_path, fmt):
    src = tmp_path / "src.txt"
    make_record(src, PERF_SCRIPT, nr=12)
    out = tmp_path / f"damo.{fmt}"
    res = run_damo(tmp_path, "convert_record_format", "--record_file", str(src),
                   "--format", fmt, "--output_file", str(out))
    assert res.returncode == 0, res.stderr
    [mine] = read_records(src)
    [theirs] = read_records(out)
    assert len(theirs.snapshots) == 12
    for a, b in zip(mine.snapshots, theirs.snapshots, strict=True):
        assert list(a.rows()) == list(b.rows())
        assert a.end_ns == b.end_ns
    assert list(wss_series(theirs)) == [16 << 20] * 12


def test_pydamon_record_file_for_damo_end_to_end(tmp_path):
    from pydamon.cli.main import main

    out = tmp_path / "sim.data"
    assert main(["record", "--sim", "hotcold", "--timeout", "3s", "-o", str(out), "-q",
                 "--seed", "1"]) == 0
    res = run_damo(tmp_path, "report", "wss", "-i", str(out), "--exclude_samples", "0")
    assert res.returncode == 0, res.stderr
    assert "# avr:" in res.stdout
