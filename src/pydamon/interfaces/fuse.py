"""Serve a :class:`~pydamon.interfaces.tree.Tree` as a FUSE filesystem (mfusepy, libfuse3).

What makes a FUSE mount behave like sysfs/debugfs for tools such as damo:

- zero entry/attribute/negative cache timeouts, so that a directory removed
  by an ``nr_*`` write is gone for the very next ``stat``;
- ``direct_io`` and a reported size of 4096, so that every read asks the
  tree for fresh content;
- in a tree with stream files, a file's content is produced once per open
  file, at its first read, and later reads slice that snapshot (what
  kernfs's seq_file does); a tree without them (sysfs) keeps no per-open
  state, to spare the close callback, and makes the content at every read
  (all its files fit in one read, so a ``cat`` sees one version unless the
  content changes between its read and the end-of-file read);
- a write acts only in ``write()``, which returns the tree's errno to the
  writer; ``truncate`` (``O_TRUNC`` from ``echo >``) is a harmless no-op;
- opening a 0400 file for writing fails with EACCES, even for root.

Caching: a tree whose model reports structural changes
(``Tree.notifies_structure_changes``, the sysfs model does) lets the kernel
cache lookups and attributes, and the adapter invalidates the cached
attributes of every path that disappeared (``fuse_invalidate_path``, which
in libfuse3 invalidates the inode, not the entry: a stale entry then
answers ENOENT to stat and open) before the write that removed them returns. Without it, a 7-component sysfs path costs 7
LOOKUP round trips per open; with it, one open+read costs ~4 requests. A tree
that does not report changes (debugfs) is served with zero timeouts.

Threading: a tree without :class:`~pydamon.interfaces.tree.StreamFile` is
served single-threaded (``nothreads``): about 2.5x faster per request than
libfuse's thread pool, and the tree lock serializes requests anyway. A tree
with a stream file (``trace_pipe``, whose reads block until data arrives) is
served multi-threaded so a blocked reader never stalls other requests; the
blocking wait happens outside the tree lock.
"""

from __future__ import annotations

import ctypes
import errno
import itertools
import logging
import os
import queue
import stat
import threading
import time
from dataclasses import dataclass

os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")

import mfusepy  # noqa: E402  (needs FUSE_LIBRARY_NAME set before import)

from .tree import Dir, File, Node, StreamFile, StreamReader, Tree  # noqa: E402

log = logging.getLogger("pydamon.fuse")

#: What sysfs reports as every attribute file's size.
FILE_SIZE = 4096
#: A sysfs store gets at most one page; longer writes are cut there.
MAX_WRITE = 4096
#: How long a blocked stream read waits before checking for unmount.
STREAM_POLL_S = 0.5
#: Lookup/attribute cache lifetime when the tree reports structure changes.
CACHE_TIMEOUT_S = 3600
#: How long a write waits for the invalidation of what it removed. The wait
#: is bounded because the kernel may need another request of ours (a lookup
#: holding the parent directory's lock) before it can drop the entries.
INVALIDATE_WAIT_S = 0.2
#: Paths whose nodes the adapter remembers (cache mode), at most.
LOOKUP_CACHE_SIZE = 65536


@dataclass
class _OpenFile:
    node: Node
    content: bytes | None = None
    reader: StreamReader | None = None


def _errno_of(e: BaseException) -> int:
    if isinstance(e, OSError) and isinstance(e.errno, int) and e.errno > 0:
        return e.errno
    return errno.EINVAL


def _under_any(path: str, dirs: set[str]) -> bool:
    while path:
        if path in dirs:
            return True
        path = path.rpartition("/")[0]
    return False


def tree_has_stream(node: Node) -> bool:
    if isinstance(node, StreamFile):
        return True
    if isinstance(node, Dir):
        return any(tree_has_stream(child) for child in node.children().values())
    return False


class TreeOperations(mfusepy.Operations):
    """mfusepy operations over a tree; usable without mounting (tests call it directly)."""

    use_ns = True

    def __init__(self, tree: Tree, cache: bool | None = None):
        self.tree = tree
        self.cache = tree.notifies_structure_changes if cache is None else cache
        #: no stream files: open files need no state (content is made at each
        #: read), which spares a Python callback per close
        self.stateless = not tree_has_stream(tree.root)
        self._files: dict[int, _OpenFile] = {}
        self._next_fh = itertools.count(1)
        self._closing = threading.Event()
        # paths the kernel may hold in its caches (cache mode): path -> is a directory
        self._seen: dict[str, bool] = {}
        self._seen_lock = threading.Lock()
        self._invalidator: _Invalidator | None = None
        self._lookup_cache: dict[str, Node] = {}
        self._lookup_generation = tree.generation
        now = time.time_ns()
        self._time = now
        self._uid = os.getuid()
        self._gid = os.getgid()

    def closing(self) -> None:
        """Wake blocked stream readers: the filesystem is going away."""
        self._closing.set()
        if self._invalidator is not None:
            self._invalidator.stop()

    def init(self, path: str) -> None:
        if self.cache:
            self._invalidator = _Invalidator(mfusepy._libfuse.fuse_get_context().contents.fuse)

    # -- cache invalidation --------------------------------------------------------
    def _invalidate_removed(self) -> None:
        """Make the kernel re-ask about every cached path that no longer exists.

        Models remove whole directories, so only directories are checked;
        every seen path under a removed one is gone with it.
        """
        with self.tree.lock, self._seen_lock:
            gone_dirs = set()
            for path, is_dir in self._seen.items():
                if not is_dir:
                    continue
                try:
                    node = self.tree.lookup(path)
                except OSError:
                    node = None
                if not isinstance(node, Dir):
                    gone_dirs.add(path)
            if not gone_dirs:
                return
            gone = [p for p in self._seen if _under_any(p, gone_dirs)]
            for path in gone:
                del self._seen[path]
        if self._invalidator is not None:
            self._invalidator.invalidate(gone, INVALIDATE_WAIT_S)

    # -- lookups ---------------------------------------------------------------
    def _lookup(self, path: str) -> Node:
        """The node at ``path`` (call under the tree lock).

        In cache mode, found nodes are remembered until the tree reports a
        structure change: a model that reports removals replaces nodes only
        by removing them first, so a remembered node is the current one.
        """
        if self.cache:
            if self._lookup_generation != self.tree.generation:
                self._lookup_cache.clear()
                self._lookup_generation = self.tree.generation
            node = self._lookup_cache.get(path)
            if node is not None:
                return node
        try:
            node = self.tree.lookup(path)
        except OSError as e:
            raise mfusepy.FuseOSError(_errno_of(e)) from None
        if self.cache:
            if len(self._lookup_cache) >= LOOKUP_CACHE_SIZE:
                self._lookup_cache.clear()
            self._lookup_cache[path] = node
        return node

    def getattr(self, path: str, fh: int | None = None) -> dict:
        with self.tree.lock:
            node = self._lookup(path)
            if isinstance(node, Dir):
                mode, size, nlink = stat.S_IFDIR | node.mode, 0, 2
            elif isinstance(node, StreamFile):
                mode, size, nlink = stat.S_IFREG | node.mode, 0, 1
            else:
                mode, size, nlink = stat.S_IFREG | node.mode, FILE_SIZE, 1
            if self.cache:
                with self._seen_lock:
                    self._seen[path] = isinstance(node, Dir)
        t = self._time
        return {"st_mode": mode, "st_nlink": nlink, "st_size": size, "st_uid": self._uid,
                "st_gid": self._gid, "st_atime": t, "st_mtime": t, "st_ctime": t}

    def readdir(self, path: str, fh: int) -> list[str]:
        with self.tree.lock:
            node = self._lookup(path)
            if not isinstance(node, Dir):
                raise mfusepy.FuseOSError(errno.ENOTDIR)
            return [".", "..", *node.children()]

    # -- files -----------------------------------------------------------------------
    def open(self, path: str, flags: int) -> int:
        accmode = flags & os.O_ACCMODE
        with self.tree.lock:
            node = self._lookup(path)
            if isinstance(node, Dir):
                raise mfusepy.FuseOSError(errno.EISDIR)
            wants_read = accmode in (os.O_RDONLY, os.O_RDWR)
            wants_write = accmode in (os.O_WRONLY, os.O_RDWR)
            if (wants_read and not node.mode & 0o400) or (wants_write and not node.mode & 0o200):
                raise mfusepy.FuseOSError(errno.EACCES)
            if self.stateless:
                # nothing to remember per open file: no RELEASE round trip into Python
                return 0
            handle = _OpenFile(node)
        if isinstance(node, StreamFile):
            try:
                handle.reader = node.open()
            except Exception as e:
                raise mfusepy.FuseOSError(_errno_of(e)) from None
        fh = next(self._next_fh)
        self._files[fh] = handle
        return fh

    def _handle(self, fh: int, path: str) -> _OpenFile:
        if not fh:
            # stateless mode: the file at that path now
            with self.tree.lock:
                return _OpenFile(self._lookup(path))
        try:
            return self._files[fh]
        except KeyError:
            raise mfusepy.FuseOSError(errno.EBADF) from None

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        if not fh:
            # stateless mode: the content of the file at that path, now
            try:
                with self.tree.lock:
                    node = self._lookup(path)
                    if not isinstance(node, File):
                        raise mfusepy.FuseOSError(errno.EISDIR)
                    text = node.read()
            except mfusepy.FuseOSError:
                raise
            except Exception as e:
                if not isinstance(e, OSError):
                    log.exception("reading %s failed", path)
                raise mfusepy.FuseOSError(_errno_of(e)) from None
            return text.encode("latin-1", "replace")[offset:offset + size]
        handle = self._handle(fh, path)
        if handle.reader is not None:
            return self._read_stream(handle.reader, size)
        node = handle.node
        if handle.content is None or offset == 0:
            assert isinstance(node, File)
            try:
                with self.tree.lock:
                    text = node.read()
            except Exception as e:
                if not isinstance(e, OSError):
                    log.exception("reading %s failed", path)
                raise mfusepy.FuseOSError(_errno_of(e)) from None
            handle.content = text.encode("latin-1", "replace")
        return handle.content[offset:offset + size]

    def _read_stream(self, reader: StreamReader, size: int) -> bytes:
        # Never under the tree lock: this may wait for a long time.
        while not self._closing.is_set():
            try:
                data = reader.read(size, STREAM_POLL_S)
            except Exception as e:
                raise mfusepy.FuseOSError(_errno_of(e)) from None
            if data:
                return data
        return b""

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        handle = self._files.get(fh) if fh else None
        if handle is not None:
            node = handle.node
        else:
            with self.tree.lock:
                node = self._lookup(path)
        if not isinstance(node, File):
            raise mfusepy.FuseOSError(errno.EACCES)
        # debugfs files (single_write) take a whole write() of any size
        chunk = bytes(data if node.single_write else data[:MAX_WRITE])
        generation = self.tree.generation
        try:
            with self.tree.lock:
                # the offset lets debugfs files refuse a continued write (EINVAL)
                node.write(chunk.decode("latin-1"), offset)
        except Exception as e:
            if not isinstance(e, OSError):
                log.exception("writing %r to %s failed", chunk[:64], path)
            raise mfusepy.FuseOSError(_errno_of(e)) from None
        finally:
            # a failed nr_* write may have removed children too
            if self.cache and self.tree.generation != generation:
                self._invalidate_removed()
        if handle is not None:
            handle.content = None
        return len(chunk)

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        # O_TRUNC of "echo x > file": sysfs files have nothing to truncate.
        return 0

    def release(self, path: str, fh: int) -> int:
        handle = self._files.pop(fh, None)
        if handle is not None and handle.reader is not None:
            try:
                handle.reader.close()
            except Exception:
                log.exception("closing a stream reader of %s failed", path)
        return 0



class _Invalidator:
    """Calls fuse_invalidate_path() from its own thread.

    Never from the FUSE loop's thread: the kernel takes the parent
    directory's lock to drop an entry, and a lookup holding that lock may be
    waiting for the (single) loop thread.
    """

    def __init__(self, fuse_ptr: int):
        self._fuse = ctypes.c_void_p(fuse_ptr)
        fn = mfusepy._libfuse.fuse_invalidate_path
        fn.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        fn.restype = ctypes.c_int
        self._fn = fn
        self._queue: queue.Queue[tuple[list[str], threading.Event] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="fuse-invalidate", daemon=True)
        self._thread.start()

    def invalidate(self, paths: list[str], wait_s: float) -> None:
        done = threading.Event()
        self._queue.put((paths, done))
        if not done.wait(wait_s):
            log.warning("invalidation of %d paths still pending", len(paths))

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            paths, done = item
            for path in paths:
                # ENOENT: libfuse never looked it up, or a parent went first
                self._fn(self._fuse, path.encode("utf-8", "surrogateescape"))
            done.set()

    def stop(self) -> None:
        self._queue.put(None)


def mount_options(multithreaded: bool, fsname: str, cache: bool = False) -> dict:
    """Options of a sysfs-like mount (foreground; no allow_other: root only)."""
    timeout = CACHE_TIMEOUT_S if cache else 0
    return {
        "foreground": True,
        "nothreads": not multithreaded,
        "direct_io": True,
        "attr_timeout": timeout,
        "entry_timeout": timeout,
        "negative_timeout": 0,
        "fsname": fsname,
        "subtype": "pydamon",
    }


def serve(tree: Tree, mountpoint: str, *, fsname: str = "pydamon",
          multithreaded: bool | None = None, operations: TreeOperations | None = None) -> None:
    """Mount ``tree`` at ``mountpoint`` and serve it until unmounted (blocks).

    ``multithreaded`` defaults to whether the tree has a stream file.
    """
    if multithreaded is None:
        multithreaded = tree_has_stream(tree.root)
    ops = operations if operations is not None else TreeOperations(tree)
    opts = mount_options(multithreaded, fsname, ops.cache)
    if ops.stateless:
        # libfuse then answers RELEASE itself
        ops.release = None  # type: ignore[method-assign,assignment]
    try:
        mfusepy.FUSE(ops, mountpoint, **opts)
    finally:
        ops.closing()
