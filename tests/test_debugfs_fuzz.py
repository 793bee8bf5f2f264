"""Fuzzing the debugfs files: no crash, only the kernel's errno values, a consistent tree.

Random sequences of reads and writes (random text, near-valid numbers,
keywords, continued writes) go to every file of the root and of contexts
that may or may not exist. After each operation the tree must still be
well formed and every file must read back in its format; writing back what
was read must give the same state.
"""

from __future__ import annotations

import errno

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pydamon.core import Action, MonitoringAttrs, nr_running_kdamonds
from pydamon.core.regions import AddrRange
from pydamon.errors import DamonError, einval
from pydamon.interfaces.debugfs import (
    CONTEXT_FILES,
    ROOT_FILES,
    DebugfsTree,
    build_debugfs_tree,
)
from pydamon.ops import Operations

#: every errno the kernel's debugfs files (and the VFS around them) answer
KERNEL_ERRNOS = {errno.EINVAL, errno.EBUSY, errno.EPERM, errno.ENOENT, errno.EEXIST,
                 errno.EACCES, errno.ENAMETOOLONG}
LIVE_PIDS = {42, 4242}
#: bigger region limits could grow paddr regions past memory in a fuzz run
MAX_REGIONS_TO_RUN = 4096


class TinyVaddr(Operations):
    """Three small mappings per process, so that no fuzzed attrs make many regions."""

    name = "vaddr"
    auto_regions = True
    supported_actions = frozenset(Action)

    def attach(self, target):
        if target.pid not in LIVE_PIDS:
            raise einval(f"no pid {target.pid}")

    def target_mappings(self, target):
        return [(0x10000, 0x14000), (0x100000, 0x104000), (0x7F0000, 0x7F4000)]

    def check_accesses(self, target, addrs):
        return (np.asarray(addrs) // 4096) % 3 == 0


class TinyPaddr(TinyVaddr):
    name = "paddr"
    auto_regions = False
    targets_have_pid = False

    def attach(self, target):
        pass

    def default_ranges(self, target):
        return [AddrRange(0, 1 << 20)]


def tiny_ops(name: str) -> Operations:
    return {"vaddr": TinyVaddr, "paddr": TinyPaddr}[name]()


NUMBER = st.one_of(
    st.integers(0, 20), st.integers(0, 5000),
    st.sampled_from([-1, 42, 4242, 4096, 99999, 2**31 - 1, 2**31, 2**32 - 1, 2**32,
                     2**63 - 1, 2**63, 2**64 - 1, 2**64]),
)
SEPARATOR = st.sampled_from([" ", "  ", "\t", "\n"])


@st.composite
def numbers(draw, min_size: int = 0, max_size: int = 40) -> str:
    values = draw(st.lists(NUMBER, min_size=min_size, max_size=max_size))
    out = ""
    for v in values:
        out += str(v) + draw(SEPARATOR)
    return out


KEYWORD = st.sampled_from(["on", "off", "paddr", "foo", "bar", "attrs", "o", "of", "p", "",
                           " ", "on off", "42", "42 4242", "4242 42 42", "a/b", ".."])
DATA = st.one_of(
    st.text(max_size=60),
    numbers(),
    numbers(min_size=18, max_size=18),
    numbers(min_size=36, max_size=37),
    numbers(min_size=3, max_size=9),
    numbers(min_size=5, max_size=5),
    st.builds(lambda k, nl: k + nl, KEYWORD, st.sampled_from(["", "\n"])),
)
FILES = CONTEXT_FILES + ROOT_FILES
PLACE = st.sampled_from(["", "foo/", "bar/"])
RAW_OPERATION = st.tuples(
    st.sampled_from(["write", "write", "write", "read"]), PLACE, st.sampled_from(FILES),
    DATA, st.sampled_from([0, 0, 0, 0, 0, 1, 7]),
)
# steps a user takes on purpose, so that runs start often enough to be fuzzed too
USER_STEP = st.one_of(
    st.tuples(st.just("write"), PLACE, st.just("target_ids"),
              st.sampled_from(["42\n", "42 4242\n", "paddr\n"]), st.just(0)),
    st.tuples(st.just("write"), PLACE, st.just("attrs"),
              st.just("1000 10000 1000000 10 1000\n"), st.just(0)),
    st.tuples(st.just("write"), st.just(""), st.just("monitor_on"),
              st.sampled_from(["on\n", "off\n"]), st.just(0)),
    st.tuples(st.just("write"), st.just(""), st.sampled_from(["mk_contexts", "rm_contexts"]),
              st.sampled_from(["foo\n", "bar\n"]), st.just(0)),
    # give every context a target, then turn on
    st.tuples(st.just("start"), st.just(""), st.just("monitor_on"),
              st.sampled_from(["42\n", "4242 42\n", "paddr\n"]), st.just(0)),
)
OPERATION = st.one_of(RAW_OPERATION, USER_STEP, USER_STEP)


def check_consistent(tree: DebugfsTree) -> None:
    model = tree.model
    names = [c.name for c in model.contexts]
    assert names[0] == "" and len(set(names)) == len(names)
    assert set(tree.listdir("damon")) == set(FILES) | set(names[1:])
    for c in model.contexts:
        prefix = f"damon/{c.name}/" if c.name else "damon/"
        if c.name:
            assert set(tree.listdir(prefix)) == set(CONTEXT_FILES)
        attrs = [int(x) for x in tree.read(prefix + "attrs").split()]
        assert len(attrs) == 5
        MonitoringAttrs(*attrs).validate()
        ids = tree.read(prefix + "target_ids")
        assert ids.endswith("\n") and all(x.lstrip("-").isdigit() for x in ids.split())
        assert len(ids.split()) == len(c.targets) <= 32
        for line in tree.read(prefix + "schemes").splitlines():
            fields = line.split(" ")
            assert len(fields) == 23 and all(f.isdigit() for f in fields)
            assert 0 <= int(fields[6]) <= 5
        pid = tree.read(prefix + "kdamond_pid")
        assert pid == "none\n" or (pid.strip().isdigit() and c.running)
        if c.running:
            assert err_of(lambda p=prefix: tree.read(p + "init_regions")) == errno.EBUSY
        else:
            for line in tree.read(prefix + "init_regions").splitlines():
                idx, start, end = (int(x) for x in line.split())
                assert 0 <= idx < len(c.targets) and start < end
    on = tree.read("damon/monitor_on")
    assert on == ("on\n" if nr_running_kdamonds() else "off\n")


def check_round_trip(tree: DebugfsTree) -> None:
    """Writing back what a stopped context's files show changes nothing."""
    for c in tree.model.contexts:
        if c.running:
            continue
        prefix = f"damon/{c.name}/" if c.name else "damon/"
        for name in ("attrs", "init_regions"):
            before = tree.read(prefix + name)
            tree.write(prefix + name, before)
            assert tree.read(prefix + name) == before
        schemes = tree.read(prefix + "schemes")
        configs = "".join(" ".join(line.split(" ")[:18]) + "\n" for line in schemes.splitlines())
        params = [(s.pattern, s.action, s.quota, s.wmarks) for s in c.schemes]
        tree.write(prefix + "schemes", configs)
        assert [(s.pattern, s.action, s.quota, s.wmarks) for s in c.schemes] == params
        if c.ops_name == "vaddr":
            ids = tree.read(prefix + "target_ids")
            regions = tree.read(prefix + "init_regions")
            tree.write(prefix + "target_ids", ids)
            tree.write(prefix + "init_regions", regions)
            assert tree.read(prefix + "target_ids") == ids
            assert tree.read(prefix + "init_regions") == regions


def err_of(fn) -> int | None:
    try:
        fn()
    except DamonError as e:
        return e.errno
    return None


def apply(tree: DebugfsTree, op: tuple[str, str, str, str, int]) -> None:
    kind, place, name, data, offset = op
    if kind == "start":
        for c in list(tree.model.contexts):
            prefix = f"damon/{c.name}/" if c.name else "damon/"
            apply(tree, ("write", "", prefix[6:] + "target_ids", data, 0))
        kind, data = "write", "on\n"
    if place and name in ROOT_FILES:
        place = ""  # root-only files exist only there
    path = f"damon/{place}{name}"
    if (kind == "write" and name.startswith("monitor_on") and data.split()[:1] == ["on"]
            and any(c.attrs.max_nr_regions > MAX_REGIONS_TO_RUN for c in tree.model.contexts)):
        return  # a resource limit of the fuzz, not of the model
    try:
        if kind == "write":
            tree.write(path, data, offset)
        else:
            tree.read(path)
    except DamonError as e:
        assert e.errno in KERNEL_ERRNOS, (op, e)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(OPERATION, max_size=25))
def test_fuzz_operations_keep_the_tree_consistent(ops):
    tree = build_debugfs_tree(tiny_ops, seed=0)
    try:
        for op in ops:
            apply(tree, op)
            check_consistent(tree)
            if any(c.running for c in tree.model.contexts):
                event("a kdamond ran")
            if len(tree.model.contexts) > 1:
                event("a context was made")
        check_round_trip(tree)
        check_consistent(tree)
    finally:
        tree.model.shutdown()
    assert nr_running_kdamonds() == 0


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(FILES), st.one_of(DATA, st.binary(max_size=40).map(
    lambda b: b.decode("latin-1"))))
def test_fuzz_single_writes_answer_kernel_errnos(name, data):
    tree = build_debugfs_tree(tiny_ops, seed=0)
    tree.write("damon/target_ids", "42 4242\n")
    tree.write("damon/attrs", "1000 10000 1000000 10 1000\n")
    try:
        if name.startswith("monitor_on") and data.split()[:1] == ["on"]:
            return  # covered by the sequence fuzz; keep this one fast
        code = err_of(lambda: tree.write(f"damon/{name}", data))
        assert code is None or code in KERNEL_ERRNOS
        check_consistent(tree)
    finally:
        tree.model.shutdown()


@pytest.mark.parametrize("name", CONTEXT_FILES + ROOT_FILES)
def test_every_file_rejects_a_continued_write(name):
    tree = build_debugfs_tree(tiny_ops)
    assert err_of(lambda: tree.write(f"damon/{name}", "1", offset=3)) == errno.EINVAL
