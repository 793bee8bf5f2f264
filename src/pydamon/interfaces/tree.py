"""A tree of files and directories that behave like kernfs/debugfs entries.

The sysfs and debugfs models are built from these nodes and know nothing
of FUSE; the FUSE adapter serves any tree of them. Every operation on a
tree is made under the tree's lock (the kernel's damon_sysfs_lock), so the
models need no locking of their own.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable, Iterator

from ..errors import DamonError

READ_WRITE = 0o600
READ_ONLY = 0o400
WRITE_ONLY = 0o200


class Node:
    mode: int = READ_ONLY


class File(Node):
    """A regular attribute file: whole-content reads, one-shot writes.

    ``read`` returns the full text (the FUSE adapter slices it by offset);
    ``write`` gets the whole text written (a single write() call, as
    sysfs/debugfs take it) and raises :class:`DamonError` with the errno
    the kernel would return.
    """

    def __init__(self, read: Callable[[], str] | None = None,
                 write: Callable[[str], None] | None = None, mode: int | None = None,
                 *, single_write: bool = False):
        self._read = read
        self._write = write
        if mode is None:
            mode = (READ_ONLY if read else 0) | (WRITE_ONLY if write else 0)
        self.mode = mode
        #: debugfs files take one write() per open: a continued write
        #: (offset > 0) is EINVAL; sysfs files take every write() as a store
        self.single_write = single_write

    def read(self) -> str:
        if self._read is None:
            raise DamonError(errno.EACCES, "file is write-only")
        return self._read()

    def write(self, data: str, offset: int = 0) -> None:
        """Store ``data``; ``offset`` is the file position of this write() call."""
        if self._write is None:
            raise DamonError(errno.EACCES, "file is read-only")
        if offset and self.single_write:
            raise DamonError(errno.EINVAL, "continued writes are not accepted")
        self._write(data)


class StreamFile(Node):
    """A pipe-like file (``trace_pipe``): each open gets its own reader.

    ``open()`` returns a reader whose ``read(size, timeout)`` returns the
    next bytes, waiting up to ``timeout`` seconds for some to arrive and
    returning ``b""`` only when there is nothing.
    """

    mode = READ_ONLY

    def __init__(self, open_reader: Callable[[], StreamReader]):
        self._open = open_reader

    def open(self) -> StreamReader:
        return self._open()


class StreamReader:
    def read(self, size: int, timeout: float) -> bytes:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        pass


class Dir(Node):
    """A directory whose children may change (``nr_*`` writes rebuild them)."""

    mode = 0o755

    def __init__(self, children: dict[str, Node] | None = None):
        self.entries: dict[str, Node] = dict(children or {})

    def children(self) -> dict[str, Node]:
        return self.entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.children())


class Tree:
    """A root directory and the lock every access to it takes.

    A tree whose model calls :meth:`structure_changed` whenever it removes
    a file or directory sets ``notifies_structure_changes``; the FUSE adapter
    then lets the kernel cache lookups and invalidates only what went away.
    """

    #: the model calls structure_changed() after removing nodes
    notifies_structure_changes = False

    def __init__(self, root: Dir):
        self.root = root
        self.lock = threading.RLock()
        #: bumped by structure_changed()
        self.generation = 0

    def structure_changed(self) -> None:
        self.generation += 1

    def lookup(self, path: str) -> Node:
        node: Node = self.root
        for part in path.strip("/").split("/"):
            if not part:
                continue
            if not isinstance(node, Dir):
                raise DamonError(errno.ENOTDIR, path)
            try:
                node = node.children()[part]
            except KeyError:
                raise DamonError(errno.ENOENT, path) from None
        return node

    def read(self, path: str) -> str:
        with self.lock:
            node = self.lookup(path)
            if not isinstance(node, File):
                raise DamonError(errno.EISDIR if isinstance(node, Dir) else errno.EINVAL, path)
            return node.read()

    def write(self, path: str, data: str, offset: int = 0) -> None:
        with self.lock:
            node = self.lookup(path)
            if not isinstance(node, File):
                raise DamonError(errno.EISDIR if isinstance(node, Dir) else errno.EINVAL, path)
            node.write(data, offset)

    def listdir(self, path: str) -> list[str]:
        with self.lock:
            node = self.lookup(path)
            if not isinstance(node, Dir):
                raise DamonError(errno.ENOTDIR, path)
            return list(node.children())
