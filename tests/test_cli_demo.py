"""``pydamon demo`` end to end: on this machine, in under a minute, leaving its files."""

import os
import subprocess
import sys
import time

import pytest

from pydamon.cli.demo import PAGE_IDLE, choose_mode
from pydamon.records import read_records


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "pydamon.cli.main", "demo"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - t0
    assert res.returncode == 0, res.stderr
    assert elapsed < 60, f"demo took {elapsed:.1f} s"
    out = res.stdout
    mode, why = choose_mode(False)
    if mode == "sim":
        assert "simulated workload 'hotcold'" in out and why in out
        # the simulator's ground truth is compared with what DAMON found
        line = [t for t in out.splitlines() if "hot set found" in t][0]
        assert "ground truth" in line
        pct = [int(w.rstrip("%")) for w in line.replace(",", " ").split() if w.endswith("%")]
        assert pct and pct[0] >= 80, line  # most of the true hot bytes were found
    else:
        assert "real child process" in out
    assert "scheme 0 (pageout)" in out
    [rec] = read_records(tmp_path / "damon.data")
    assert len(rec.snapshots) > 20
    png = tmp_path / "damon.png"
    assert png.stat().st_size > 5000
    plt = pytest.importorskip("matplotlib.pyplot")
    img = plt.imread(png)[..., :3]
    assert (img.min(axis=2) > 0.7).sum() > 500  # a bright hot band, not an all-black map


def test_mode_choice_explains_itself(monkeypatch):
    assert choose_mode(True) == ("sim", "you asked for the simulation (--sim)")
    if not os.path.exists(PAGE_IDLE):
        mode, why = choose_mode(False)
        assert mode == "sim" and "CONFIG_IDLE_PAGE_TRACKING" in why
    monkeypatch.setattr(os.path, "exists", lambda p: True)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    mode, why = choose_mode(False)
    assert mode == "sim" and "needs root" in why
