"""The debugfs files model: formats, defaults, the usage guide's examples, errors."""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from pydamon.core import Action, Context, Kdamond, Target, WatermarkMetric, nr_running_kdamonds
from pydamon.errors import DamonError
from pydamon.interfaces.debugfs import (
    CONTEXT_FILES,
    ROOT_FILES,
    DebugfsTree,
    build_debugfs_tree,
)
from pydamon.interfaces.trace import TraceHub, build_trace_dir
from pydamon.interfaces.tree import Dir, File

sim = pytest.importorskip("pydamon.ops.sim", reason="the sim operations set is not available")

GUIDE_SCHEME = "4096 8192 0 5 10 20 2  10 1073741824 1000  0 0 100  1 5000000 600 500 300"
FAST_ATTRS = "1000 10000 1000000 10 1000\n"  # 1 ms samples, 10 ms aggregations


@pytest.fixture
def world():
    w = sim.SimWorld(seed=0)
    w.spawn(sim.builtin_workload("hotcold"), pid=42)
    w.spawn(sim.builtin_workload("zipf"), pid=4242)
    return w


@pytest.fixture
def tree(world) -> Iterator[DebugfsTree]:
    t = build_debugfs_tree(lambda name: sim.SimOps(world, mode=name), seed=0)
    yield t
    t.model.shutdown()
    assert nr_running_kdamonds() == 0


def err(fn: Callable[[], object]) -> int:
    with pytest.raises(DamonError) as info:
        fn()
    return info.value.errno


def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


# -- layout and defaults --------------------------------------------------------------


def test_layout_and_modes(tree):
    assert tree.listdir("/") == ["damon"]
    assert sorted(tree.listdir("damon")) == sorted(CONTEXT_FILES + ROOT_FILES)
    for name in CONTEXT_FILES + ROOT_FILES:
        node = tree.lookup(f"damon/{name}")
        assert isinstance(node, File) and node.mode == 0o600 and node.single_write


def test_defaults(tree):
    assert tree.read("damon/attrs") == "5000 100000 60000000 10 1000\n"
    assert tree.read("damon/target_ids") == "\n"
    assert tree.read("damon/init_regions") == ""
    assert tree.read("damon/schemes") == ""
    assert tree.read("damon/kdamond_pid") == "none\n"
    assert tree.read("damon/monitor_on") == "off\n"
    assert tree.read("damon/monitor_on_DEPRECATED") == "off\n"


def test_files_without_a_read_or_write_method_answer_einval(tree):
    assert err(lambda: tree.read("damon/mk_contexts")) == errno.EINVAL
    assert err(lambda: tree.read("damon/rm_contexts")) == errno.EINVAL
    assert err(lambda: tree.write("damon/kdamond_pid", "1\n")) == errno.EINVAL


# -- the usage guide's examples, typed as written -----------------------------------------


def test_guide_attrs(tree):
    tree.write("damon/attrs", "5000 100000 1000000 10 1000\n")
    assert tree.read("damon/attrs") == "5000 100000 1000000 10 1000\n"


def test_guide_target_ids_and_paddr(tree):
    tree.write("damon/target_ids", "42 4242\n")
    assert tree.read("damon/target_ids") == "42 4242\n"
    assert tree.model.context().ops_name == "vaddr"
    tree.write("damon/target_ids", "paddr\n")
    assert tree.read("damon/target_ids") == "42\n"
    assert tree.model.context().ops_name == "paddr"


def test_guide_init_regions(tree):
    tree.write("damon/target_ids", "42 4242\n")
    tree.write("damon/init_regions", "0 1 100\n0 100 200\n1 20 40\n1 50 100\n")
    assert tree.read("damon/init_regions") == "0 1 100\n0 100 200\n1 20 40\n1 50 100\n"
    targets = tree.model.context().targets
    assert [(r.start, r.end) for r in targets[1].init_regions] == [(20, 40), (50, 100)]


def test_guide_init_regions_written_a_line_at_a_time(tree):
    """As bash's echo writes the guide's example: one write() per line."""
    tree.write("damon/target_ids", "42 4242\n")
    offset = 0
    for line in ("0 1 100\n", "0 100 200\n", "1 20 40\n", "1 50 100\n"):
        tree.write("damon/init_regions", line, offset)
        offset += len(line)
    assert tree.read("damon/init_regions") == "0 1 100\n0 100 200\n1 20 40\n1 50 100\n"
    # a continuation that does not follow the previous write is still EINVAL
    assert err(lambda: tree.write("damon/init_regions", "1 60 70\n", offset + 1)) == errno.EINVAL
    assert tree.read("damon/init_regions").count("\n") == 4


def test_guide_scheme_example(tree):
    # the guide builds it with shell arithmetic: $((1024*1024*1024)) = 1073741824
    tree.write("damon/schemes", GUIDE_SCHEME + "\n")
    assert tree.read("damon/schemes") == (
        "4096 8192 0 5 10 20 2 10 1073741824 1000 0 0 100 1 5000000 600 500 300 0 0 0 0 0\n")
    (s,) = tree.model.context().schemes
    assert (s.pattern.min_sz_region, s.pattern.max_sz_region) == (4096, 8192)
    assert (s.pattern.min_nr_accesses, s.pattern.max_nr_accesses) == (0, 5)
    assert (s.pattern.min_age_region, s.pattern.max_age_region) == (10, 20)
    assert s.action is Action.PAGEOUT
    assert (s.quota.ms, s.quota.sz, s.quota.reset_interval_ms) == (10, 1 << 30, 1000)
    assert (s.quota.weight_sz, s.quota.weight_nr_accesses, s.quota.weight_age) == (0, 0, 100)
    assert s.wmarks.metric is WatermarkMetric.FREE_MEM_RATE
    assert (s.wmarks.interval_us, s.wmarks.high, s.wmarks.mid, s.wmarks.low) == (
        5_000_000, 600, 500, 300)
    tree.write("damon/schemes", "")  # "disable schemes by writing an empty string"
    assert tree.read("damon/schemes") == ""


def test_guide_on_off_and_kdamond_pid(tree):
    tree.write("damon/target_ids", "42\n")
    assert tree.read("damon/monitor_on") == "off\n"
    assert tree.read("damon/kdamond_pid") == "none\n"
    tree.write("damon/monitor_on", "on\n")
    assert tree.read("damon/monitor_on") == "on\n"
    pid = int(tree.read("damon/kdamond_pid"))
    kd = tree.model.context().kdamond
    assert kd is not None and pid == kd.tid and kd.running
    assert any(t.native_id == pid and t.name == "kdamond.0" for t in threading.enumerate())
    tree.write("damon/monitor_on", "off\n")
    assert tree.read("damon/monitor_on") == "off\n"
    assert tree.read("damon/kdamond_pid") == "none\n"


def test_guide_mk_and_rm_contexts(tree):
    assert err(lambda: tree.listdir("damon/foo")) == errno.ENOENT
    tree.write("damon/mk_contexts", "foo\n")
    assert sorted(tree.listdir("damon/foo")) == sorted(
        ["attrs", "init_regions", "kdamond_pid", "schemes", "target_ids"])
    assert isinstance(tree.lookup("damon/foo"), Dir)
    assert tree.read("damon/foo/attrs") == "5000 100000 60000000 10 1000\n"
    tree.write("damon/foo/attrs", "1 2 3 4 5\n")
    assert tree.read("damon/foo/attrs") == "1 2 3 4 5\n"
    assert tree.read("damon/attrs") == "5000 100000 60000000 10 1000\n"  # separate contexts
    tree.write("damon/rm_contexts", "foo\n")
    assert err(lambda: tree.listdir("damon/foo")) == errno.ENOENT
    assert [c.name for c in tree.model.contexts] == [""]


# -- formats and parsing rules ---------------------------------------------------------------


def test_attrs_parsing(tree):
    tree.write("damon/attrs", "  1\t2\n3 4 5 trailing words are ignored")
    assert tree.read("damon/attrs") == "1 2 3 4 5\n"
    for bad in ("1 2 3 4", "", "a b c d e", "1 2 3 -4 5", "+1 2 3 4 5",
                f"{1 << 64} 2 3 4 5", "1 2 3 2 1", "1 2 3 4 3", "200 100 3 10 20"):
        assert err(lambda bad=bad: tree.write("damon/attrs", bad)) == errno.EINVAL, bad
    assert tree.read("damon/attrs") == "1 2 3 4 5\n"


def test_attrs_accept_ulong_range(tree):
    top = (1 << 64) - 1
    tree.write("damon/attrs", f"0 {top} {top} 3 {top}")
    assert tree.read("damon/attrs") == f"0 {top} {top} 3 {top}\n"


def test_schemes_parsing(tree):
    line = "0 100 0 10 0 10 5 0 0 0 0 0 0 0 0 0 0 0"
    tree.write("damon/schemes", f"{line}\n{line}\nthen garbage {line}")
    assert tree.read("damon/schemes").count("\n") == 2
    # 257 schemes: the kernel takes 256
    tree.write("damon/schemes", (line + "\n") * 257)
    assert len(tree.model.context().schemes) == 256
    # a line that is not 18 unsigned numbers ends the list silently (action -1 too)
    tree.write("damon/schemes", line.replace(" 5 ", " -1 ", 1))
    assert tree.read("damon/schemes") == ""
    tree.write("damon/schemes", f"{line}\n1 2 3")
    assert len(tree.model.context().schemes) == 1
    # the six dbgfs actions
    for number, action in enumerate(
            ["willneed", "cold", "pageout", "hugepage", "nohugepage", "stat"]):
        tree.write("damon/schemes", line.replace(" 5 ", f" {number} ", 1))
        assert tree.model.context().schemes[0].action.value == action
        assert tree.read("damon/schemes").split()[6] == str(number)


@pytest.mark.parametrize("bad", [
    "0 100 0 10 0 10 6 0 0 0 0 0 0 0 0 0 0 0",    # action 6
    "200 100 0 10 0 10 5 0 0 0 0 0 0 0 0 0 0 0",  # min_sz > max_sz
    "0 100 11 10 0 10 5 0 0 0 0 0 0 0 0 0 0 0",   # min_acc > max_acc
    "0 100 0 10 11 10 5 0 0 0 0 0 0 0 0 0 0 0",   # min_age > max_age
    "0 100 0 10 0 10 5 0 0 0 0 0 0 1 0 500 600 300",  # high < mid
    "0 100 0 10 0 10 5 0 0 0 0 0 0 1 0 600 300 500",  # mid < low
    "0 100 0 10 0 10 5 0 0 0 0 0 0 2 0 0 0 0",    # unknown watermark metric
    f"0 100 {1 << 32} {1 << 32} 0 10 5 0 0 0 0 0 0 0 0 0 0 0",  # beyond %u
])
def test_schemes_validation(tree, bad):
    tree.write("damon/schemes", GUIDE_SCHEME)
    before = tree.read("damon/schemes")
    good = "0 100 0 10 0 10 5 0 0 0 0 0 0 0 0 0 0 0\n"
    assert err(lambda: tree.write("damon/schemes", good + bad)) == errno.EINVAL
    assert tree.read("damon/schemes") == before


def test_target_ids_parsing(tree, world):
    tree.write("damon/target_ids", "4242\t42 42\n")
    assert tree.read("damon/target_ids") == "4242 42 42\n"
    tree.write("damon/target_ids", "42 abc 4242")  # stops at the first non-number
    assert tree.read("damon/target_ids") == "42\n"
    tree.write("damon/target_ids", "abc")
    assert tree.read("damon/target_ids") == "\n"
    tree.write("damon/target_ids", " ".join(["42"] * 40))
    assert tree.read("damon/target_ids") == " ".join(["42"] * 32) + "\n"


def test_target_ids_unknown_pid_is_einval_and_changes_nothing(tree, world):
    tree.write("damon/target_ids", "42\n")
    for bad in ("42 99999", "-1", "0", f"{1 << 31}"):
        assert err(lambda bad=bad: tree.write("damon/target_ids", bad)) == errno.EINVAL, bad
        assert tree.read("damon/target_ids") == "42\n"
    world.process(42).exit()
    assert err(lambda: tree.write("damon/target_ids", "42")) == errno.EINVAL


def test_pids_below_one_are_einval_even_where_any_pid_would_be_made(world):
    # the daemon's --simulate operations make a process for any pid they are given
    tree = build_debugfs_tree(lambda name: sim.SimOps(world, mode=name, create_missing=True))
    tree.write("damon/target_ids", "777")
    assert tree.read("damon/target_ids") == "777\n"
    for bad in ("0", "-1", "-42"):
        assert err(lambda bad=bad: tree.write("damon/target_ids", bad)) == errno.EINVAL


def test_keywords_match_whole_words(tree):
    tree.write("damon/target_ids", "42\n")
    for not_paddr in ("p", "pad", "paddrx", "", " "):
        tree.write("damon/target_ids", "42\n")
        tree.write("damon/target_ids", not_paddr)
        assert tree.read("damon/target_ids") == "\n", not_paddr
    tree.write("damon/target_ids", "paddr")  # echo -n paddr
    assert tree.read("damon/target_ids") == "42\n"
    for not_on in ("o", "of", "onn", "", "\n", "1"):
        assert err(lambda w=not_on: tree.write("damon/monitor_on", w)) == errno.EINVAL, not_on
    assert tree.read("damon/monitor_on") == "off\n"


def test_init_regions_rules(tree):
    tree.write("damon/target_ids", "42 4242\n")
    tree.write("damon/init_regions", "1 20 40 0 4096 8192\n")  # any target order
    assert tree.read("damon/init_regions") == "0 4096 8192\n1 20 40\n"
    tree.write("damon/init_regions", "0 0 4096 junk 1 0 4096")  # stops at junk
    assert tree.read("damon/init_regions") == "0 0 4096\n"
    for bad in ("0 100 100", "0 200 100", "2 0 100", "-1 0 100",
                "0 100 200\n0 150 300", "0 100 200\n0 0 50", f"0 0 {1 << 63}",
                f"{1 << 31} 0 100"):
        tree.write("damon/init_regions", "1 0 4096\n")
        assert err(lambda bad=bad: tree.write("damon/init_regions", bad)) == errno.EINVAL, bad
        # as in the kernel, a failed write leaves no initial region at all
        assert tree.read("damon/init_regions") == ""
    tree.write("damon/init_regions", "0 100 200\n0 200 300\n")  # touching is fine
    tree.write("damon/target_ids", "42\n")  # new targets: no regions
    assert tree.read("damon/init_regions") == ""


def test_nul_ends_the_input(tree):
    tree.write("damon/attrs", "1 2 3 4 5\0 junk")
    assert tree.read("damon/attrs") == "1 2 3 4 5\n"
    tree.write("damon/target_ids", "paddr\0junk")
    assert tree.read("damon/target_ids") == "42\n"


def test_continued_writes_are_einval(tree):
    for name in ("attrs", "schemes", "target_ids", "init_regions", "mk_contexts",
                 "rm_contexts", "monitor_on"):
        assert err(lambda name=name: tree.write(f"damon/{name}", "x", offset=1)) == errno.EINVAL
    assert tree.read("damon/attrs") == "5000 100000 60000000 10 1000\n"


# -- contexts ----------------------------------------------------------------------------------


def test_mk_and_rm_contexts_errors(tree):
    tree.write("damon/mk_contexts", "  foo  bar\n")  # the first word names it
    assert "foo" in tree.listdir("damon") and "bar" not in tree.listdir("damon")
    assert err(lambda: tree.write("damon/mk_contexts", "foo")) == errno.EEXIST
    assert err(lambda: tree.write("damon/mk_contexts", "attrs")) == errno.EEXIST
    assert err(lambda: tree.write("damon/mk_contexts", " \n")) == errno.EINVAL
    for bad in ("a/b", ".", ".."):
        assert err(lambda bad=bad: tree.write("damon/mk_contexts", bad)) == errno.EACCES
    assert err(lambda: tree.write("damon/mk_contexts", "x" * 256)) == errno.ENAMETOOLONG
    assert err(lambda: tree.write("damon/rm_contexts", "nothere")) == errno.ENOENT
    assert err(lambda: tree.write("damon/rm_contexts", "attrs")) == errno.EINVAL
    assert err(lambda: tree.write("damon/rm_contexts", "\t")) == errno.EINVAL
    assert sorted(tree.listdir("damon")) == sorted(CONTEXT_FILES + ROOT_FILES + ("foo",))
    # the context directories hold no root-only file
    assert not set(ROOT_FILES) & set(tree.listdir("damon/foo"))


def test_contexts_are_kept_in_creation_order(tree):
    for name in ("b", "a", "c"):
        tree.write("damon/mk_contexts", name)
    tree.write("damon/rm_contexts", "a")
    assert [c.name for c in tree.model.contexts] == ["", "b", "c"]


# -- running ------------------------------------------------------------------------------------


def start(tree, targets: str = "42\n", schemes: str = "") -> None:
    tree.write("damon/attrs", FAST_ATTRS)
    tree.write("damon/target_ids", targets)
    if schemes:
        tree.write("damon/schemes", schemes)
    tree.write("damon/monitor_on", "on\n")


def test_writes_while_running_are_ebusy(tree):
    start(tree, "42 4242\n")
    line = "0 100 0 10 0 10 5 0 0 0 0 0 0 0 0 0 0 0"
    assert err(lambda: tree.write("damon/attrs", "1 2 3 4 5")) == errno.EBUSY
    assert err(lambda: tree.write("damon/schemes", line)) == errno.EBUSY
    assert err(lambda: tree.write("damon/target_ids", "42")) == errno.EBUSY
    assert err(lambda: tree.write("damon/target_ids", "paddr")) == errno.EBUSY
    assert err(lambda: tree.write("damon/init_regions", "0 0 4096")) == errno.EBUSY
    assert err(lambda: tree.read("damon/init_regions")) == errno.EBUSY
    assert err(lambda: tree.write("damon/mk_contexts", "foo")) == errno.EBUSY
    assert err(lambda: tree.write("damon/rm_contexts", "foo")) == errno.EBUSY
    assert err(lambda: tree.write("damon/monitor_on", "on")) == errno.EBUSY
    # bad input is still EINVAL first, as the kernel parses before it locks
    assert err(lambda: tree.write("damon/attrs", "1 2")) == errno.EINVAL
    assert err(lambda: tree.write("damon/target_ids", "99999")) == errno.EINVAL
    # readable files stay readable
    assert tree.read("damon/attrs") == FAST_ATTRS
    assert tree.read("damon/target_ids") == "42 4242\n"
    tree.write("damon/monitor_on", "off")
    tree.write("damon/attrs", "5000 100000 1000000 10 1000")


def test_off_when_not_running_is_eperm(tree):
    assert err(lambda: tree.write("damon/monitor_on", "off")) == errno.EPERM
    start(tree)
    tree.write("damon/monitor_on", "off")
    assert err(lambda: tree.write("damon/monitor_on", "off")) == errno.EPERM


def test_on_needs_targets_in_every_context(tree):
    assert err(lambda: tree.write("damon/monitor_on", "on")) == errno.EINVAL
    tree.write("damon/target_ids", "42")
    tree.write("damon/mk_contexts", "foo")
    assert err(lambda: tree.write("damon/monitor_on", "on")) == errno.EINVAL
    assert tree.read("damon/monitor_on") == "off\n"


def test_on_fails_cleanly_when_a_pid_exited_since(tree, world):
    tree.write("damon/target_ids", "42 4242")
    world.process(4242).exit()
    assert err(lambda: tree.write("damon/monitor_on", "on")) == errno.EINVAL
    assert tree.read("damon/monitor_on") == "off\n" and nr_running_kdamonds() == 0


def test_stop_removes_pid_targets_and_all_regions(tree):
    tree.write("damon/target_ids", "42")
    tree.write("damon/init_regions", "0 4096 1048576")
    start(tree, "42\n")
    tree.write("damon/monitor_on", "off")
    # dbgfs_before_terminate() drops pid targets (and with them their regions)
    assert tree.read("damon/target_ids") == "\n"
    assert tree.read("damon/init_regions") == ""


def test_paddr_target_survives_stop_but_its_regions_do_not(tree):
    tree.write("damon/target_ids", "paddr\n")
    tree.write("damon/init_regions", "0 4096 1073741824\n")
    tree.write("damon/attrs", FAST_ATTRS)
    tree.write("damon/monitor_on", "on")
    ctx = tree.model.context()
    assert ctx.kdamond is not None and ctx.kdamond.ctx.ops.name == "paddr"
    assert wait_for(lambda: ctx.kdamond.ctx.passed_sample_intervals > 20)
    tree.write("damon/monitor_on", "off")
    assert tree.read("damon/target_ids") == "42\n"
    assert tree.read("damon/init_regions") == ""


def test_kdamond_that_ends_by_itself_is_noticed(tree, world):
    start(tree, "42\n")
    assert tree.read("damon/monitor_on") == "on\n"
    world.process(42).exit()
    assert wait_for(lambda: tree.read("damon/monitor_on") == "off\n")
    assert tree.read("damon/kdamond_pid") == "none\n"
    assert tree.read("damon/target_ids") == "\n"
    assert err(lambda: tree.write("damon/monitor_on", "off")) == errno.EPERM
    tree.write("damon/target_ids", "4242")  # writable again
    tree.write("damon/monitor_on", "on")


def test_live_scheme_stats(tree):
    # stat (5) every region of any size, access and age
    everything = f"0 {(1 << 64) - 1} 0 {(1 << 32) - 1} 0 {(1 << 32) - 1} 5 0 0 0 0 0 0 0 0 0 0 0"
    start(tree, "42\n", everything)

    def stats() -> list[int]:
        return [int(x) for x in tree.read("damon/schemes").split()[18:]]

    assert wait_for(lambda: stats()[0] > 0)
    nr_tried, sz_tried, nr_applied, sz_applied, qt_exceeds = stats()
    assert sz_tried >= 4096 * nr_tried and nr_tried > 0
    assert (nr_applied, sz_applied, qt_exceeds) == (0, 0, 0)  # stat applies nothing
    assert wait_for(lambda: stats()[0] > nr_tried)  # still counting: live
    tree.write("damon/monitor_on", "off")
    final = stats()
    assert final[0] >= nr_tried and stats() == final  # kept after the stop


def test_multiple_contexts_run_as_one_exclusive_group(tree):
    tree.write("damon/mk_contexts", "foo")
    tree.write("damon/target_ids", "42")
    tree.write("damon/foo/target_ids", "4242")
    tree.write("damon/foo/attrs", FAST_ATTRS)
    start(tree, "42\n")
    pids = {int(tree.read("damon/kdamond_pid")), int(tree.read("damon/foo/kdamond_pid"))}
    assert len(pids) == 2 and nr_running_kdamonds() == 2
    names = {t.name for t in threading.enumerate() if t.native_id in pids}
    assert names == {"kdamond.0", "kdamond.1"}
    tree.write("damon/monitor_on", "off")
    assert tree.read("damon/foo/kdamond_pid") == "none\n" and nr_running_kdamonds() == 0


def test_sysfs_and_debugfs_exclude_each_other(tree, world):
    # a sysfs kdamond is an ordinary, non-exclusive one
    other = Kdamond(Context(sim.SimOps(world, mode="vaddr"), targets=[Target(pid=4242)]))
    other.start()
    try:
        tree.write("damon/target_ids", "42")
        assert tree.read("damon/monitor_on") == "on\n"  # any kdamond counts
        assert err(lambda: tree.write("damon/monitor_on", "on")) == errno.EBUSY
        assert err(lambda: tree.write("damon/mk_contexts", "foo")) == errno.EBUSY
        assert err(lambda: tree.write("damon/monitor_on", "off")) == errno.EPERM
        assert tree.read("damon/kdamond_pid") == "none\n"
    finally:
        other.stop()
    start(tree, "42\n")
    late = Kdamond(Context(sim.SimOps(world, mode="vaddr"), targets=[Target(pid=4242)]))
    assert err(late.start) == errno.EBUSY
    tree.write("damon/monitor_on", "off")
    late.start()
    late.stop()


def test_events_reach_a_trace_hub(world):
    hub = TraceHub()
    tree = build_debugfs_tree(lambda name: sim.SimOps(world, mode=name), trace_hub=hub)
    try:
        with hub.open_reader() as reader:
            start(tree, "42\n")
            lines: list[str] = []
            assert wait_for(lambda: bool(lines.extend(reader.read_lines(0.05)) or len(lines) > 20))
        kd_pid = int(tree.read("damon/kdamond_pid"))
        assert f"kdamond.0-{kd_pid} " in lines[0] and "damon_aggregated: target_id=0" in lines[0]
    finally:
        tree.model.shutdown()


def test_monitor_on_deprecated_name_is_the_same_file(tree):
    tree.write("damon/target_ids", "42")
    tree.write("damon/attrs", FAST_ATTRS)
    tree.write("damon/monitor_on_DEPRECATED", "on")
    assert tree.read("damon/monitor_on") == "on\n"
    tree.write("damon/monitor_on", "off")
    assert tree.read("damon/monitor_on_DEPRECATED") == "off\n"


def test_tracing_next_to_damon_is_not_a_context(tree):
    # the daemon places tracefs's files next to damon/, as in a real debugfs
    tree.root.entries["tracing"] = build_trace_dir(TraceHub())
    assert sorted(tree.listdir("/")) == ["damon", "tracing"]
    assert err(lambda: tree.write("damon/rm_contexts", "tracing")) == errno.ENOENT
    assert err(lambda: tree.write("damon/rm_contexts", "..")) == errno.ENOENT
    tree.write("damon/mk_contexts", "tracing")  # a context may take that name
    tree.write("damon/rm_contexts", "tracing")
    assert tree.read("tracing/available_events") == "damon:damon_aggregated\n"


def test_pid_checks_release_what_they_take(world):
    held: set[int] = set()
    cleanups: list[int] = []

    class TrackingOps(sim.SimOps):
        def attach(self, target):
            super().attach(target)
            held.add(id(target))

        def detach(self, target):
            held.discard(id(target))
            super().detach(target)

        def cleanup(self, ctx):
            cleanups.append(1)
            super().cleanup(ctx)

    tree = build_debugfs_tree(lambda name: TrackingOps(world, mode=name))
    tree.write("damon/target_ids", "42 4242")
    assert err(lambda: tree.write("damon/target_ids", "42 99999")) == errno.EINVAL
    assert not held and len(cleanups) == 4


def test_exclusion_with_the_sysfs_model(tree, world):
    sysfs = pytest.importorskip("pydamon.interfaces.sysfs")
    admin = sysfs.build_sysfs_tree(lambda name: sim.SimOps(world, mode=name),
                                   ["vaddr", "fvaddr", "paddr"])
    k = "kdamonds"
    admin.write(f"{k}/nr_kdamonds", "1")
    admin.write(f"{k}/0/contexts/nr_contexts", "1")
    admin.write(f"{k}/0/contexts/0/targets/nr_targets", "1")
    admin.write(f"{k}/0/contexts/0/targets/0/pid_target", "4242")
    admin.write(f"{k}/0/state", "on")
    try:
        tree.write("damon/target_ids", "42")
        assert tree.read("damon/monitor_on") == "on\n"
        assert err(lambda: tree.write("damon/monitor_on", "on")) == errno.EBUSY
    finally:
        admin.write(f"{k}/0/state", "off")
    tree.write("damon/attrs", FAST_ATTRS)
    tree.write("damon/monitor_on", "on")
    assert err(lambda: admin.write(f"{k}/0/state", "on")) == errno.EBUSY
    tree.write("damon/monitor_on", "off")
    admin.write(f"{k}/0/state", "on")
    admin.write(f"{k}/0/state", "off")
