"""The sysfs tree model without mounting: hierarchy, formats, modes, defaults, errors, state."""

from __future__ import annotations

import errno
import os
import subprocess
import time

import pytest

from pydamon.errors import DamonError
from pydamon.interfaces.sysfs import MAX_CHILDREN, build_sysfs_tree
from pydamon.interfaces.sysfs.parse import kstrtobool, kstrtoint, kstrtoul
from pydamon.interfaces.tree import READ_ONLY, READ_WRITE, Dir, File
from sysfs_fakeops import FAKE_RAM, HOT_END, fake_factory

K = "kdamonds/0"
C = f"{K}/contexts/0"
S = f"{C}/schemes/0"
ULONG_MAX = (1 << 64) - 1


def errno_of(fn, *args) -> int:
    with pytest.raises(DamonError) as info:
        fn(*args)
    return info.value.errno


@pytest.fixture
def tree():
    t = build_sysfs_tree(fake_factory, ["vaddr", "fvaddr", "paddr"])
    yield t
    t.shutdown()


def populate(t, nr_schemes: int = 1, nr_targets: int = 1, nr_regions: int = 1,
             nr_filters: int = 1, nr_goals: int = 1) -> None:
    t.write("kdamonds/nr_kdamonds", "1")
    t.write(f"{K}/contexts/nr_contexts", "1")
    t.write(f"{C}/targets/nr_targets", str(nr_targets))
    for i in range(nr_targets):
        t.write(f"{C}/targets/{i}/regions/nr_regions", str(nr_regions))
    t.write(f"{C}/schemes/nr_schemes", str(nr_schemes))
    for i in range(nr_schemes):
        for d in ("filters", "core_filters", "ops_filters"):
            t.write(f"{C}/schemes/{i}/{d}/nr_filters", str(nr_filters))
        t.write(f"{C}/schemes/{i}/quotas/goals/nr_goals", str(nr_goals))


def all_files(t, path: str = "") -> dict[str, File]:
    out: dict[str, File] = {}
    node = t.lookup(path)
    assert isinstance(node, Dir)
    for name, child in node.children().items():
        p = f"{path}/{name}" if path else name
        if isinstance(child, Dir):
            out.update(all_files(t, p))
        else:
            out[p] = child
    return out


# Every file of a populated tree, its mode and its default content.
EXPECTED = {
    "kdamonds/nr_kdamonds": (READ_WRITE, "1\n"),
    f"{K}/state": (READ_WRITE, "off\n"),
    f"{K}/pid": (READ_ONLY, "-1\n"),
    f"{K}/refresh_ms": (READ_WRITE, "0\n"),
    f"{K}/contexts/nr_contexts": (READ_WRITE, "1\n"),
    f"{C}/avail_operations": (READ_ONLY, "vaddr\nfvaddr\npaddr\n"),
    f"{C}/operations": (READ_WRITE, "vaddr\n"),
    f"{C}/addr_unit": (READ_WRITE, "1\n"),
    f"{C}/monitoring_attrs/intervals/sample_us": (READ_WRITE, "5000\n"),
    f"{C}/monitoring_attrs/intervals/aggr_us": (READ_WRITE, "100000\n"),
    f"{C}/monitoring_attrs/intervals/update_us": (READ_WRITE, "60000000\n"),
    **{f"{C}/monitoring_attrs/intervals/intervals_goal/{n}": (READ_WRITE, "0\n")
       for n in ("access_bp", "aggrs", "min_sample_us", "max_sample_us")},
    f"{C}/monitoring_attrs/nr_regions/min": (READ_WRITE, "10\n"),
    f"{C}/monitoring_attrs/nr_regions/max": (READ_WRITE, "1000\n"),
    f"{C}/targets/nr_targets": (READ_WRITE, "1\n"),
    f"{C}/targets/0/pid_target": (READ_WRITE, "0\n"),
    f"{C}/targets/0/regions/nr_regions": (READ_WRITE, "1\n"),
    f"{C}/targets/0/regions/0/start": (READ_WRITE, "0\n"),
    f"{C}/targets/0/regions/0/end": (READ_WRITE, "0\n"),
    f"{C}/schemes/nr_schemes": (READ_WRITE, "1\n"),
    f"{S}/action": (READ_WRITE, "stat\n"),
    f"{S}/apply_interval_us": (READ_WRITE, "0\n"),
    f"{S}/target_nid": (READ_WRITE, "-1\n"),
    **{f"{S}/access_pattern/{r}/{m}": (READ_WRITE, "0\n")
       for r in ("sz", "nr_accesses", "age") for m in ("min", "max")},
    **{f"{S}/quotas/{n}": (READ_WRITE, "0\n") for n in ("ms", "bytes", "reset_interval_ms")},
    f"{S}/quotas/effective_bytes": (READ_ONLY, "0\n"),
    **{f"{S}/quotas/weights/{n}": (READ_WRITE, "0\n")
       for n in ("sz_permil", "nr_accesses_permil", "age_permil")},
    f"{S}/quotas/goals/nr_goals": (READ_WRITE, "1\n"),
    f"{S}/quotas/goals/0/target_metric": (READ_WRITE, "user_input\n"),
    **{f"{S}/quotas/goals/0/{n}": (READ_WRITE, "0\n")
       for n in ("target_value", "current_value", "nid")},
    f"{S}/watermarks/metric": (READ_WRITE, "none\n"),
    **{f"{S}/watermarks/{n}": (READ_WRITE, "0\n") for n in ("interval_us", "high", "mid", "low")},
    **{f"{S}/stats/{n}": (READ_ONLY, "0\n") for n in (
        "nr_tried", "sz_tried", "nr_applied", "sz_applied", "sz_ops_filter_passed",
        "qt_exceeds")},
    f"{S}/tried_regions/total_bytes": (READ_ONLY, "0\n"),
}
for _d in ("filters", "core_filters", "ops_filters"):
    EXPECTED[f"{S}/{_d}/nr_filters"] = (READ_WRITE, "1\n")
    EXPECTED[f"{S}/{_d}/0/type"] = (READ_WRITE, "anon\n")
    EXPECTED[f"{S}/{_d}/0/matching"] = (READ_WRITE, "N\n")
    EXPECTED[f"{S}/{_d}/0/allow"] = (READ_WRITE, "N\n")
    EXPECTED[f"{S}/{_d}/0/memcg_path"] = (READ_WRITE, "\n")
    for _n in ("addr_start", "addr_end", "min", "max", "damon_target_idx"):
        EXPECTED[f"{S}/{_d}/0/{_n}"] = (READ_WRITE, "0\n")


def test_every_file_exists_with_mode_and_default(tree):
    assert tree.listdir("") == ["kdamonds"]
    assert tree.read("kdamonds/nr_kdamonds") == "0\n"
    assert tree.listdir("kdamonds") == ["nr_kdamonds"]
    populate(tree)
    files = all_files(tree)
    assert set(files) == set(EXPECTED)
    for path, (mode, content) in EXPECTED.items():
        assert files[path].mode == mode, path
        assert tree.read(path) == content, path


def test_read_only_files_refuse_writes_with_eacces(tree):
    populate(tree)
    for path, (mode, _) in EXPECTED.items():
        if mode == READ_ONLY:
            assert errno_of(tree.write, path, "1") == errno.EACCES, path


@pytest.mark.parametrize("text,value", [
    ("0", 0), ("42", 42), ("42\n", 42), ("+7", 7), ("0x1f", 31), ("0X1F", 31), ("017", 15),
    ("18446744073709551615", ULONG_MAX), ("0xffffffffffffffff", ULONG_MAX),
])
def test_kstrtoul_accepts(text, value):
    assert kstrtoul(text) == value


@pytest.mark.parametrize("text,err", [
    ("", errno.EINVAL), ("-1", errno.EINVAL), ("-0", errno.EINVAL), ("abc", errno.EINVAL),
    ("1 2", errno.EINVAL), ("12a", errno.EINVAL), ("08", errno.EINVAL), ("0x", errno.EINVAL),
    ("1\n\n", errno.EINVAL), (" 1", errno.EINVAL), ("18446744073709551616", errno.ERANGE),
    ("0x10000000000000000", errno.ERANGE),
])
def test_kstrtoul_rejects(text, err):
    assert errno_of(kstrtoul, text) == err


def test_kstrtoint_and_kstrtobool():
    assert kstrtoint("-0") == 0
    assert kstrtoint("-2147483648") == -(1 << 31)
    assert errno_of(kstrtoint, "2147483648") == errno.ERANGE
    assert errno_of(kstrtoint, "-2147483649") == errno.ERANGE
    for text in ("Y", "y", "1", "on", "true", "T"):
        assert kstrtobool(text) is True
    for text in ("N", "n", "0", "off", "false", "F"):
        assert kstrtobool(text) is False
    for text in ("", "x", "o", "2"):
        assert errno_of(kstrtobool, text) == errno.EINVAL


def test_number_files_parse_like_the_kernel(tree):
    populate(tree)
    path = f"{S}/access_pattern/nr_accesses/max"
    tree.write(path, "18446744073709551615")
    assert tree.read(path) == "18446744073709551615\n"
    tree.write(path, "0x10")
    assert tree.read(path) == "16\n"
    assert errno_of(tree.write, path, "18446744073709551616") == errno.ERANGE
    assert errno_of(tree.write, path, "-1") == errno.EINVAL
    # 6.12: pid_target and the quota files turn every parse error into EINVAL
    for p in (f"{C}/targets/0/pid_target", f"{S}/quotas/ms", f"{S}/quotas/bytes",
              f"{S}/quotas/reset_interval_ms"):
        assert errno_of(tree.write, p, "99999999999999999999999") == errno.EINVAL, p
    # int files take -0 and negative numbers, unsigned ones do not
    tree.write(f"{S}/target_nid", "-0")
    assert tree.read(f"{S}/target_nid") == "0\n"
    tree.write(f"{S}/target_nid", "-3")
    assert tree.read(f"{S}/target_nid") == "-3\n"
    # weights are unsigned int
    assert errno_of(tree.write, f"{S}/quotas/weights/age_permil", "4294967296") == errno.ERANGE
    assert tree.read(path) == "16\n"


def test_empty_write_changes_nothing_and_nul_ends_input(tree):
    populate(tree)
    tree.write(f"{C}/operations", "paddr\0junk")
    assert tree.read(f"{C}/operations") == "paddr\n"
    tree.write(f"{C}/operations", "")
    assert tree.read(f"{C}/operations") == "paddr\n"
    tree.write(f"{K}/state", "")
    assert tree.read(f"{K}/state") == "off\n"
    tree.write(f"{C}/monitoring_attrs/intervals/sample_us", "7000\n")
    assert tree.read(f"{C}/monitoring_attrs/intervals/sample_us") == "7000\n"
    assert errno_of(tree.write, f"{C}/operations", "\0paddr") == errno.EINVAL
    assert errno_of(tree.write, f"{C}/operations", "paddr\n\n") == errno.EINVAL


def test_keyword_files(tree):
    populate(tree)
    for kw in ("willneed", "cold", "pageout", "hugepage", "nohugepage", "lru_prio",
               "lru_deprio", "migrate_hot", "migrate_cold", "stat"):
        tree.write(f"{S}/action", kw + "\n")
        assert tree.read(f"{S}/action") == kw + "\n"
    assert errno_of(tree.write, f"{S}/action", "page") == errno.EINVAL
    tree.write(f"{S}/watermarks/metric", "free_mem_rate")
    assert errno_of(tree.write, f"{S}/watermarks/metric", "free") == errno.EINVAL
    for kw in ("some_mem_psi_us", "node_mem_used_bp", "node_mem_free_bp", "user_input"):
        tree.write(f"{S}/quotas/goals/0/target_metric", kw)
    assert errno_of(tree.write, f"{S}/quotas/goals/0/target_metric", "x") == errno.EINVAL
    assert errno_of(tree.write, f"{C}/operations", "sim") == errno.EINVAL


def test_filter_types_per_layer_and_formats(tree):
    populate(tree)
    for t in ("anon", "active", "memcg", "young", "hugepage_size", "unmapped", "addr", "target"):
        tree.write(f"{S}/filters/0/type", t)
        assert tree.read(f"{S}/filters/0/type") == t + "\n"
    tree.write(f"{S}/core_filters/0/type", "addr")
    assert errno_of(tree.write, f"{S}/core_filters/0/type", "young") == errno.EINVAL
    tree.write(f"{S}/ops_filters/0/type", "young")
    assert errno_of(tree.write, f"{S}/ops_filters/0/type", "target") == errno.EINVAL
    tree.write(f"{S}/filters/0/matching", "Y")
    tree.write(f"{S}/filters/0/allow", "yes")
    assert tree.read(f"{S}/filters/0/matching") == "Y\n"
    assert tree.read(f"{S}/filters/0/allow") == "Y\n"
    assert errno_of(tree.write, f"{S}/filters/0/allow", "maybe") == errno.EINVAL
    tree.write(f"{S}/filters/0/memcg_path", "/foo\n")
    assert tree.read(f"{S}/filters/0/memcg_path") == "/foo\n\n"  # newline kept, as 6.12 does


def test_nr_files_recreate_children_with_defaults(tree):
    populate(tree, nr_targets=2)
    tree.write(f"{C}/targets/1/pid_target", "123")
    tree.write(f"{C}/targets/1/regions/0/end", "4096")
    tree.write(f"{C}/targets/nr_targets", "3")
    assert tree.listdir(f"{C}/targets") == ["nr_targets", "0", "1", "2"]
    assert tree.read(f"{C}/targets/1/pid_target") == "0\n"
    assert tree.listdir(f"{C}/targets/1/regions") == ["nr_regions"]
    tree.write(f"{C}/targets/nr_targets", "1")
    assert tree.listdir(f"{C}/targets") == ["nr_targets", "0"]
    assert errno_of(tree.lookup, f"{C}/targets/2") == errno.ENOENT
    assert errno_of(tree.write, f"{C}/targets/nr_targets", "-1") == errno.EINVAL
    assert errno_of(tree.write, f"{C}/targets/nr_targets", "x") == errno.EINVAL
    assert errno_of(tree.write, f"{C}/targets/nr_targets", "2147483648") == errno.ERANGE
    # a huge number fails after the old children are gone (6.12 behaves so, with ENOMEM)
    assert errno_of(tree.write, f"{C}/targets/nr_targets", str(MAX_CHILDREN + 1)) == errno.ENOMEM
    assert tree.read(f"{C}/targets/nr_targets") == "0\n"
    # nr_contexts takes only 0 and 1
    assert errno_of(tree.write, f"{K}/contexts/nr_contexts", "2") == errno.EINVAL
    tree.write(f"{K}/contexts/nr_contexts", "0")
    assert tree.listdir(f"{K}/contexts") == ["nr_contexts"]


# --------------------------------------------------------------------------------------
# state
# --------------------------------------------------------------------------------------


def start_paddr(t, *, scheme: bool = True, apply_us: int = 5000) -> None:
    populate(t, nr_schemes=1 if scheme else 0, nr_regions=0, nr_filters=0, nr_goals=0)
    t.write(f"{C}/operations", "paddr")
    if scheme:
        for r in ("sz", "nr_accesses", "age"):
            t.write(f"{S}/access_pattern/{r}/max", str(ULONG_MAX))
        t.write(f"{S}/apply_interval_us", str(apply_us))
    t.write(f"{K}/state", "on")


def test_state_errors_when_off(tree):
    assert errno_of(tree.write, "kdamonds/nr_kdamonds", "-1") == errno.EINVAL
    populate(tree)
    assert errno_of(tree.write, f"{K}/state", "bogus") == errno.EINVAL
    assert errno_of(tree.write, f"{K}/state", "off") == errno.EINVAL  # never started
    for cmd in ("commit", "update_schemes_stats", "update_schemes_tried_regions",
                "update_schemes_tried_bytes", "clear_schemes_tried_regions",
                "update_schemes_effective_quotas", "update_tuned_intervals",
                "commit_schemes_quota_goals"):
        assert errno_of(tree.write, f"{K}/state", cmd) == errno.EINVAL, cmd
    tree.write(f"{K}/contexts/nr_contexts", "0")
    assert errno_of(tree.write, f"{K}/state", "on") == errno.EINVAL


def test_on_validates_inputs(tree):
    populate(tree, nr_filters=0, nr_goals=0)
    tree.write(f"{C}/targets/0/pid_target", "0")   # vaddr with no such process
    tree.write(f"{C}/targets/0/regions/nr_regions", "0")
    assert errno_of(tree.write, f"{K}/state", "on") == errno.EINVAL
    tree.write(f"{C}/operations", "paddr")
    tree.write(f"{C}/monitoring_attrs/nr_regions/min", "2")
    assert errno_of(tree.write, f"{K}/state", "on") == errno.EINVAL
    tree.write(f"{C}/monitoring_attrs/nr_regions/min", "10")
    tree.write(f"{C}/targets/0/regions/nr_regions", "1")
    tree.write(f"{C}/targets/0/regions/0/start", "8192")
    tree.write(f"{C}/targets/0/regions/0/end", "4096")
    assert errno_of(tree.write, f"{K}/state", "on") == errno.EINVAL
    tree.write(f"{C}/targets/0/regions/nr_regions", "0")
    tree.write(f"{C}/targets/nr_targets", "2")
    assert errno_of(tree.write, f"{K}/state", "on") == errno.EINVAL  # paddr, two targets
    tree.write(f"{C}/targets/nr_targets", "1")
    tree.write(f"{S}/core_filters/nr_filters", "1")
    tree.write(f"{S}/core_filters/0/type", "addr")
    tree.write(f"{S}/core_filters/0/addr_start", "8192")
    assert errno_of(tree.write, f"{K}/state", "on") == errno.ENOMEM  # as 6.12
    assert tree.read(f"{K}/state") == "off\n"


def test_on_off_and_state_reads(tree):
    start_paddr(tree)
    assert tree.read(f"{K}/state") == "on\n"
    assert int(tree.read(f"{K}/pid")) > 0
    assert errno_of(tree.write, f"{K}/state", "on") == errno.EBUSY
    assert errno_of(tree.write, "kdamonds/nr_kdamonds", "2") == errno.EBUSY
    tree.write(f"{K}/state", "off\n")
    assert tree.read(f"{K}/state") == "off\n"
    assert tree.read(f"{K}/pid") == "-1\n"
    assert errno_of(tree.write, f"{K}/state", "off") == errno.EPERM
    tree.write("kdamonds/nr_kdamonds", "2")


def test_tried_regions_stats_and_quotas(tree):
    start_paddr(tree)
    # paddr starts from one region over all RAM; the hot 64 MiB stands out
    # once splits made regions small enough (a few aggregations; slow under load)
    deadline = time.monotonic() + 10
    while True:
        time.sleep(0.1)
        tree.write(f"{K}/state", "update_schemes_tried_regions")
        names = [n for n in tree.listdir(f"{S}/tried_regions") if n != "total_bytes"]
        regions = [tuple(int(tree.read(f"{S}/tried_regions/{n}/{f}"))
                         for f in ("start", "end", "nr_accesses", "age", "sz_filter_passed"))
                   for n in names]
        if len(names) >= 4 and max(r[2] for r in regions) > 0 or time.monotonic() > deadline:
            break
    assert names == [str(i) for i in range(len(names))] and len(names) >= 2
    # the paddr default range (no region given) is covered exactly, in order
    assert regions[0][0] == FAKE_RAM.start and regions[-1][1] == FAKE_RAM.end
    assert all(a[1] == b[0] for a, b in zip(regions, regions[1:], strict=False))
    assert int(tree.read(f"{S}/tried_regions/total_bytes")) == FAKE_RAM.size
    # the hot set (accessed in every sample) shows up where it is
    hottest = max(regions, key=lambda r: r[2])
    assert hottest[2] > 0 and hottest[0] < HOT_END
    tree.write(f"{K}/state", "clear_schemes_tried_regions")
    assert tree.listdir(f"{S}/tried_regions") == ["total_bytes"]
    assert tree.read(f"{S}/tried_regions/total_bytes") == "0\n"
    tree.write(f"{K}/state", "update_schemes_tried_bytes")
    assert tree.listdir(f"{S}/tried_regions") == ["total_bytes"]
    assert int(tree.read(f"{S}/tried_regions/total_bytes")) == FAKE_RAM.size
    tree.write(f"{K}/state", "update_schemes_stats")
    assert int(tree.read(f"{S}/stats/nr_tried")) > 0
    assert int(tree.read(f"{S}/stats/sz_tried")) >= FAKE_RAM.size
    assert tree.read(f"{S}/stats/nr_applied") == "0\n"  # stat applies nothing
    tree.write(f"{K}/state", "update_schemes_effective_quotas")
    assert tree.read(f"{S}/quotas/effective_bytes") == "0\n"  # no quota: unlimited


def test_commit_and_tuned_intervals(tree):
    start_paddr(tree, scheme=False)
    kdamond = tree.model.kdamond_dirs()[0].kdamond
    tree.write(f"{C}/monitoring_attrs/intervals/aggr_us", "200000")
    tree.write(f"{K}/state", "commit")
    assert kdamond.ctx.attrs.aggr_us == 200000
    tree.write(f"{C}/monitoring_attrs/intervals/aggr_us", "1")
    tree.write(f"{C}/monitoring_attrs/intervals/sample_us", "1")
    tree.write(f"{K}/state", "update_tuned_intervals")
    assert tree.read(f"{C}/monitoring_attrs/intervals/aggr_us") == "200000\n"
    assert tree.read(f"{C}/monitoring_attrs/intervals/sample_us") == "5000\n"
    tree.write(f"{C}/monitoring_attrs/nr_regions/min", "2")
    assert errno_of(tree.write, f"{K}/state", "commit") == errno.EINVAL
    assert tree.read(f"{K}/state") == "on\n"
    # commit adds a scheme to the running context
    tree.write(f"{C}/monitoring_attrs/nr_regions/min", "10")
    tree.write(f"{C}/schemes/nr_schemes", "1")
    tree.write(f"{S}/action", "pageout")
    tree.write(f"{K}/state", "commit")
    assert [s.action.value for s in kdamond.ctx.schemes] == ["pageout"]


def test_quota_goals_commit_and_effective_quota(tree):
    populate(tree, nr_regions=0, nr_filters=0, nr_goals=1)
    tree.write(f"{C}/operations", "paddr")
    tree.write(f"{S}/quotas/bytes", str(64 << 20))
    tree.write(f"{S}/quotas/reset_interval_ms", "10")
    tree.write(f"{S}/quotas/goals/0/target_value", "100")
    tree.write(f"{S}/quotas/goals/0/current_value", "10")
    tree.write(f"{S}/apply_interval_us", "5000")
    tree.write(f"{K}/state", "on")
    kdamond = tree.model.kdamond_dirs()[0].kdamond
    assert kdamond.ctx.schemes[0].quota.goals[0].current_value == 10
    tree.write(f"{S}/quotas/goals/0/current_value", "70")
    tree.write(f"{K}/state", "commit_schemes_quota_goals")
    assert kdamond.ctx.schemes[0].quota.goals[0].current_value == 70
    time.sleep(0.2)
    tree.write(f"{K}/state", "update_schemes_effective_quotas")
    esz = int(tree.read(f"{S}/quotas/effective_bytes"))
    assert 0 < esz <= 64 << 20


def test_addr_and_target_filters_limit_tried_regions(tree):
    populate(tree, nr_regions=0, nr_filters=0, nr_goals=0)
    tree.write(f"{C}/operations", "paddr")
    for r in ("sz", "nr_accesses", "age"):
        tree.write(f"{S}/access_pattern/{r}/max", str(ULONG_MAX))
    tree.write(f"{S}/apply_interval_us", "5000")
    tree.write(f"{S}/core_filters/nr_filters", "1")
    f = f"{S}/core_filters/0"
    tree.write(f"{f}/type", "addr")
    tree.write(f"{f}/addr_start", "0")
    tree.write(f"{f}/addr_end", str(512 << 20))
    tree.write(f"{f}/matching", "Y")
    tree.write(f"{f}/allow", "N")
    tree.write(f"{K}/state", "on")
    time.sleep(0.2)
    tree.write(f"{K}/state", "update_schemes_tried_regions")
    names = [n for n in tree.listdir(f"{S}/tried_regions") if n != "total_bytes"]
    starts = [int(tree.read(f"{S}/tried_regions/{n}/start")) for n in names]
    assert starts and min(starts) >= 512 << 20
    assert int(tree.read(f"{S}/tried_regions/total_bytes")) == FAKE_RAM.end - (512 << 20)
    # a target filter rejecting target 0 leaves nothing to try
    tree.write(f"{f}/type", "target")
    tree.write(f"{f}/damon_target_idx", "0")
    tree.write(f"{K}/state", "commit")
    time.sleep(0.05)
    tree.write(f"{K}/state", "update_schemes_tried_regions")
    assert tree.read(f"{S}/tried_regions/total_bytes") == "0\n"


def test_kdamond_that_loses_its_targets_reads_off(tree):
    child = subprocess.Popen(["sleep", "60"])
    try:
        populate(tree, nr_schemes=0, nr_regions=0)
        tree.write(f"{C}/targets/0/pid_target", str(child.pid))
        tree.write(f"{K}/state", "on")
        assert tree.read(f"{K}/state") == "on\n"
    finally:
        child.kill()
        child.wait()
    deadline = time.monotonic() + 5
    while tree.read(f"{K}/state") != "off\n" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert tree.read(f"{K}/state") == "off\n"
    assert tree.read(f"{K}/pid") == "-1\n"


def test_refresh_ms_refreshes_stats(tree):
    start_paddr(tree)
    tree.write(f"{K}/refresh_ms", "20")
    deadline = time.monotonic() + 5
    while tree.read(f"{S}/stats/nr_tried") == "0\n" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert int(tree.read(f"{S}/stats/nr_tried")) > 0


def test_guide_short_example(tree):
    """The usage guide's quick start, typed as written, with this process as workload."""
    w = tree.write
    w("kdamonds/nr_kdamonds", "1\n")
    w("kdamonds/0/contexts/nr_contexts", "1\n")
    w("kdamonds/0/contexts/0/operations", "vaddr\n")
    w("kdamonds/0/contexts/0/targets/nr_targets", "1\n")
    w("kdamonds/0/contexts/0/targets/0/pid_target", f"{os.getpid()}\n")
    w("kdamonds/0/state", "on\n")
    assert tree.read("kdamonds/0/state") == "on\n"
    kdamond = tree.model.kdamond_dirs()[0].kdamond
    assert kdamond.ctx.targets[0].pid == os.getpid()
    assert kdamond.ctx.ops_name == "vaddr"


def test_guide_schemes_example(tree):
    """The guide's scheme example, typed as written; the files then hold what it describes."""
    w = tree.write
    w("kdamonds/nr_kdamonds", "1\n")
    w("kdamonds/0/contexts/nr_contexts", "1\n")
    w("kdamonds/0/contexts/0/schemes/nr_schemes", "1\n")
    s = "kdamonds/0/contexts/0/schemes/0"
    for rel, value in (("access_pattern/sz/min", "4096"), ("access_pattern/sz/max", "8192"),
                       ("access_pattern/nr_accesses/min", "0"),
                       ("access_pattern/nr_accesses/max", "5"),
                       ("access_pattern/age/min", "10"), ("access_pattern/age/max", "20"),
                       ("action", "pageout"), ("quotas/ms", "10"),
                       ("quotas/bytes", str(1024 * 1024 * 1024)),
                       ("quotas/reset_interval_ms", "1000"),
                       ("watermarks/metric", "free_mem_rate"),
                       ("watermarks/interval_us", "5000000"), ("watermarks/high", "600"),
                       ("watermarks/mid", "500"), ("watermarks/low", "300")):
        w(f"{s}/{rel}", value + "\n")
        assert tree.read(f"{s}/{rel}") == value + "\n"
    # and it starts, on this process
    w("kdamonds/0/contexts/0/targets/nr_targets", "1\n")
    w("kdamonds/0/contexts/0/targets/0/pid_target", f"{os.getpid()}\n")
    w("kdamonds/0/state", "on\n")
    scheme = tree.model.kdamond_dirs()[0].kdamond.ctx.schemes[0]
    assert (scheme.pattern.min_sz_region, scheme.pattern.max_sz_region) == (4096, 8192)
    assert (scheme.pattern.min_age_region, scheme.pattern.max_age_region) == (10, 20)
    assert scheme.action.value == "pageout"
    assert (scheme.quota.ms, scheme.quota.sz, scheme.quota.reset_interval_ms) == (
        10, 1 << 30, 1000)
    assert (scheme.wmarks.metric.value, scheme.wmarks.interval_us, scheme.wmarks.high,
            scheme.wmarks.mid, scheme.wmarks.low) == ("free_mem_rate", 5000000, 600, 500, 300)


def test_intervals_goal_tunes_and_update_tuned_intervals_reports_it(tree):
    populate(tree, nr_schemes=0, nr_regions=0)
    tree.write(f"{C}/operations", "paddr")
    goal = f"{C}/monitoring_attrs/intervals/intervals_goal"
    # the hot 64 MiB of 1 GiB are far more than 0.04% of the possible accesses:
    # the tuner shrinks the intervals to its lower bound
    tree.write(f"{goal}/access_bp", "4")
    tree.write(f"{goal}/aggrs", "1")
    tree.write(f"{goal}/min_sample_us", "1000")
    tree.write(f"{goal}/max_sample_us", "10000")
    tree.write(f"{C}/monitoring_attrs/intervals/aggr_us", "20000")
    tree.write(f"{K}/state", "on")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        tree.write(f"{K}/state", "update_tuned_intervals")
        if tree.read(f"{C}/monitoring_attrs/intervals/sample_us") == "1000\n":
            break
        time.sleep(0.05)
    assert tree.read(f"{C}/monitoring_attrs/intervals/sample_us") == "1000\n"
    assert tree.read(f"{C}/monitoring_attrs/intervals/aggr_us") == "4000\n"  # ratio kept
