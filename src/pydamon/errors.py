"""Errors that carry the errno the kernel's DAMON would return."""

from __future__ import annotations

import errno as _errno
import os


class DamonError(OSError):
    """An error of the DAMON API, with the kernel's errno.

    Subclassing OSError lets the FUSE adapter and the command line turn it
    into the exact errno a kernel interface would give (``EINVAL``,
    ``EBUSY``, ...) without a translation table.
    """

    def __init__(self, err: int, message: str = ""):
        super().__init__(err, message or os.strerror(err))

    @property
    def errname(self) -> str:
        return _errno.errorcode.get(self.errno, str(self.errno))


def einval(message: str) -> DamonError:
    return DamonError(_errno.EINVAL, message)


def ebusy(message: str) -> DamonError:
    return DamonError(_errno.EBUSY, message)


def eperm(message: str) -> DamonError:
    return DamonError(_errno.EPERM, message)
