"""A small io_uring: many positioned reads or writes for one ``io_uring_enter``.

Each sample needs one read of ``/proc/PID/pagemap`` per region, and one of
the idle page bitmap per bitmap word; one ``pread`` each means a kernel
entry and exit each, which under an emulated CPU (and with page table
isolation) costs more than the read itself. io_uring takes the whole batch
in one call: the reads run in the kernel's io-wq workers (threads of this
process, so their CPU time is this process's). Measured in the QEMU guest:
~150 us per pagemap read instead of ~250, ~115 us per bitmap write instead
of ~230.

Only what pydamon needs: ``IORING_OP_READ``/``IORING_OP_WRITE`` at given
offsets into caller-owned buffers, submitted and waited for together, by one
thread (each kdamond opens its own ring). :meth:`Uring.open` returns None
where the kernel or a sandbox refuses io_uring; callers then use plain
``preadv``/``pwrite``. ``PYDAMON_IO=sync`` forces that.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import mmap
import os

import numpy as np

from . import syscount

log = logging.getLogger("pydamon.linux.uring")

SYS_IO_URING_SETUP = 425
SYS_IO_URING_ENTER = 426
IORING_OFF_SQ_RING = 0
IORING_OFF_CQ_RING = 0x8000000
IORING_OFF_SQES = 0x10000000
IORING_FEAT_SINGLE_MMAP = 1 << 0
IORING_ENTER_GETEVENTS = 1 << 0
IORING_OP_READ = 22
IORING_OP_WRITE = 23
#: skip the non-blocking first try, straight to the io-wq workers (cheaper for
#: pagemap reads and bitmap writes; see Uring.issue_inline)
IOSQE_ASYNC = 1 << 4

#: an SQE is 8 little-endian words: [opcode u8 | flags u8 | ioprio u16 | fd s32],
#: offset, buffer address, [len u32 | rw_flags u32], user_data, then 3 words of 0
SQE_WORDS = 8
#: a CQE is 2 words: user_data, [res s32 | flags u32]
CQE_WORDS = 2


class _RingOffsets(ctypes.Structure):
    _fields_ = [("head", ctypes.c_uint32), ("tail", ctypes.c_uint32),
                ("ring_mask", ctypes.c_uint32), ("ring_entries", ctypes.c_uint32),
                ("flags_or_overflow", ctypes.c_uint32), ("dropped_or_cqes", ctypes.c_uint32),
                ("array_or_flags", ctypes.c_uint32), ("resv1", ctypes.c_uint32),
                ("user_addr", ctypes.c_uint64)]


class _Params(ctypes.Structure):
    _fields_ = [("sq_entries", ctypes.c_uint32), ("cq_entries", ctypes.c_uint32),
                ("flags", ctypes.c_uint32), ("sq_thread_cpu", ctypes.c_uint32),
                ("sq_thread_idle", ctypes.c_uint32), ("features", ctypes.c_uint32),
                ("wq_fd", ctypes.c_uint32), ("resv", ctypes.c_uint32 * 3),
                ("sq_off", _RingOffsets), ("cq_off", _RingOffsets)]


_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


def _check(ret: int) -> int:
    if ret < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return ret


#: smaller batches go as one pread/pwrite each: handing a batch to the io-wq
#: workers and waiting for them costs the submitting thread a fixed ~1.5 ms
#: under QEMU TCG (measured: one read 1.55 ms of its CPU, 100 reads 3.2 ms),
#: while a plain pagemap or bitmap call costs ~0.1-0.15 ms
DEFAULT_MIN_BATCH = 24


class Uring:
    """One io_uring instance: batches of reads/writes, submitted and reaped together."""

    #: batches of fewer operations are not worth a ring (see DEFAULT_MIN_BATCH)
    min_batch: int = DEFAULT_MIN_BATCH

    def __init__(self, entries: int = 1024):
        p = _Params()
        self.fd = _check(_syscall(SYS_IO_URING_SETUP, entries, ctypes.byref(p)))
        self._maps: list[mmap.mmap] = []
        try:
            self._map_rings(p)
        except BaseException:
            self.close()
            raise

    def _map_rings(self, p: _Params) -> None:
        so, co = p.sq_off, p.cq_off
        sq_size = so.array_or_flags + p.sq_entries * 4
        cq_size = co.dropped_or_cqes + p.cq_entries * CQE_WORDS * 8
        rw = mmap.PROT_READ | mmap.PROT_WRITE
        if p.features & IORING_FEAT_SINGLE_MMAP:
            sq = cq = mmap.mmap(self.fd, max(sq_size, cq_size), mmap.MAP_SHARED, rw,
                                offset=IORING_OFF_SQ_RING)
            self._maps.append(sq)
        else:
            sq = mmap.mmap(self.fd, sq_size, mmap.MAP_SHARED, rw, offset=IORING_OFF_SQ_RING)
            self._maps.append(sq)
            cq = mmap.mmap(self.fd, cq_size, mmap.MAP_SHARED, rw, offset=IORING_OFF_CQ_RING)
            self._maps.append(cq)
        sqes = mmap.mmap(self.fd, p.sq_entries * SQE_WORDS * 8, mmap.MAP_SHARED, rw,
                         offset=IORING_OFF_SQES)
        self._maps.append(sqes)
        self.sq_entries = p.sq_entries
        sq_words = np.frombuffer(sq, np.uint32)
        self._sq_mask = int(sq_words[so.ring_mask // 4])
        self._cq_mask = int(np.frombuffer(cq, np.uint32)[co.ring_mask // 4])
        # the ring indexes as plain C integers: cheaper to read and write than
        # numpy scalars, and this runs for every batch of every sample
        self._sq_tail = ctypes.c_uint32.from_buffer(sq, so.tail)
        self._cq_head = ctypes.c_uint32.from_buffer(cq, co.head)
        self._cq_tail = ctypes.c_uint32.from_buffer(cq, co.tail)
        # each ring slot names the SQE of the same index, once and for all
        array = sq_words[so.array_or_flags // 4:so.array_or_flags // 4 + p.sq_entries]
        array[:] = np.arange(p.sq_entries, dtype=np.uint32)
        # CQEs as int32 quads: [user_data low, user_data high, res, flags]
        self._cqes = np.frombuffer(cq, np.int32, count=p.cq_entries * CQE_WORDS * 2,
                                   offset=co.dropped_or_cqes).reshape(-1, CQE_WORDS * 2)
        self._sqes = np.frombuffer(sqes, np.uint64).reshape(-1, SQE_WORDS)
        self._sqes[:] = 0
        # an SQE's user_data is its own slot, set once: a completion tells its
        # request by where the request's SQE was written
        self._sqes[:, 4] = np.arange(p.sq_entries, dtype=np.uint64)
        self._scratch = np.zeros(0, np.uint64)
        self._scratch_addr = 0
        #: (opcode, fd) pairs submitted without IOSQE_ASYNC (see :meth:`issue_inline`)
        self._inline: set[tuple[int, int]] = set()

    @classmethod
    def open(cls, entries: int = 1024) -> Uring | None:
        """A ring, or None where io_uring cannot be used (or ``PYDAMON_IO=sync``)."""
        if os.environ.get("PYDAMON_IO", "").lower() == "sync":
            return None
        try:
            ring = cls(entries)
        except (OSError, ValueError) as e:
            log.info("io_uring unavailable (%s): one system call per read/write", e)
            return None
        try:  # some sandboxes allow the setup but refuse the operations
            buf = np.zeros(1, np.uint64)
            r, w = os.pipe()
            try:
                os.write(w, b"\1" * 8)
                res = ring.submit(IORING_OP_READ, r, np.zeros(1, np.uint64),
                                  np.array([buf.ctypes.data], np.uint64), np.array([8]))
            finally:
                os.close(r)
                os.close(w)
            if res[0] != 8 or int(buf[0]) != 0x0101010101010101:
                raise OSError(errno.EIO, f"probe read returned {res[0]}")
        except OSError as e:
            log.info("io_uring refused a read (%s): one system call per read/write", e)
            ring.close()
            return None
        return ring

    def close(self) -> None:
        # drop the numpy views first: a mapping with views on it cannot be closed
        self._sqes = self._cqes = self._scratch = None
        self._sq_tail = self._cq_head = self._cq_tail = None
        for m in self._maps:
            try:
                m.close()
            except BufferError:
                pass  # a caller still holds a view; the mapping goes with the object
        self._maps = []
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def issue_inline(self, opcode: int, fd: int) -> None:
        """Submit ``opcode`` on ``fd`` without IOSQE_ASYNC: the kernel first tries it
        in ``io_uring_enter`` itself. Measured under TCG, 100 reads of the idle
        page bitmap cost ~4.4 ms that way and ~6.2 ms through the io-wq workers;
        bitmap writes and pagemap reads cost more inline (writes ~6x)."""
        self._inline.add((opcode, fd))

    def scratch(self, nwords: int) -> tuple[np.ndarray, int]:
        """A zeroed buffer of ``nwords`` words owned by the ring, and its address:
        where a batch of reads may land (valid until the next call)."""
        if nwords > len(self._scratch):
            self._scratch = np.zeros(max(nwords, 2 * len(self._scratch), 4096), np.uint64)
            self._scratch_addr = self._scratch.__array_interface__["data"][0]
        view = self._scratch[:nwords]
        view.fill(0)
        return view, self._scratch_addr

    def submit(self, opcode: int, fd: int, offsets, addrs, lens) -> np.ndarray:
        """Run ``len(offsets)`` reads or writes of ``fd`` and wait for all of them.

        ``offsets``, ``addrs`` (the buffers' addresses; the caller keeps them
        alive) and ``lens`` are arrays or lists of ints; returns each
        operation's result: bytes moved, or minus an errno.
        """
        res = np.empty(len(offsets), np.int32)
        for done, first, cqes in self._batches(opcode, fd, offsets, addrs, lens):
            # a completion's user_data is its SQE's slot: the request is that
            # slot's distance from the batch's first
            res[done:done + len(cqes)][(cqes[:, 0] - first) & self._sq_mask] = cqes[:, 2]
        return res

    def run(self, opcode: int, fd: int, offsets, addrs, lens,
            tolerate: frozenset[int] | None) -> None:
        """:meth:`submit` for callers that need only the failures: OSError for an
        operation that failed with an errno not in ``tolerate`` (None: every
        failure is tolerated). Which operation failed is not asked when none
        did, the common case: a few numpy calls fewer per batch, and each
        costs under an emulator."""
        for _, _, cqes in self._batches(opcode, fd, offsets, addrs, lens):
            if tolerate is None:
                continue
            res = cqes[:, 2]
            if res.min() < 0:
                for e in (-res[res < 0]).tolist():
                    if e not in tolerate:
                        raise OSError(e, os.strerror(e))

    def _batches(self, opcode: int, fd: int, offsets, addrs, lens):
        """Submit the operations, at most a ring's worth at a time; yield
        (index of the first, its SQE slot, the completions) for each batch,
        completions in any order, valid until the next step."""
        n = len(offsets)
        # the first word of every SQE: opcode, flags, ioprio 0, fd
        flags = 0 if (opcode, fd) in self._inline else IOSQE_ASYNC
        word0 = opcode | flags << 8 | (fd & 0xFFFFFFFF) << 32
        size = self.sq_entries
        done = 0
        while done < n:
            k = min(n - done, size)
            tail = self._sq_tail.value
            first = tail & self._sq_mask
            # the SQEs, in one or two stretches of the ring (numpy casts the
            # callers' ints into the uint64 words)
            d = done
            for a, b in ((first, min(first + k, size)), (0, max(first + k - size, 0))):
                if a < b:
                    e = d + b - a
                    sqe = self._sqes[a:b]
                    sqe[:, 0] = word0
                    if d == 0 and e == n:
                        sqe[:, 1] = offsets
                        sqe[:, 2] = addrs
                        sqe[:, 3] = lens
                    else:
                        sqe[:, 1] = offsets[d:e]
                        sqe[:, 2] = addrs[d:e]
                        sqe[:, 3] = lens[d:e]
                    d = e
            # the SQEs are written before the tail that publishes them (x86 keeps
            # stores in order; the kernel reads the tail with acquire semantics)
            self._sq_tail.value = (tail + k) & 0xFFFFFFFF
            self._enter(k, k)
            head = self._cq_head.value
            while (self._cq_tail.value - head) & 0xFFFFFFFF < k:
                # woken early (a signal): wait for the rest
                self._enter(0, k - ((self._cq_tail.value - head) & 0xFFFFFFFF))
            c0 = head & self._cq_mask
            cqes = self._cqes[c0:c0 + k]
            if len(cqes) < k:
                cqes = np.concatenate((cqes, self._cqes[:k - len(cqes)]))
            try:
                yield done, first, cqes
            finally:
                # the completions are consumed even when the caller stops here
                self._cq_head.value = (head + k) & 0xFFFFFFFF
            done += k

    def _enter(self, to_submit: int, min_complete: int) -> None:
        """Submit ``to_submit`` queued entries and wait for ``min_complete`` completions."""
        while True:
            ret = _syscall(SYS_IO_URING_ENTER, self.fd, to_submit, min_complete,
                           IORING_ENTER_GETEVENTS, None, 0)
            syscount.add("io_uring_enter")
            if ret < 0:
                e = ctypes.get_errno()
                if e == errno.EINTR:
                    continue  # nothing was submitted: try again
                raise OSError(e, os.strerror(e))
            if ret >= to_submit:
                return
            to_submit -= ret  # the kernel took only part of the queue: the rest now
