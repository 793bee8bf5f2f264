"""What backs each 2 MiB block of a process, and the block's translations.

The idle page bitmap ignores tail frames, so a sample in a huge page must
be checked through the head frame; finding the head takes a read of
``/proc/kpageflags``. :class:`BlockKinds` remembers the answer per block so
that a block costs that read once, not at every sample:

* a **huge** block remembers its head frame, kept while the pagemap entry
  of the block's first page still is the head (a migrated, re-collapsed or
  freed huge page shows another frame there; :mod:`.vaddr` says when it
  reads that entry);
* a **small** block remembers the one frame alignment it verified: a sample
  whose frame sits at the same offset in its 2 MiB frame window as the page
  in its block (as every page of a PMD-mapped huge page does) and does not
  match is checked again, which is how a collapse by khugepaged is noticed;
* a huge page split in place keeps its frames and shows nothing in the
  pagemap, so huge blocks are also re-learned after ``ttl_ns``, a few at a
  time, so the cost is spread and bounded whatever the target's size.

A small block may also keep the frames of all its 512 pages, read in one
pagemap call (:meth:`BlockKinds.translate`): a read of 512 entries costs
about two reads of one, and a block sampled again within the translations'
lifetime needs no pagemap read at all (the caller decides when a cached
frame must be confirmed; see :mod:`.vaddr`). At most ``max_translated``
blocks keep translations (4 KiB each); the oldest make room.

Arrays sorted by block number, looked up with ``searchsorted``: the per-sample
path handles every region at once. Every column ends with one sentinel
entry, what an unknown block reads as, so a lookup's -1 indexes it and the
gathers need no masking (each numpy call counts on the per-sample path).
"""

from __future__ import annotations

import numpy as np

BLOCK_SHIFT = 21  # a PMD-sized huge page covers 2 MiB
BLOCK_PAGES = 1 << (BLOCK_SHIFT - 12)
UNKNOWN = -1
SMALL = 0
HUGE = 1
#: a kept translation of a page with no frame to check: not present, or the
#: zero page (only a page fault of the process makes a page there; see vaddr)
ABSENT = -2
#: sorts after every real block: searchsorted past the last block lands on it
_NO_BLOCK = np.iinfo(np.int64).max
#: blocks whose translations are kept, by default (32 MiB, 16 GiB of target)
DEFAULT_MAX_TRANSLATED = 8192


class BlockKinds:
    """Block number -> (kind, frame, time learned, translations), for one process."""

    def __init__(self, max_translated: int = DEFAULT_MAX_TRANSLATED) -> None:
        self.max_translated = max_translated
        self.blocks = np.array([_NO_BLOCK], np.int64)
        self.kind = np.array([UNKNOWN], np.int8)
        #: HUGE: the head frame; SMALL: the aligned window start verified small (-1: none)
        self.frame = np.array([-1], np.int64)
        self.learned_ns = np.zeros(1, np.int64)
        #: the row of ``pool`` holding the block's page frames (-1: none, the sentinel row)
        self.row = np.array([-1], np.int64)
        #: when the translations were read (0: never)
        self.translated_ns = np.zeros(1, np.int64)
        #: frame of each page of a translated block, one row per block (ABSENT,
        #: or -1: not to be trusted); the last row is the all -1 sentinel
        self.pool = np.full((1, BLOCK_PAGES), -1, np.int64)
        self._free_rows: list[int] = []

    def __len__(self) -> int:
        return len(self.blocks) - 1

    def lookup(self, blocks: np.ndarray) -> np.ndarray:
        """Index of each block in the columns, -1 (the sentinel) for blocks not known."""
        idx = self.blocks.searchsorted(blocks)
        return np.where(self.blocks[idx] == blocks, idx, -1)

    def entries(self, blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(kind, frame, time learned) of each block; UNKNOWN, -1, 0 for blocks not known."""
        idx = self.lookup(blocks)
        return self.kind[idx], self.frame[idx], self.learned_ns[idx]

    def learn(self, blocks: np.ndarray, kinds: np.ndarray, frames: np.ndarray,
              now_ns: int) -> None:
        """Record blocks (a block given twice keeps its last entry). A block
        learned again loses its translations."""
        if not len(blocks):
            return
        # the last entry of each block wins
        rev = np.unique(blocks[::-1], return_index=True)[1]
        keep = len(blocks) - 1 - rev
        blocks, kinds, frames = blocks[keep], kinds[keep], frames[keep]
        idx = self.lookup(blocks)
        old = idx >= 0
        i = idx[old]
        self._release(i)
        self.kind[i] = kinds[old]
        self.frame[i] = frames[old]
        self.learned_ns[i] = now_ns
        new = ~old
        if new.any():
            nb = int(new.sum())
            self._rebuild(np.concatenate([self.blocks[:-1], blocks[new]]),
                          np.concatenate([self.kind[:-1], kinds[new].astype(np.int8)]),
                          np.concatenate([self.frame[:-1], frames[new]]),
                          np.concatenate([self.learned_ns[:-1], np.full(nb, now_ns, np.int64)]),
                          np.concatenate([self.row[:-1], np.full(nb, -1, np.int64)]),
                          np.concatenate([self.translated_ns[:-1], np.zeros(nb, np.int64)]))

    def translate(self, idx: np.ndarray, frames: np.ndarray, now_ns: int) -> None:
        """Keep ``frames`` (one row of 512 page frames each, ABSENT, or -1 for pages
        not to be trusted) for the known blocks at ``idx`` (distinct indexes from
        :meth:`lookup`)."""
        idx = np.asarray(idx, np.int64)
        if not len(idx):
            return
        rows = self.row[idx]
        fresh = np.flatnonzero(rows < 0)
        if len(fresh):
            got = self._take_rows(len(fresh), exclude=idx)
            if len(got) < len(fresh):  # fewer rows than blocks (a tiny max_translated)
                keep = np.ones(len(idx), bool)
                keep[fresh[len(got):]] = False
                idx, rows, frames, fresh = idx[keep], rows[keep], frames[keep], fresh[:len(got)]
            rows[fresh] = got
        self.pool[rows] = frames
        self.row[idx] = rows
        self.translated_ns[idx] = now_ns

    def forget_range(self, lo: int, hi: int) -> None:
        """Forget the blocks ``lo <= block < hi``."""
        a, b = (int(x) for x in self.blocks[:-1].searchsorted([lo, hi]))
        if a < b:
            self.forget(self.blocks[a:b].copy())

    def forget(self, blocks: np.ndarray) -> None:
        idx = self.lookup(blocks)
        idx = idx[idx >= 0]
        if len(idx):
            self._release(idx)
            keep = np.ones(len(self.blocks), bool)
            keep[idx] = False
            self.blocks, self.kind = self.blocks[keep], self.kind[keep]
            self.frame, self.learned_ns = self.frame[keep], self.learned_ns[keep]
            self.row, self.translated_ns = self.row[keep], self.translated_ns[keep]

    def clear(self) -> None:
        self.__init__(self.max_translated)

    def as_dict(self) -> dict[int, int]:
        """{block: kind}, for tests and reports."""
        return dict(zip(self.blocks[:-1].tolist(), self.kind[:-1].tolist(), strict=True))

    @property
    def nr_translated(self) -> int:
        return int(np.count_nonzero(self.row[:-1] >= 0))

    # -- internals -------------------------------------------------------------------
    def _rebuild(self, blocks, kind, frame, learned_ns, row, translated_ns) -> None:
        """Set the columns from unsorted real entries, sorted, with the sentinel appended."""
        order = np.argsort(blocks, kind="stable")
        self.blocks = np.append(blocks[order], _NO_BLOCK)
        self.kind = np.append(kind[order], np.int8(UNKNOWN))
        self.frame = np.append(frame[order], -1)
        self.learned_ns = np.append(learned_ns[order], 0)
        self.row = np.append(row[order], -1)
        self.translated_ns = np.append(translated_ns[order], 0)

    def _release(self, idx: np.ndarray) -> None:
        """Drop the translations of the blocks at ``idx``."""
        rows = self.row[idx]
        rows = rows[rows >= 0]
        if len(rows):
            self._free_rows.extend(rows.tolist())
            self.pool[rows] = -1
            self.row[idx] = -1
            self.translated_ns[idx] = 0

    def _take_rows(self, n: int, exclude: np.ndarray) -> np.ndarray:
        """``n`` pool rows: free ones, new ones up to ``max_translated``, then the
        oldest translations' (of blocks not in ``exclude``)."""
        real = len(self.pool) - 1
        if len(self._free_rows) < n and real < self.max_translated:
            grow = min(self.max_translated, max(real * 2, n, 64)) - real
            pool = np.full((real + grow + 1, BLOCK_PAGES), -1, np.int64)
            pool[:real] = self.pool[:real]
            self.pool = pool
            self._free_rows.extend(range(real, real + grow))
        if len(self._free_rows) < n:
            owners = np.flatnonzero(self.row[:-1] >= 0)
            owners = owners[~np.isin(owners, exclude)]
            k = min(len(owners), n - len(self._free_rows))
            oldest = owners[np.argsort(self.translated_ns[owners], kind="stable")[:k]]
            self._release(oldest)
        taken, self._free_rows = self._free_rows[:n], self._free_rows[n:]
        return np.array(taken, np.int64)
