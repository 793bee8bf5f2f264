"""Checks done when a kdamond starts on a real kernel, one clear error each.

Every check raises :class:`~pydamon.errors.DamonError` with a one-line
message saying what is missing and how to get it, so a user never sees a
traceback from deep inside a sampling loop instead.
"""

from __future__ import annotations

import errno
import os

from ..errors import DamonError
from . import page_idle, pagemap


def check_root() -> None:
    """The idle bitmap is root-only and pagemap hides frames without CAP_SYS_ADMIN."""
    if os.geteuid() != 0:
        raise DamonError(errno.EPERM, "pydamon's vaddr/fvaddr/paddr need root "
                         "(the idle page bitmap and pagemap frame numbers need CAP_SYS_ADMIN)")


def check_idle_page_tracking(path: str = page_idle.BITMAP_PATH) -> None:
    if not os.path.exists(path):
        raise DamonError(errno.EOPNOTSUPP, f"idle page tracking is missing: {path} does not "
                         "exist; the kernel needs CONFIG_IDLE_PAGE_TRACKING=y")
    if not os.access(path, os.R_OK | os.W_OK):
        raise DamonError(errno.EPERM, f"cannot read and write {path} (needs root)")


def check_kpageflags(path: str = page_idle.KPAGEFLAGS_PATH) -> None:
    if not os.access(path, os.R_OK):
        raise DamonError(errno.EPERM, f"cannot read {path} (needs root and "
                         "CONFIG_PROC_PAGE_MONITOR=y); it tells huge page heads from tails")


def check_pagemap_frames(pagemap_path: str = "/proc/self/pagemap") -> None:
    """Pagemap of a page this process just wrote must show its frame number."""
    import ctypes

    buf = ctypes.create_string_buffer(2 * pagemap.PAGE_SIZE)
    ctypes.memset(buf, 1, len(buf))  # fault the pages in
    addr = ctypes.addressof(buf) + pagemap.PAGE_SIZE // 2
    try:
        with open(pagemap_path, "rb", buffering=0) as f:
            f.seek((addr >> pagemap.PAGE_SHIFT) * pagemap.ENTRY_SIZE)
            raw = f.read(pagemap.ENTRY_SIZE)
    except OSError as e:
        raise DamonError(e.errno or errno.EPERM, f"cannot read {pagemap_path}: "
                         f"{e.strerror} (needs CONFIG_PROC_PAGE_MONITOR=y)") from None
    entry = int.from_bytes(raw, "little") if len(raw) == 8 else 0
    if not entry & pagemap.PM_PRESENT or not entry & pagemap.PFN_MASK:
        raise DamonError(errno.EPERM, f"{pagemap_path} hides page frame numbers "
                         "(needs CAP_SYS_ADMIN)")


def check_pid(pid: int | None) -> None:
    if pid is None or pid <= 0:
        raise DamonError(errno.EINVAL, f"target pid {pid} is not a process id")
    if not os.path.exists(f"/proc/{pid}"):
        raise DamonError(errno.EINVAL, f"target pid {pid}: no such process")


def check_real_kernel_ready() -> None:
    """All checks the real operations sets need, in the order a user fixes them."""
    check_idle_page_tracking()
    check_root()
    check_kpageflags()
    check_pagemap_frames()
