"""Process handles that survive PID reuse, and ``process_madvise``.

A pidfd (``pidfd_open``, syscall 434) names one process for its whole
life: it becomes readable when the process exits, and a reused PID never
points it elsewhere. ``process_madvise`` (syscall 440) gives advice about
another process's memory through a pidfd; the kernel accepts COLD, PAGEOUT,
WILLNEED and COLLAPSE there.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import select

from . import syscount

SYS_PIDFD_OPEN = 434
SYS_PROCESS_MADVISE = 440

MADV_WILLNEED = 3
MADV_HUGEPAGE = 14
MADV_NOHUGEPAGE = 15
MADV_COLD = 20
MADV_PAGEOUT = 21
MADV_COLLAPSE = 25

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


class _Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


def pidfd_open(pid: int) -> int:
    """A pidfd of ``pid`` (OSError ESRCH if there is no such process)."""
    if hasattr(os, "pidfd_open"):
        return os.pidfd_open(pid)
    fd = _syscall(ctypes.c_long(SYS_PIDFD_OPEN), ctypes.c_int(pid), ctypes.c_uint(0))
    if fd < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return int(fd)


def pidfd_exited(pidfd: int) -> bool:
    """True once the process behind ``pidfd`` has exited (its pidfd polls readable)."""
    syscount.add("pidfd_poll")
    r, _, _ = select.select([pidfd], [], [], 0)
    return bool(r)


def process_madvise(pidfd: int, ranges: list[tuple[int, int]], advice: int) -> int:
    """Advise ``(start, length)`` ranges of the process; returns the bytes the kernel
    advised. Raises OSError when it advised nothing."""
    n = len(ranges)
    iov = (_Iovec * n)(*[_Iovec(start, length) for start, length in ranges])
    syscount.add("madvise")
    ret = _syscall(ctypes.c_long(SYS_PROCESS_MADVISE), ctypes.c_int(pidfd), iov,
                   ctypes.c_size_t(n), ctypes.c_int(advice), ctypes.c_uint(0))
    if ret < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"process_madvise: {os.strerror(e)}")
    return int(ret)


def process_madvise_supported() -> bool:
    """Whether the kernel has process_madvise (ENOSYS before 5.10)."""
    try:
        process_madvise(-1, [], MADV_COLD)
    except OSError as e:
        return e.errno != errno.ENOSYS
    return True
