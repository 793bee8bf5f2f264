"""NUMA nodes, and ``move_pages(2)``: where a process's pages are, and moving them.

``move_pages(pid, count, pages, nodes, status, flags)`` (syscall 279 on
x86_64) takes addresses of pages of a process. With a node for each page
it migrates the page to that node; with ``nodes`` NULL it only reports
the node each page is on. ``status[i]`` receives the node, or a negative
errno, for page i. What the kernel does (mm/migrate.c: ``do_pages_move``,
``add_page_for_migration`` -- ``add_folio_for_migration`` since 6.11 --,
``do_pages_stat_array``, ``find_mm_struct``), and what callers rely on:

* the address is resolved to its folio and the whole folio is isolated and
  migrated: one address of a PMD-mapped transparent huge page moves all
  2 MiB. If the target node has no free huge page, the migration core
  (``migrate_pages_batch``) splits the folio, counts the split as a
  failure and moves the base pages, some of which may fail; the call then
  reports failure (below). A status equal to the target node therefore
  means the whole folio got there;
* a page already on the target node is left alone and its status is the
  target node, the same as for a page that was moved; who wants to know
  what moved must ask where the pages were first (:func:`page_nodes`);
* failures of single pages go to ``status`` and the call goes on:
  ``-EFAULT`` (no mapping, a mapping that cannot migrate, the zero page),
  ``-ENOENT`` (not present), ``-EACCES`` (mapped by more than one process,
  unless ``MPOL_MF_MOVE_ALL``), ``-EBUSY`` (could not be isolated; e.g.
  another address of a folio already queued in the same call);
* pages are queued in stretches that end at every per-page failure; if
  migrating a stretch fails for some pages, the call stops and returns the
  number of pages not migrated (> 0), and the status of that stretch and
  of every later page is left as the caller wrote it. :func:`move_pages`
  fills status with :data:`STATUS_UNSET` first, so those read "unknown";
* the whole call fails with ``ENODEV`` for a node that is not online or has
  no memory, ``EACCES`` for a node outside the process's cpuset,
  ``ESRCH`` for no such process, ``EPERM`` without ptrace read access to
  the process (``PTRACE_MODE_READ_REALCREDS``; root has it) or for
  ``MPOL_MF_MOVE_ALL`` without ``CAP_SYS_NICE``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Sequence

import numpy as np

from . import syscount

SYS_MOVE_PAGES = 279  # x86_64
MPOL_MF_MOVE = 1 << 1  # move pages mapped only by this process
MPOL_MF_MOVE_ALL = 1 << 2  # also pages mapped by others (CAP_SYS_NICE)

#: pages per call: the kernel takes any count, but a bounded call keeps the
#: arrays small and lets a stopped process or a full node end the work early
MAX_PAGES_PER_CALL = 4096

#: what :func:`move_pages` puts in ``status`` before the call: neither a node
#: nor an errno, so an entry the kernel did not write reads as unknown
STATUS_UNSET = -(1 << 31)

NODE_DIR = "/sys/devices/system/node"

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


class MovePagesError(OSError):
    """move_pages failed as a whole; ``status`` holds what it wrote before failing."""

    def __init__(self, err: int, msg: str, status: np.ndarray):
        super().__init__(err, msg)
        self.status = status


def parse_node_list(text: str) -> list[int]:
    """Nodes of a sysfs node list such as ``0-1,3`` (empty text: no node)."""
    nodes: list[int] = []
    for part in text.strip().split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        first = int(lo)
        last = int(hi) if sep else first
        if last < first:
            raise ValueError(f"bad node range {part!r}")
        nodes.extend(range(first, last + 1))
    return nodes


def _read_node_list(name: str, node_dir: str) -> list[int]:
    try:
        with open(os.path.join(node_dir, name)) as f:
            return parse_node_list(f.read())
    except FileNotFoundError:
        return []  # no /sys/devices/system/node: a kernel without CONFIG_NUMA


def online_nodes(node_dir: str = NODE_DIR) -> list[int]:
    """Online NUMA nodes (``/sys/devices/system/node/online``)."""
    return _read_node_list("online", node_dir)


def memory_nodes(node_dir: str = NODE_DIR) -> list[int]:
    """Nodes that have memory (``has_memory``): the only ones pages can move to."""
    return _read_node_list("has_memory", node_dir)


def _call(pid: int, addrs: np.ndarray, nodes: np.ndarray | None, status: np.ndarray,
          flags: int) -> int:
    """The system call itself: its return value, or -errno."""
    n = len(addrs)
    ret = _syscall(ctypes.c_long(SYS_MOVE_PAGES), ctypes.c_int(pid), ctypes.c_ulong(n),
                   ctypes.c_void_p(addrs.ctypes.data),
                   None if nodes is None else ctypes.c_void_p(nodes.ctypes.data),
                   ctypes.c_void_p(status.ctypes.data), ctypes.c_int(flags))
    return int(ret) if ret >= 0 else -ctypes.get_errno()


def move_pages(pid: int, addrs: Sequence[int] | np.ndarray, node: int,
               flags: int = MPOL_MF_MOVE) -> tuple[int, np.ndarray]:
    """Move the pages at ``addrs`` of process ``pid`` to ``node``, in one call.

    Returns (pages the kernel reported not migrated, status per page: the
    node, -errno, or :data:`STATUS_UNSET` where the kernel wrote nothing).
    Raises :class:`MovePagesError` (an OSError) when the call failed as a whole.
    """
    a = np.ascontiguousarray(addrs, dtype=np.uint64)
    nodes = np.full(len(a), node, dtype=np.int32)
    status = np.full(len(a), STATUS_UNSET, dtype=np.int32)
    if not len(a):
        return 0, status
    syscount.add("move_pages")
    ret = _call(pid, a, nodes, status, flags)
    if ret < 0:
        raise MovePagesError(-ret, f"move_pages: {os.strerror(-ret)}", status)
    return ret, status


def page_nodes(pid: int, addrs: Sequence[int] | np.ndarray) -> np.ndarray:
    """The node each page at ``addrs`` of process ``pid`` is on (-errno where none).

    ``move_pages`` with ``nodes`` NULL, :data:`MAX_PAGES_PER_CALL` pages a
    call. Raises OSError (ESRCH once the process is gone, EPERM).
    """
    a = np.ascontiguousarray(addrs, dtype=np.uint64)
    status = np.full(len(a), STATUS_UNSET, dtype=np.int32)
    for i in range(0, len(a), MAX_PAGES_PER_CALL):
        part = a[i:i + MAX_PAGES_PER_CALL]
        out = np.full(len(part), STATUS_UNSET, dtype=np.int32)
        syscount.add("page_nodes")
        ret = _call(pid, part, None, out, 0)
        if ret < 0:
            raise OSError(-ret, f"move_pages (query): {os.strerror(-ret)}")
        status[i:i + len(part)] = out
    return status
