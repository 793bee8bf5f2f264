"""start / tune / stop / status drive a DAMON sysfs tree by file reads and writes.

Run against the in-process sysfs model (simulated operations) through
TreeAdminDir, and against a plain directory of files through RealAdminDir
to check what is written where.
"""

import os

import pytest

from pydamon.cli.admin import (
    AdminError,
    RealAdminDir,
    StageRequest,
    StageTarget,
    TreeAdminDir,
    resolve_admin_root,
    stage,
    start,
    status,
    stop,
    tune,
)
from pydamon.core.attrs import MonitoringAttrs
from pydamon.core.damos import AccessPattern, Action, Quota, Scheme


@pytest.fixture
def sim_tree():
    sysfs = pytest.importorskip("pydamon.interfaces.sysfs")
    from pydamon.ops.sim import SimWorld

    world = SimWorld(seed=1)
    pid = world.spawn("hotcold")
    tree = sysfs.build_sysfs_tree(simulate=True, world=world)
    yield tree, pid
    tree.shutdown()


def request(pid, **attrs) -> StageRequest:
    return StageRequest(
        "vaddr", MonitoringAttrs(**({"sample_us": 1000, "aggr_us": 20_000,
                                     "update_us": 100_000} | attrs)),
        [StageTarget(pid)],
        [Scheme(pattern=AccessPattern(max_nr_accesses=0, min_age_region=5),
                action=Action.PAGEOUT, quota=Quota(sz=1 << 20, reset_interval_ms=1000))])


def test_start_status_tune_stop(sim_tree):
    tree, pid = sim_tree
    adm = TreeAdminDir(tree)
    kd_pid = start(adm, request(pid))
    assert kd_pid > 0
    assert tree.read("kdamonds/0/state").strip() == "on"
    c = "kdamonds/0/contexts/0"
    assert tree.read(f"{c}/operations").strip() == "vaddr"
    assert tree.read(f"{c}/targets/0/pid_target").strip() == str(pid)
    assert tree.read(f"{c}/schemes/0/action").strip() == "pageout"
    assert tree.read(f"{c}/schemes/0/quotas/bytes").strip() == str(1 << 20)
    text = status(adm)
    assert text.startswith(f"kdamond 0: state on, pid {kd_pid}")
    assert "ops vaddr, sample 1000 us, aggr 20000 us" in text
    assert "scheme 0: action pageout" in text and "stats: tried" in text
    with pytest.raises(AdminError, match="already running"):
        start(adm, request(pid))
    tune(adm, request(pid, aggr_us=40_000))
    assert tree.read(f"{c}/monitoring_attrs/intervals/aggr_us").strip() == "40000"
    assert stop(adm) == [0]
    assert tree.read("kdamonds/0/state").strip() == "off"
    assert stop(adm) == []
    with pytest.raises(AdminError, match="no kdamond is running"):
        tune(adm, request(pid))


def test_kernel_errors_become_one_line(sim_tree):
    tree, pid = sim_tree
    adm = TreeAdminDir(tree)
    # sampling longer than aggregation: 'on' fails with the tree's EINVAL
    with pytest.raises(AdminError) as e:
        start(adm, request(pid, sample_us=50_000))
    msg = str(e.value)
    assert "writing 'on' to /kdamonds/0/state failed: EINVAL (Invalid argument)" in msg
    assert "check the option values" in msg and "\n" not in msg


def test_status_of_empty_tree(sim_tree):
    tree, _ = sim_tree
    assert "no kdamond" in status(TreeAdminDir(tree))


def make_dir_tree(root):
    """A plain directory shaped like the admin tree with one kdamond, ctx, target, scheme."""
    files = {"kdamonds/nr_kdamonds": "1", "kdamonds/0/state": "off", "kdamonds/0/pid": "-1",
             "kdamonds/0/contexts/nr_contexts": "1"}
    c = "kdamonds/0/contexts/0"
    files |= {f"{c}/operations": "vaddr", f"{c}/targets/nr_targets": "1",
              f"{c}/targets/0/pid_target": "0", f"{c}/targets/0/regions/nr_regions": "1",
              f"{c}/targets/0/regions/0/start": "0", f"{c}/targets/0/regions/0/end": "0",
              f"{c}/schemes/nr_schemes": "0"}
    for n in ("sample_us", "aggr_us", "update_us"):
        files[f"{c}/monitoring_attrs/intervals/{n}"] = "0"
    for n in ("min", "max"):
        files[f"{c}/monitoring_attrs/nr_regions/{n}"] = "0"
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")


def test_real_directory_staging(tmp_path):
    make_dir_tree(tmp_path / "admin")
    assert resolve_admin_root(str(tmp_path)) == str(tmp_path / "admin")
    adm = RealAdminDir(str(tmp_path))
    req = StageRequest("paddr", MonitoringAttrs(), [StageTarget(None, [(4096, 1 << 30)])], [])
    stage(adm, req)
    c = tmp_path / "admin/kdamonds/0/contexts/0"
    assert (c / "operations").read_text() == "paddr"
    assert (c / "monitoring_attrs/intervals/sample_us").read_text() == "5000"
    assert (c / "monitoring_attrs/nr_regions/max").read_text() == "1000"
    assert (c / "targets/0/regions/0/end").read_text() == str(1 << 30)
    # unchanged nr_* files are not rewritten (a write would recreate the children)
    assert (c / "targets/nr_targets").read_text() == "1\n"
    assert (c / "schemes/nr_schemes").read_text() == "0\n"


def test_missing_tree_says_how_to_fix(tmp_path):
    with pytest.raises(AdminError, match="does not exist; start the daemon"):
        RealAdminDir(str(tmp_path / "nothing"))
    with pytest.raises(AdminError, match="no kdamonds/ directory"):
        RealAdminDir(str(tmp_path))


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file modes")
def test_permission_error_names_root(tmp_path):
    make_dir_tree(tmp_path)
    (tmp_path / "kdamonds/0/state").chmod(0o400)
    with pytest.raises(AdminError, match="EACCES.*run as root"):
        RealAdminDir(str(tmp_path)).write("kdamonds/0/state", "on")


def test_cli_status_and_stop_on_directory(tmp_path, capsys):
    from pydamon.cli.main import main

    make_dir_tree(tmp_path)
    assert main(["status", "--sysfs", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("kdamond 0: state off, pid -1")
    assert main(["stop", "--sysfs", str(tmp_path)]) == 0
    assert "no kdamond was running" in capsys.readouterr().out
    assert main(["report", "damon", "--sysfs", str(tmp_path / "nope")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0]
