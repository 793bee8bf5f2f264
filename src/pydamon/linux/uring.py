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
#: skip the non-blocking first try: procfs and sysfs files always punt to io-wq
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


class Uring:
    """One io_uring instance: batches of reads/writes, submitted and reaped together."""

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
        self._sq_words = np.frombuffer(sq, np.uint32)
        self._cq_words = np.frombuffer(cq, np.uint32)
        self._sq_tail = so.tail // 4
        self._sq_mask = int(self._sq_words[so.ring_mask // 4])
        # each ring slot names the SQE of the same index, once and for all
        array = self._sq_words[so.array_or_flags // 4:so.array_or_flags // 4 + p.sq_entries]
        array[:] = np.arange(p.sq_entries, dtype=np.uint32)
        self._cq_head = co.head // 4
        self._cq_tail = co.tail // 4
        self._cq_mask = int(self._cq_words[co.ring_mask // 4])
        self._cq_pairs = np.frombuffer(cq, np.uint64, count=p.cq_entries * CQE_WORDS,
                                       offset=co.dropped_or_cqes).reshape(-1, CQE_WORDS)
        self._sqes = np.frombuffer(sqes, np.uint64).reshape(-1, SQE_WORDS)
        self._sqes[:] = 0

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
        self._sq_words = self._cq_words = self._sqes = self._cq_pairs = None
        for m in self._maps:
            try:
                m.close()
            except BufferError:
                pass  # a caller still holds a view; the mapping goes with the object
        self._maps = []
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def submit(self, opcode: int, fd: int, offsets: np.ndarray, addrs: np.ndarray,
               lens: np.ndarray) -> np.ndarray:
        """Run ``len(offsets)`` reads or writes of ``fd`` and wait for all of them.

        ``addrs`` are the buffers' addresses (the caller keeps them alive);
        returns each operation's result: bytes moved, or minus an errno.
        """
        n = len(offsets)
        res = np.empty(n, np.int64)
        # the first word of every SQE: opcode, IOSQE_ASYNC, ioprio 0, fd
        word0 = np.uint64(opcode | IOSQE_ASYNC << 8 | (fd & 0xFFFFFFFF) << 32)
        lens = np.asarray(lens, np.uint64)
        done = 0
        while done < n:
            k = min(n - done, self.sq_entries)
            tail = int(self._sq_words[self._sq_tail])
            rows = np.zeros((k, SQE_WORDS), np.uint64)
            rows[:, 0] = word0
            rows[:, 1] = offsets[done:done + k]
            rows[:, 2] = addrs[done:done + k]
            rows[:, 3] = lens[done:done + k] if lens.ndim else lens
            rows[:, 4] = np.arange(done, done + k, dtype=np.uint64)
            first = tail & self._sq_mask
            wrap = min(k, self.sq_entries - first)
            self._sqes[first:first + wrap] = rows[:wrap]
            self._sqes[:k - wrap] = rows[wrap:]
            # the SQEs are written before the tail that publishes them (x86 keeps
            # stores in order; the kernel reads the tail with acquire semantics)
            self._sq_words[self._sq_tail] = (tail + k) & 0xFFFFFFFF
            self._enter(k, k)
            head = int(self._cq_words[self._cq_head])
            got = (int(self._cq_words[self._cq_tail]) - head) & 0xFFFFFFFF
            while got < k:  # woken early (a signal): wait for the rest
                self._enter(0, k - got)
                got = (int(self._cq_words[self._cq_tail]) - head) & 0xFFFFFFFF
            first = head & self._cq_mask
            wrap = min(k, len(self._cq_pairs) - first)
            pairs = self._cq_pairs[first:first + wrap]
            if wrap < k:
                pairs = np.concatenate((pairs, self._cq_pairs[:k - wrap]))
            # res is the low 32 bits of the second word, signed
            res[pairs[:, 0].astype(np.int64)] = (pairs[:, 1] & np.uint64(0xFFFFFFFF)).astype(
                np.uint32).view(np.int32)
            self._cq_words[self._cq_head] = (head + k) & 0xFFFFFFFF
            done += k
        return res

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
