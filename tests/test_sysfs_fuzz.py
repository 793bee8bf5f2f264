"""Fuzzing of writes to every sysfs file (hypothesis).

Random sequences of writes (numbers at and beyond every boundary, keywords,
state commands, garbage with NULs and newlines) go to files picked from the
current tree, through the FUSE adapter's operations (no mount) and, in a
smaller run, through a real mount. After every write: only errno values the
kernel's sysfs uses come back, nothing raises, and the tree stays consistent
(every ``nr_*`` file matches its children, every file reads, ``state`` and
``pid`` agree).
"""

from __future__ import annotations

import errno
import os
import re

import mfusepy
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pydamon.interfaces.fuse import TreeOperations
from pydamon.interfaces.sysfs import MAX_CHILDREN, STATE_COMMANDS, build_sysfs_tree
from pydamon.interfaces.tree import Dir, File
from sysfs_fakeops import fake_factory

#: what the kernel's sysfs stores and kernfs answer a write with
KERNEL_ERRNOS = {errno.EINVAL, errno.ERANGE, errno.EBUSY, errno.EPERM, errno.ENOMEM,
                 errno.EACCES, errno.ENOENT}

_TRIED_REGION = re.compile(r"/tried_regions/\d")

COUNT_FILES = {"nr_kdamonds", "nr_contexts", "nr_targets", "nr_regions", "nr_schemes",
               "nr_filters", "nr_goals"}

KEYWORDS = [
    *STATE_COMMANDS, "vaddr", "fvaddr", "paddr", "stat", "pageout", "willneed", "cold",
    "hugepage", "nohugepage", "lru_prio", "lru_deprio", "migrate_hot", "migrate_cold",
    "none", "free_mem_rate", "user_input", "some_mem_psi_us", "node_mem_used_bp",
    "anon", "active", "memcg", "young", "hugepage_size", "unmapped", "addr", "target",
    "Y", "N", "on\n", "/", "/nonexistent",
]
BOUNDARIES = [0, 1, 2, 3, 5, 10, 4096, 5000, 100000, (1 << 31) - 1, 1 << 31, (1 << 32) - 1,
              1 << 32, (1 << 63) - 1, 1 << 63, (1 << 64) - 1, 1 << 64, MAX_CHILDREN + 1]


def number_texts() -> st.SearchStrategy[str]:
    small = st.integers(min_value=-3, max_value=12)
    value = st.one_of(small, st.sampled_from(BOUNDARIES), st.integers(-(1 << 70), 1 << 70))
    fmt = st.sampled_from(["{}", "{}\n", "+{}", "0x{:x}", "0{:o}", " {}", "{}x", "-{}"])
    return st.builds(lambda v, f: f.format(abs(v)) if "x" in f or "o" in f else f.format(v),
                     value, fmt)


DATA = st.one_of(
    number_texts(),
    st.sampled_from(KEYWORDS),
    st.builds(lambda k, n: k + n, st.sampled_from(KEYWORDS), st.sampled_from(["\0junk", "\n\n", "x"])),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=255), max_size=24),
)


def populated_tree():
    tree = build_sysfs_tree(fake_factory, ["vaddr", "fvaddr", "paddr"])
    populate(tree.write)
    return tree


def populate(w) -> None:
    w("kdamonds/nr_kdamonds", "1")
    c = "kdamonds/0/contexts"
    w(f"{c}/nr_contexts", "1")
    w(f"{c}/0/operations", "paddr")
    w(f"{c}/0/targets/nr_targets", "1")
    w(f"{c}/0/targets/0/regions/nr_regions", "1")
    w(f"{c}/0/schemes/nr_schemes", "1")
    for d in ("filters", "core_filters", "ops_filters"):
        w(f"{c}/0/schemes/0/{d}/nr_filters", "1")
    w(f"{c}/0/schemes/0/quotas/goals/nr_goals", "1")


def files_of(node: Dir, prefix: str = "") -> list[str]:
    out = []
    for name, child in node.children().items():
        path = f"{prefix}/{name}"
        if isinstance(child, Dir):
            out += files_of(child, path)
        elif isinstance(child, File) and not _TRIED_REGION.search(path):
            # tried regions come and go with timing; the draws must not
            out.append(path)
    return out


def check_consistent(tree, ops: TreeOperations) -> None:
    """Every nr_* file matches its children, every file reads, state and pid agree."""

    def walk(node: Dir, path: str) -> None:
        children = node.children()
        nr_files = [n for n, c in children.items() if n in COUNT_FILES and isinstance(c, File)]
        if nr_files:
            numbered = sorted((n for n in children if n.isdigit()), key=int)
            nr = int(tree.read(f"{path}/{nr_files[0]}"))
            assert numbered == [str(i) for i in range(nr)], path
        for name, child in children.items():
            p = f"{path}/{name}"
            if isinstance(child, Dir):
                walk(child, p)
            else:
                fh = ops.open(p, os.O_RDONLY)
                try:
                    text = ops.read(p, 4096, 0, fh).decode("latin-1")
                finally:
                    ops.release(p, fh)
                assert text.endswith("\n") or text == "", p

    walk(tree.root, "")
    for kd in tree.model.kdamond_dirs():
        state = tree.read(f"kdamonds/{kd.idx}/state")
        pid = int(tree.read(f"kdamonds/{kd.idx}/pid"))
        assert state in ("on\n", "off\n")
        # a kdamond may stop by itself between the two reads, never start
        assert state == "off\n" or pid > 0 or not kd.running


def write_through(ops: TreeOperations, path: str, data: bytes) -> int:
    """Write like ``echo > file`` does; 0 or the errno."""
    try:
        fh = ops.open(path, os.O_WRONLY | os.O_TRUNC)
    except mfusepy.FuseOSError as e:
        return e.errno
    try:
        ops.truncate(path, 0, fh)
        ops.write(path, data, 0, fh)
        return 0
    except mfusepy.FuseOSError as e:
        return e.errno
    finally:
        ops.release(path, fh)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_writes_through_adapter(data):
    tree = populated_tree()
    ops = TreeOperations(tree)
    try:
        for _ in range(data.draw(st.integers(1, 15), label="nr_writes")):
            files = files_of(tree.root)
            path = data.draw(st.sampled_from(files), label="path")
            if path.endswith("/state"):
                text = data.draw(st.one_of(st.sampled_from(STATE_COMMANDS), DATA), label="data")
            else:
                text = data.draw(DATA, label="data")
            err = write_through(ops, path, text.encode("latin-1"))
            assert err == 0 or err in KERNEL_ERRNOS, (path, text, errno.errorcode.get(err))
            check_consistent(tree, ops)
    finally:
        tree.shutdown()


@pytest.mark.fuse
@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/dev/fuse"),
                    reason="needs root and /dev/fuse")
def test_fuzz_writes_through_a_mount(tmp_path):
    from pydamon.daemon import Daemon

    tree = populated_tree()
    mnt = tmp_path / "admin"
    daemon = Daemon(str(mnt), None, False, sysfs_tree=tree)
    daemon.start()

    def mount_write(path: str, text: str) -> None:
        fd = os.open(f"{mnt}/{path}", os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)

    try:
        @settings(max_examples=60, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow,
                                         HealthCheck.function_scoped_fixture])
        @given(st.data())
        def fuzz(data):
            # every example starts from the same tree, set up through the mount
            for kd in tree.model.kdamond_dirs():
                if kd.running:
                    mount_write("kdamonds/0/state", "off")
            mount_write("kdamonds/nr_kdamonds", "0")
            populate(mount_write)
            for _ in range(data.draw(st.integers(1, 10))):
                files = files_of(tree.root)
                path = data.draw(st.sampled_from(files))
                text = data.draw(DATA)
                try:
                    fd = os.open(f"{mnt}{path}", os.O_WRONLY | os.O_TRUNC)
                except OSError as e:
                    assert e.errno in KERNEL_ERRNOS
                    continue
                try:
                    os.write(fd, text.encode("latin-1"))
                except OSError as e:
                    assert e.errno in KERNEL_ERRNOS, (path, text, e)
                finally:
                    os.close(fd)
                # the daemon still answers, and the tree it shows is the model's
                assert os.listdir(mnt) == ["kdamonds"]
                nr = int(open(f"{mnt}/kdamonds/nr_kdamonds").read())
                assert sorted(os.listdir(f"{mnt}/kdamonds")) == sorted(
                    ["nr_kdamonds", *map(str, range(nr))])

        fuzz()
    finally:
        daemon.shutdown()
