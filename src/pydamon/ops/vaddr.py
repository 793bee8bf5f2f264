"""``vaddr`` and ``fvaddr``: monitoring processes' virtual address spaces.

Access checks use the kernel's idle page tracking: each sampled address is
translated through ``/proc/PID/pagemap``, its frame marked idle in
``/sys/kernel/mm/page_idle/bitmap``, and read back after the sampling
interval. What the kernel's own vaddr does, and how this follows it:

* a page not present (never touched, swapped out, unmapped) is not accessed;
* a transparent huge page is one unit: the kernel checks its PMD. The idle
  bitmap ignores tail frames, so a sample that lands in a huge page is
  checked through the head frame (found with ``/proc/kpageflags``);
* the kernel reuses a check for samples in the same folio; here samples of
  one sample interval that share a folio share one frame check;
* a frame off the LRU (the zero page, driver memory) is not accessed.

To keep system calls per region-sample low, what backs each 2 MiB block of
a process (small pages or one PMD-mapped huge page) is remembered
(:mod:`.block_kinds`), so ``/proc/kpageflags`` is read when a block is first
sampled, when its layout visibly changes, and, for huge blocks, again after
``block_kind_ttl_s`` (a few blocks at a time, in the rotation's samples). A
sample interval that learns blocks also learns the blocks not known next to
them within their regions (learning ahead), so a large target is learned in
a few sample intervals, not over hundreds. A small block sampled again has
the frames of all its pages read at once and kept for ``translation_ttl_s``.
A sample in a remembered huge block (through its head) or with a kept
frame is checked without a pagemap read: a set idle bit means the folio was
neither freed nor accessed since marked; an accessed reading is confirmed through the pagemap (a freed frame reads accessed), and
every ``verify_every``-th sample interval all samples are translated anyway
(one batch of reads). Pages kept as not present count as not accessed,
without a read, until the process faults.

Targets are held through a pidfd and a descriptor of their ``/proc/PID``
directory opened while the pidfd shows the process alive, so a reused PID
can never redirect monitoring to another process. DAMOS actions go through
``process_madvise`` on that pidfd, except ``migrate_hot``/``migrate_cold``,
which go through ``move_pages`` (see :func:`migrate_range`).
"""

from __future__ import annotations

import errno
import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ..core.damos import Action, Scheme
from ..errors import DamonError, einval
from ..linux import numa, pidfd, procfs
from ..linux.page_idle import KPageFlags, folio_heads
from ..linux.pagemap import MAX_RUN_PAGES, PAGE_SHIFT, PAGE_SIZE, PFN_MASK, PagemapReader, frames_of
from .block_kinds import ABSENT, BLOCK_PAGES, BLOCK_SHIFT, HUGE, SMALL, UNKNOWN, BlockKinds
from .idle_page import IdlePageOps

if TYPE_CHECKING:
    from ..core.context import Context
    from ..core.target import Target

log = logging.getLogger("pydamon.ops.vaddr")

#: how each action is applied to another process's memory
ACTION_ADVICE: dict[Action, int] = {
    Action.WILLNEED: pidfd.MADV_WILLNEED,
    Action.COLD: pidfd.MADV_COLD,
    Action.PAGEOUT: pidfd.MADV_PAGEOUT,
    # MADV_HUGEPAGE is not accepted by process_madvise; MADV_COLLAPSE is the
    # closest remote mechanism (it makes huge pages now instead of flagging
    # the area for the page-fault path and khugepaged)
    Action.HUGEPAGE: pidfd.MADV_COLLAPSE,
}

#: why an action cannot be applied to another process from user space
UNSUPPORTED_WHY: dict[Action, str] = {
    Action.NOHUGEPAGE: "process_madvise() does not accept MADV_NOHUGEPAGE and no other "
                       "call sets VM_NOHUGEPAGE on another process",
    Action.LRU_PRIO: "no system call moves another process's pages to the active LRU list",
    Action.LRU_DEPRIO: "no system call moves another process's pages to the inactive LRU "
                       "list (use 'cold', MADV_COLD, for the nearest effect)",
}

#: actions applied through move_pages(2) to the scheme's target_nid
MIGRATE_ACTIONS: frozenset[Action] = frozenset({Action.MIGRATE_HOT, Action.MIGRATE_COLD})
#: actions that may change which frames back the range
FRAME_CHANGING_ACTIONS: frozenset[Action] = MIGRATE_ACTIONS | {Action.PAGEOUT, Action.HUGEPAGE}


@dataclass
class ProcessHandle:
    """What a vaddr target holds of its process."""

    pid: int
    pidfd: int
    proc_dir: int
    pagemap_fd: int
    pagemap: PagemapReader
    #: what backs each 2 MiB block, as last learned
    kinds: BlockKinds = field(default_factory=BlockKinds)
    #: the frame each sampled address is checked through (-1: counted not accessed)
    check_pfns: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    #: samples checked through a remembered frame without a pagemap read
    unverified: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    #: for each of those, the page whose pagemap entry confirms an accessed reading
    confirm_pages: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    #: samples prepared so far (every verify_every-th is translated whole: the rotation)
    nr_samples: int = 0
    #: the process's page faults (minflt + majflt) when last read, and when they
    #: last changed: kept ABSENT translations are trusted only from before then
    faults: int | None = None
    faults_changed_ns: int = 0
    stat_fd: int = -1
    exited: bool = False
    madvise_errors: int = 0
    migrate_errors: int = 0

    @property
    def blocks(self) -> dict[int, int]:
        """{2 MiB block number: SMALL or HUGE} of the blocks learned."""
        return self.kinds.as_dict()

    def fault_count(self) -> int | None:
        """The process's page faults so far (None: cannot be read)."""
        try:
            if self.stat_fd < 0:
                self.stat_fd = os.open("stat", os.O_RDONLY | os.O_CLOEXEC, dir_fd=self.proc_dir)
            return procfs.parse_stat_faults(os.pread(self.stat_fd, 4096, 0).decode())
        except (OSError, ValueError, IndexError):
            return None

    def note_faults(self, now_ns: int) -> None:
        """Read the fault count; a change (or no count) distrusts ABSENT translations."""
        faults = self.fault_count()
        if faults is None or faults != self.faults:
            self.faults_changed_ns = now_ns
        self.faults = faults

    def close(self) -> None:
        for fd in (self.stat_fd, self.pagemap_fd, self.proc_dir, self.pidfd):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.stat_fd = self.pagemap_fd = self.proc_dir = self.pidfd = -1


def open_process(pid: int | None) -> ProcessHandle:
    """Hold ``pid`` through a pidfd; EINVAL DamonError if it is not a live process."""
    if pid is None or pid <= 0:
        raise einval(f"target pid {pid} is not a process id")
    try:
        pfd = pidfd.pidfd_open(pid)
    except OSError as e:
        raise einval(f"target pid {pid}: {os.strerror(e.errno or errno.ESRCH)}") from None
    fds = [pfd]
    try:
        try:
            proc_dir = os.open(f"/proc/{pid}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            raise einval(f"target pid {pid}: no such process") from None
        fds.append(proc_dir)
        # The directory was opened while the pidfd's process was alive, so
        # it is that process's, whatever happens to the PID later.
        if pidfd.pidfd_exited(pfd):
            raise einval(f"target pid {pid} has exited")
        try:
            pm = os.open("pagemap", os.O_RDONLY | os.O_CLOEXEC, dir_fd=proc_dir)
        except OSError as e:
            raise DamonError(e.errno or errno.EPERM,
                             f"target pid {pid}: cannot open pagemap: {e.strerror}") from None
        return ProcessHandle(pid, pfd, proc_dir, pm, PagemapReader(pm))
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


# -- migrate_hot / migrate_cold through move_pages(2) -------------------------------------

def _align_down(x: int, a: int) -> int:
    return x - x % a


def migration_chunks(reader: PagemapReader, kpageflags: KPageFlags | None,
                     zero_pfns: set[int], lo: int, hi: int, map_lo: int, map_hi: int,
                     chunk_pages: int = MAX_RUN_PAGES):
    """Addresses to hand ``move_pages`` for ``[lo, hi)`` of the mapping
    ``[map_lo, map_hi)``, and the bytes each stands for, one pagemap read at a time.

    Yields (addresses, bytes) arrays in address order. Only present pages
    are taken (what the kernel's vaddr migration walks); the zero page is
    left out (move_pages refuses it). A PMD-mapped huge page -- 512
    present pages on 512 consecutive frames from a 2 MiB aligned one, and
    kpageflags showing those frames are one compound page -- is one address
    for 2 MiB: move_pages moves the whole folio of the page it is given.
    Like the kernel's vaddr, which migrates every folio its page walk meets,
    a huge page the range covers only partly is taken whole.
    """
    lo_page, hi_page = lo >> PAGE_SHIFT, (hi + PAGE_SIZE - 1) >> PAGE_SHIFT
    # read whole 2 MiB blocks at the edges, as far as the mapping goes, to
    # recognize a huge page the range starts or ends inside of
    w_lo = max(map_lo >> PAGE_SHIFT, _align_down(lo_page, BLOCK_PAGES))
    w_hi = min(map_hi >> PAGE_SHIFT, _align_down(hi_page + BLOCK_PAGES - 1, BLOCK_PAGES))
    zero = np.fromiter(zero_pfns, dtype=np.int64, count=len(zero_pfns))
    c0 = w_lo
    while c0 < w_hi:
        # chunk ends on multiples of chunk_pages (itself a multiple of 512):
        # a 2 MiB block never straddles two chunks
        c1 = min(w_hi, _align_down(c0, chunk_pages) + chunk_pages)
        entries = reader.read_range(c0, c1 - c0)
        present = (entries >> np.uint64(63)).astype(bool)
        pfn = (entries & np.uint64(PFN_MASK)).astype(np.int64)
        pages = np.arange(c0, c1, dtype=np.int64)
        inside = (pages >= lo_page) & (pages < hi_page)
        take = present & inside
        if len(zero):
            take &= ~np.isin(pfn, zero)
        huge: list[int] = []
        b0 = _align_down(c0 + BLOCK_PAGES - 1, BLOCK_PAGES)
        nb = (c1 - b0) // BLOCK_PAGES if c1 > b0 else 0
        if kpageflags is not None and nb > 0:
            off = b0 - c0
            span = slice(off, off + nb * BLOCK_PAGES)
            bp = pfn[span].reshape(nb, BLOCK_PAGES)
            cand = (present[span].reshape(nb, BLOCK_PAGES).all(axis=1)
                    & inside[span].reshape(nb, BLOCK_PAGES).any(axis=1)
                    & (bp[:, 0] % BLOCK_PAGES == 0)
                    & (np.diff(bp, axis=1) == 1).all(axis=1))
            found = cand.nonzero()[0]
            if len(found):
                starts = bp[found, 0]
                heads, whole = folio_heads(starts, kpageflags.windows(starts), starts)
                for j in found[(heads == starts) & whole].tolist():
                    first = off + j * BLOCK_PAGES
                    take[first:first + BLOCK_PAGES] = False
                    huge.append((b0 + j * BLOCK_PAGES) << PAGE_SHIFT)
        small = pages[take] << PAGE_SHIFT
        if huge:
            addrs = np.concatenate([small, np.array(huge, dtype=np.int64)])
            sizes = np.concatenate([np.full(len(small), PAGE_SIZE, np.int64),
                                    np.full(len(huge), 1 << BLOCK_SHIFT, np.int64)])
            order = np.argsort(addrs, kind="stable")
            addrs, sizes = addrs[order], sizes[order]
        else:
            addrs, sizes = small, np.full(len(small), PAGE_SIZE, np.int64)
        if len(addrs):
            yield addrs.astype(np.uint64), sizes
        c0 = c1


def migrate_batch(pid: int, addrs: np.ndarray, sizes: np.ndarray, nid: int) -> int:
    """Move the pages at ``addrs`` (each standing for ``sizes`` bytes) to node ``nid``;
    returns the bytes that moved. At most :data:`numa.MAX_PAGES_PER_CALL` pages.

    Counted: pages that were on another node before the call and on ``nid``
    after it. move_pages reports a page already on the target node the same
    as a moved one, so where each page is is asked first and those already
    there are not passed. Where the kernel wrote status (its stretch of
    pages migrated without a failure), a huge page passed by one address
    counts 2 MiB if its last page is on ``nid`` too (had it been split
    before the call, only the first page would have moved). Where it left
    status unwritten (the call stopped at a stretch that failed in part;
    a huge page that found no huge page on the target was split, which
    counts as a failure, and its pages moved one by one), each page is
    asked again, every page of a huge page. Raises OSError when the
    process cannot be asked (ESRCH once it is gone).
    """
    before = numa.page_nodes(pid, addrs)
    need = (before >= 0) & (before != nid)
    if not need.any():
        return 0
    a, sz = addrs[need], sizes[need]
    try:
        ret, status = numa.move_pages(pid, a, nid)
    except numa.MovePagesError as e:
        ret, status = -(e.errno or 1), e.status
        log.debug("move_pages of pid %d to node %d: %s", pid, nid, e.strerror)
    moved = status == nid
    big = sz > PAGE_SIZE
    extra = 0  # bytes of huge pages found moved page by page
    unknown = status == numa.STATUS_UNSET
    if ret != 0 and unknown.any():
        try:
            small = unknown & ~big
            if small.any():
                moved[small] = numa.page_nodes(pid, a[small]) == nid
            for i in (unknown & big).nonzero()[0].tolist():
                pages = a[i] + np.arange(0, int(sz[i]), PAGE_SIZE, dtype=np.uint64)
                extra += int((numa.page_nodes(pid, pages) == nid).sum()) * PAGE_SIZE
        except OSError:
            pass  # not known to have moved: not counted
    whole = moved & big
    if whole.any():
        ends = a[whole] + (sz[whole] - PAGE_SIZE).astype(np.uint64)
        try:
            moved[whole] = numa.page_nodes(pid, ends) == nid
        except OSError:
            moved[whole] = False
    return int(sz[moved].sum()) + extra


def migrate_range(h: ProcessHandle, kpageflags: KPageFlags | None, zero_pfns: set[int],
                  mappings: list[tuple[int, int]], start: int, end: int, nid: int,
                  batch_pages: int = numa.MAX_PAGES_PER_CALL) -> tuple[int, OSError | None]:
    """Migrate the present pages of ``[start, end)`` of a process to node ``nid``
    with ``move_pages``, ``batch_pages`` pages a call.

    Returns (bytes moved, the error that stopped it or None): once the
    process cannot be asked (ESRCH when it is gone) the rest is left, and
    what earlier batches moved still counts.
    """
    applied = 0
    pend_a: list[np.ndarray] = []
    pend_s: list[np.ndarray] = []
    npend = 0

    def flush(upto: int) -> None:
        nonlocal applied, pend_a, pend_s, npend
        a = np.concatenate(pend_a)
        sz = np.concatenate(pend_s)
        for i in range(0, upto, batch_pages):
            applied += migrate_batch(h.pid, a[i:i + batch_pages], sz[i:i + batch_pages], nid)
        pend_a, pend_s, npend = [a[upto:]], [sz[upto:]], len(a) - upto

    try:
        for map_lo, map_hi in mappings:
            lo, hi = max(start, map_lo), min(end, map_hi)
            if lo >= hi:
                continue
            for a, sz in migration_chunks(h.pagemap, kpageflags, zero_pfns, lo, hi,
                                          map_lo, map_hi):
                pend_a.append(a)
                pend_s.append(sz)
                npend += len(a)
                if npend >= batch_pages:
                    flush(npend - npend % batch_pages)
        if npend:
            flush(npend)
    except OSError as e:
        return applied, e
    return applied, None


class VaddrOps(IdlePageOps):
    """Virtual address spaces of processes, regions following their mappings."""

    name: ClassVar[str] = "vaddr"
    auto_regions: ClassVar[bool] = True
    targets_have_pid: ClassVar[bool] = True
    supported_actions: ClassVar[frozenset[Action]] = frozenset(
        {Action.STAT, *ACTION_ADVICE, *MIGRATE_ACTIONS})
    # as the kernel's vaddr since it migrates: cold regions first for
    # pageout and migrate_cold, hot ones first for migrate_hot
    cold_first_actions: ClassVar[frozenset[Action]] = frozenset(
        {Action.PAGEOUT, Action.MIGRATE_COLD})
    hot_first_actions: ClassVar[frozenset[Action]] = frozenset({Action.MIGRATE_HOT})

    #: how long a huge block's head is trusted before kpageflags is read
    #: again (a huge page split in place shows nothing in the pagemap)
    block_kind_ttl_s: float = 30.0
    #: how long a small block's kept frames are used before the block is read
    #: again. Longer than the huge pages' ttl: a kept frame that went wrong
    #: is caught when it reads accessed (confirmed) or by the rotation, and an
    #: ABSENT page by the process's fault count; this only bounds the rest
    translation_ttl_s: float = 300.0
    #: stale huge blocks are re-learned in the rotation's samples only, at most
    #: this share of a sample's regions per sample between two rotations
    relearn_share: float = 0.02
    #: a sample in a remembered huge block (checked through its head) or in a
    #: small block with kept translations is checked without reading the
    #: pagemap, but every sample of one sample interval in this many is
    #: translated anyway (the rotation), so a mapping that changed while its
    #: old frame lives on (a copy-on-write after fork, mremap, a frame freed
    #: and reused) is noticed within a few samples
    verify_every: int = 8
    #: at most this share of a sample's regions read a whole small block's
    #: translations (one pagemap read of 512 entries costs about two of one,
    #: so while blocks are being learned a sample costs at most ~1.3 times
    #: what it would without keeping them, and the learning ends soon)
    translate_share: float = 0.25
    #: a sample interval that learns blocks not known (kpageflags reads, one
    #: pass) learns up to this many more per region (at least
    #: ``learn_ahead_min``): blocks not known next to the sampled ones, within
    #: their regions. Their reads join the pass's batches, so a large target
    #: is learned in a few passes instead of one pass in most sample intervals
    #: until every block has been sampled (2048 blocks of a 4 GiB target, 100
    #: regions: ~80 sample intervals, each pass ~10 ms under QEMU TCG)
    learn_ahead: float = 1.0
    learn_ahead_min: int = 256

    unsupported_why: ClassVar[dict[Action, str]] = UNSUPPORTED_WHY

    def __init__(self) -> None:
        super().__init__()
        #: where the NUMA node lists (``online``, ``has_memory``) are read
        self.node_dir = numa.NODE_DIR
        #: whole small blocks read to keep their translations, so far (a
        #: one-time cost per block that benchmarks tell from the steady state)
        self.nr_block_translations = 0

    def rejection(self, scheme: Scheme) -> str | None:
        why = super().rejection(scheme)
        if why is None and scheme.action in MIGRATE_ACTIONS:
            why = self.migrate_rejection(scheme)
        return why

    def migrate_rejection(self, scheme: Scheme) -> str | None:
        """Why a migrate scheme cannot run: its target_nid must be a node with memory."""
        if scheme.ops_filters:
            return ("operations-set filters (anon, active, memcg, young, hugepage_size, "
                    "unmapped) are not implemented for the migrate actions")
        nid = scheme.target_nid
        online = numa.online_nodes(self.node_dir)
        if nid not in online:
            have = ",".join(map(str, online)) or "none"
            return f"target_nid {nid} is not an online NUMA node (online: {have})"
        if nid not in numa.memory_nodes(self.node_dir):
            return f"NUMA node {nid} has no memory to migrate pages to"
        return None

    def attach(self, target: Target) -> None:
        frames = self._ready()
        if target.handle is not None:
            return
        target.handle = open_process(target.pid)
        target.handle.pagemap.io = frames.io  # its reads join the sample's batches

    def detach(self, target: Target) -> None:
        h = target.handle
        if h is not None:
            h.close()
            target.handle = None

    def target_valid(self, target: Target) -> bool:
        h: ProcessHandle | None = target.handle
        if h is None or h.exited:
            return False
        if pidfd.pidfd_exited(h.pidfd):
            h.exited = True
            log.info("%s: target pid %d exited; counted as not accessed", self.name, h.pid)
            return False
        return True

    # -- regions -------------------------------------------------------------------
    def target_mappings(self, target: Target) -> list[tuple[int, int]]:
        h: ProcessHandle | None = target.handle
        if h is None or h.exited:
            return []
        try:
            text = procfs.read_text_at(h.proc_dir, "maps")
        except OSError:
            return []
        return procfs.maps_ranges(text)

    # -- access checks -------------------------------------------------------------
    def prepare_access_checks(self, target: Target, addrs: np.ndarray) -> None:
        h: ProcessHandle | None = target.handle
        if h is None:
            return
        if h.exited or self.frames is None:
            h.check_pfns = np.full(len(addrs), -1, np.int64)
            h.unverified = h.confirm_pages = np.empty(0, np.int64)
            return
        now_ns = self._now_ns() or 0
        h.note_faults(now_ns)
        regions = target.regions
        # the sampled regions bound the blocks learned ahead (one address each)
        bounds = (regions.start, regions.end) if len(regions) == len(addrs) else None
        h.check_pfns = self._check_frames(h, np.asarray(addrs, np.int64), now_ns, bounds)
        self._mark(h.check_pfns)

    def check_accesses(self, target: Target, addrs: np.ndarray) -> np.ndarray:
        h: ProcessHandle | None = target.handle
        if h is None or self.frames is None or len(h.check_pfns) != len(addrs):
            return np.zeros(len(addrs), bool)
        accessed = self._accessed(h.check_pfns)
        if not len(h.unverified):
            return accessed
        read = accessed[h.unverified]
        suspect = h.unverified[read]
        if len(suspect):
            # A frame taken from what was remembered read accessed: does the page
            # (for a huge page, the block's first page) still map it? A freed frame
            # (swapped out, migrated, unmapped) loses its idle flag, so it reads
            # accessed whatever happened; the kernel would find no such page.
            now = frames_of(h.pagemap.read_entries(h.confirm_pages[read]))
            gone = now != h.check_pfns[suspect]
            if np.count_nonzero(gone):
                accessed[suspect[gone]] = False
                h.kinds.forget(np.asarray(addrs, np.int64)[suspect[gone]] >> BLOCK_SHIFT)
        return accessed

    def _check_frames(self, h: ProcessHandle, addrs: np.ndarray, now_ns: int,
                      bounds: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """The frame to check for each sampled address (-1: counted not accessed).

        Samples in a remembered huge page (its head) or in a small block with
        fresh translations (the page's frame) are checked without a pagemap
        read: an idle bit still set means the folio was neither freed nor
        accessed since marked, and an accessed reading is confirmed in
        :meth:`check_accesses`. Every ``verify_every``-th sample interval,
        all are translated anyway (:meth:`_is_rotation`). The others are
        translated now (:meth:`_translate`), with blocks learned ahead
        (:meth:`_blocks_to_learn_ahead`) when ``bounds``, the sampled regions'
        (start, end), are given.
        """
        cache = h.kinds
        n = len(addrs)
        pages = addrs >> PAGE_SHIFT
        blocks = addrs >> BLOCK_SHIFT
        offset = pages & (BLOCK_PAGES - 1)
        idx = cache.lookup(blocks)
        kind = cache.kind[idx]
        frame = cache.frame[idx]
        huge = kind == HUGE
        rotation = self._is_rotation(h.nr_samples)
        h.nr_samples += 1
        if rotation:
            # stale huge blocks are re-learned with the rotation, whose samples
            # are all translated anyway: a re-learning in any other sample would
            # add a translation pass of its own (its fixed cost, some ms under
            # an emulator, is most of what a sample costs at 100 regions)
            ttl_ns = int(self.block_kind_ttl_s * 1e9)
            stale = np.flatnonzero(huge & (now_ns - cache.learned_ns[idx] > ttl_ns))
            # a few at a time: the cost stays spread
            stale = stale[:max(1, int(n * self.relearn_share * self.verify_every))]
            huge[stale] = False
            kind[stale] = UNKNOWN
        row = cache.row[idx]
        cached = cache.pool[row, offset]  # -1: none, or not to be trusted
        tns = cache.translated_ns[idx]
        translated = (row >= 0) & (now_ns - tns <= int(self.translation_ttl_s * 1e9))
        # a page kept ABSENT (not present, the zero page) stays so until the
        # process faults: the fault count was read before any translation
        absent = (cached == ABSENT) & (tns >= h.faults_changed_ns) & (h.faults is not None)
        framed = huge | (translated & (cached >= 0))
        trusted = np.zeros(n, bool) if rotation else framed | (translated & absent)
        checked = trusted & framed  # an ABSENT page is not accessed: nothing to check
        check = np.where(checked, np.where(huge, frame, cached), -1)
        h.unverified = np.flatnonzero(checked)
        h.confirm_pages = np.where(huge, blocks << (BLOCK_SHIFT - PAGE_SHIFT), pages)[h.unverified]
        query = np.flatnonzero(~trusted)
        if len(query):
            # known small blocks to read whole: no translations kept, or stale
            # ones, or kept ABSENT pages the process may have faulted in since
            reread = (kind == SMALL) & (~translated | ((cached == ABSENT) & ~absent))
            columns = [pages[query], kind[query], frame[query], cached[query], reread[query]]
            ahead = (self._blocks_to_learn_ahead(cache, blocks, idx < 0, bounds)
                     if bounds is not None else ())
            if len(ahead):
                # translated as samples of their first pages in blocks not known
                # (kind UNKNOWN, nothing kept): learned, their checks dropped
                extra = (ahead << (BLOCK_SHIFT - PAGE_SHIFT), UNKNOWN, -1, -1, False)
                columns = [np.concatenate([c, np.broadcast_to(np.asarray(x, c.dtype), len(ahead))])
                           for c, x in zip(columns, extra, strict=True)]
            check[query] = self._translate(h, *columns, n, now_ns)[:len(query)]
        return check

    def _blocks_to_learn_ahead(self, cache: BlockKinds, blocks: np.ndarray,
                               unknown: np.ndarray, bounds: tuple[np.ndarray, np.ndarray]
                               ) -> np.ndarray:
        """Blocks not known to learn along with the sampled blocks not known
        (``unknown``): their neighbours within each sample's region, nearest
        first, at most ``learn_ahead`` per region (at least ``learn_ahead_min``).

        Learning a block is two reads (the pagemap entry of its first page,
        then kpageflags of its frame or frame window); the pass that learns
        the sampled blocks makes both batches anyway, so the neighbours'
        reads cost their own work but no pass of their own.
        """
        sel = np.flatnonzero(unknown)
        if not len(sel):
            return np.empty(0, np.int64)
        budget = max(self.learn_ahead_min, int(len(blocks) * self.learn_ahead))
        per_side = max(1, budget // (2 * len(sel)))
        start, end = bounds
        lo = (start[sel] >> BLOCK_SHIFT)[:, None]
        hi = ((end[sel] - 1) >> BLOCK_SHIFT)[:, None]
        # +1, -1, +2, -2, ... from each sampled block, one column per step
        steps = np.repeat(np.arange(1, per_side + 1), 2) * np.tile([1, -1], per_side)
        near = blocks[sel][:, None] + steps
        inside = (near >= lo) & (near <= hi)
        cand = near.T[inside.T]  # nearest steps of every sample first
        _, first = np.unique(cand, return_index=True)
        cand = cand[np.sort(first)]
        cand = cand[(cache.lookup(cand) < 0) & ~np.isin(cand, blocks[sel])]
        return cand[:budget]

    def _is_rotation(self, nr_samples: int) -> bool:
        """Whether every sample of sample interval ``nr_samples`` is translated
        anyway: one interval in ``verify_every``. Together their pagemap reads
        make one io_uring batch where single reads, a few per interval, would
        each be a system call (~0.2-0.45 ms under QEMU TCG)."""
        return nr_samples % self.verify_every == 0

    def _translate(self, h: ProcessHandle, pages: np.ndarray, kind: np.ndarray,
                   frame: np.ndarray, cached: np.ndarray, reread: np.ndarray, n: int,
                   now_ns: int) -> np.ndarray:
        """Frames to check for samples translated now, through the pagemap.

        A sample in a remembered huge block reads the block's first page: the
        head while the huge page lives. A sample in a known small block to
        ``reread`` reads the whole block (at most ``translate_share`` of ``n``
        blocks per sample), which the next samples there reuse. Where the
        pagemap disagrees with what was remembered, the block is forgotten and
        the sample looked at afresh; samples in blocks not known learn them
        (:meth:`FrameChecker.resolve`), as small when nothing is there.
        """
        frames = self.frames
        assert frames is not None
        cache = h.kinds
        blocks = pages >> (BLOCK_SHIFT - PAGE_SHIFT)
        huge = kind == HUGE
        # a huge block's sample reads the block's first page, the others their own
        single = np.where(huge, blocks << (BLOCK_SHIFT - PAGE_SHIFT), pages)
        expect = np.where(huge, frame, cached)
        pfn = None
        if not np.count_nonzero(reread | (kind == UNKNOWN) | (expect == -1)):
            # the common case: the rotation's samples, translated only to verify
            # what is kept (a huge head, a frame, ABSENT). When the pagemap agrees,
            # that is the answer; the rest of the way is for what it does not,
            # with the entries read here
            pfn = frames_of(h.pagemap.read_entries(single))
            seen = np.where(frames.known_zero(pfn), -1, pfn)  # the zero page is ABSENT too
            if np.array_equal(seen, np.maximum(expect, -1)):
                return seen
        offset = pages & (BLOCK_PAGES - 1)
        whole = np.flatnonzero(reread)  # none when the entries were read above
        chosen = np.empty(0, np.int64)
        if len(whole):
            wb = np.sort(blocks[whole])
            wb = wb[np.flatnonzero(np.diff(wb, prepend=-1))]
            chosen = wb[:max(1, int(n * self.translate_share))]
            self.nr_block_translations += len(chosen)
        if len(chosen):
            pos = np.minimum(chosen.searchsorted(blocks), len(chosen) - 1)
            in_chosen = chosen[pos] == blocks
            keys = np.concatenate([single[~in_chosen],
                                   ((chosen << (BLOCK_SHIFT - PAGE_SHIFT))[:, None]
                                    + np.arange(BLOCK_PAGES)).ravel()])
            got = frames_of(h.pagemap.read_entries(keys))
            nsingle = len(keys) - len(chosen) * BLOCK_PAGES
            block_frames = got[nsingle:].reshape(len(chosen), BLOCK_PAGES)
            pfn = np.empty(len(pages), np.int64)
            pfn[~in_chosen] = got[:nsingle]
            pfn[in_chosen] = block_frames[pos[in_chosen], offset[in_chosen]]
        elif pfn is None:
            pfn = frames_of(h.pagemap.read_entries(single))
        check = np.full(len(pages), -1, np.int64)
        head_ok = huge & (pfn == frame)
        check[head_ok] = frame[head_ok]
        # the huge page is gone or another, or a translation kept is wrong: the
        # block is forgotten and the sample looked at afresh
        moved = huge & ~head_ok
        wrong = np.where(cached == ABSENT, (pfn >= 0) & ~frames.known_zero(pfn),
                         (cached >= 0) & (pfn != cached))
        if np.count_nonzero(moved | wrong):
            cache.forget(blocks[moved | wrong])
            kind = np.where(moved | wrong, UNKNOWN, kind)
            if np.count_nonzero(moved):
                pfn[moved] = frames_of(h.pagemap.read_entries(pages[moved]))
        present = ~head_ok & (pfn >= 0)
        present &= ~frames.known_zero(pfn)  # untouched memory: the zero page, never accessed
        # nothing there: no huge page either, so a block not known is small
        empty = np.flatnonzero((kind == UNKNOWN) & ~head_ok & ~present)
        if len(empty):
            cache.learn(blocks[empty], np.full(len(empty), SMALL), np.full(len(empty), -1),
                        now_ns)
        window_start = pfn - offset
        aligned = present & ((window_start & (BLOCK_PAGES - 1)) == 0)
        small = present & (kind == SMALL) & ~(aligned & (window_start != frame))
        check[small] = pfn[small]
        learn = np.flatnonzero(present & ~small)
        if len(learn):
            resolved, whole_window = frames.resolve(pfn[learn], whole_window=aligned[learn])
            check[learn] = resolved
            lpfn = pfn[learn]
            is_huge = whole_window & (resolved == window_start[learn])
            is_small = ~whole_window & (resolved == lpfn)
            sel = is_huge | is_small
            cache.learn(blocks[learn][sel], np.where(is_huge, HUGE, SMALL)[sel],
                        np.where(is_huge, resolved,
                                 np.where(aligned[learn], window_start[learn], -1))[sel],
                        now_ns)
        if len(chosen):
            self._keep_translations(cache, chosen, block_frames, now_ns)
        return check

    def _keep_translations(self, cache: BlockKinds, blocks: np.ndarray,
                           block_frames: np.ndarray, now_ns: int) -> None:
        """Keep the frames read for whole small blocks, for the next samples there.

        Pages not present and pages on the zero page are kept ABSENT: counted
        not accessed without a pagemap read until the process page-faults
        (:meth:`ProcessHandle.note_faults`): only a fault of the process puts
        a page there (a write to the zero page is a fault too). The known
        exceptions, a collapse by khugepaged over unpopulated pages and another
        process writing through ``/proc/PID/mem`` or ``process_vm_writev``,
        are seen by the rotation or at most ``translation_ttl_s`` later.
        Kept as -1 (translated again at each sample) are frames sitting where
        a PMD-mapped huge page's would, outside the window the block was
        verified small in (the sign of a collapse, which the per-sample path
        checks).
        """
        idx = cache.lookup(blocks)
        ok = np.flatnonzero((idx >= 0) & (cache.kind[idx] == SMALL))
        if not len(ok):
            return
        idx, f = idx[ok], block_frames[ok].copy()
        window_start = f - np.arange(BLOCK_PAGES)
        suspicious = (f >= 0) & ((window_start & (BLOCK_PAGES - 1)) == 0) & (
            window_start != cache.frame[idx][:, None])
        zero = self.frames.known_zero(f.ravel()).reshape(f.shape)
        f[suspicious] = -1
        f[(f == -1) & ~suspicious | zero] = ABSENT
        cache.translate(idx, f, now_ns)

    # -- DAMOS -----------------------------------------------------------------------
    def apply_scheme(self, ctx: Context, target: Target, start: int, end: int,
                     scheme: Scheme) -> tuple[int, int]:
        h: ProcessHandle | None = target.handle
        if h is None or h.exited or end <= start:
            return 0, 0
        if scheme.action in FRAME_CHANGING_ACTIONS:
            # what was remembered of these blocks may no longer hold (frames
            # freed or moved, a huge page made where pages were ABSENT)
            h.kinds.forget_range(start >> BLOCK_SHIFT, (end - 1 >> BLOCK_SHIFT) + 1)
            if self.frames is not None:  # and a frame read idle may be freed, or reused
                self.frames.forget_reads()
        if scheme.action in MIGRATE_ACTIONS:
            return self._migrate(h, start, end, scheme), 0
        advice = ACTION_ADVICE.get(scheme.action)
        if advice is None:
            return 0, 0
        try:
            applied = pidfd.process_madvise(h.pidfd, [(start, end - start)], advice)
        except OSError as e:
            # As the kernel's vaddr: nothing counts as applied unless the
            # whole call succeeded (ENOMEM for holes, EAGAIN for a collapse
            # that could not be done, ESRCH once the process is gone).
            h.madvise_errors += 1
            if h.madvise_errors <= 3 or h.madvise_errors % 1000 == 0:
                log.debug("%s: %s on pid %d [%#x, %#x): %s (%d errors so far)", self.name,
                          scheme.action.value, h.pid, start, end, e.strerror, h.madvise_errors)
            return 0, 0
        return applied, 0

    def _migrate(self, h: ProcessHandle, start: int, end: int, scheme: Scheme) -> int:
        """move_pages of the present pages of [start, end) to the scheme's target_nid."""
        try:
            mappings = procfs.maps_ranges(procfs.read_text_at(h.proc_dir, "maps"))
        except OSError:
            return 0
        frames = self.frames
        applied, err = migrate_range(h, None if frames is None else frames.kpageflags,
                                     set() if frames is None else frames.zero_pfns,
                                     mappings, start, end, scheme.target_nid)
        if err is not None:
            # the process is gone (ESRCH) or cannot be asked: the rest of the
            # region is left; what moved before still counts
            h.migrate_errors += 1
            if h.migrate_errors <= 3 or h.migrate_errors % 1000 == 0:
                log.debug("%s: %s on pid %d [%#x, %#x): %s (%d errors so far)", self.name,
                          scheme.action.value, h.pid, start, end, err.strerror,
                          h.migrate_errors)
        return applied

    # -- system metrics ------------------------------------------------------------------
    def free_mem_rate(self) -> int | None:
        return procfs.free_mem_rate()


class FvaddrOps(VaddrOps):
    """vaddr on the user's fixed regions: no three-regions init, no update."""

    name: ClassVar[str] = "fvaddr"
    auto_regions: ClassVar[bool] = False
