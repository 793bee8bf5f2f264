"""What backs each 2 MiB block of a process: small pages or one PMD-mapped huge page.

The idle page bitmap ignores tail frames, so a sample in a huge page must
be checked through the head frame; finding the head takes a read of
``/proc/kpageflags``. :class:`BlockKinds` remembers the answer per block so
that a block costs that read once, not at every sample:

* a **huge** block remembers its head frame; every sample re-reads the
  pagemap entry of the block's first page and keeps the answer only while
  that entry still is the head (a migrated, re-collapsed or freed huge page
  shows another frame there);
* a **small** block remembers the one frame alignment it verified: a sample
  whose frame sits at the same offset in its 2 MiB frame window as the page
  in its block (as every page of a PMD-mapped huge page does) and does not
  match is checked again, which is how a collapse by khugepaged is noticed;
* a huge page split in place keeps its frames and shows nothing in the
  pagemap, so huge blocks are also re-learned after ``ttl_ns``, a few per
  sample, so the cost is spread and bounded whatever the target's size.

Arrays sorted by block number, looked up with ``searchsorted``: the per-sample
path handles every region at once.
"""

from __future__ import annotations

import numpy as np

BLOCK_SHIFT = 21  # a PMD-sized huge page covers 2 MiB
BLOCK_PAGES = 1 << (BLOCK_SHIFT - 12)
UNKNOWN = -1
SMALL = 0
HUGE = 1


class BlockKinds:
    """Block number -> (kind, frame, time learned), for one process."""

    def __init__(self) -> None:
        self.blocks = np.empty(0, np.int64)
        self.kind = np.empty(0, np.int8)
        #: HUGE: the head frame; SMALL: the aligned window start verified small (-1: none)
        self.frame = np.empty(0, np.int64)
        self.learned_ns = np.empty(0, np.int64)

    def __len__(self) -> int:
        return len(self.blocks)

    def lookup(self, blocks: np.ndarray) -> np.ndarray:
        """Index of each block in the arrays, -1 for blocks not known."""
        if not len(self.blocks):
            return np.full(len(blocks), -1, np.int64)
        idx = self.blocks.searchsorted(blocks)
        idx[idx == len(self.blocks)] = 0
        return np.where(self.blocks[idx] == blocks, idx, -1)

    def entries(self, blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(kind, frame, time learned) of each block; UNKNOWN, -1, 0 for blocks not known."""
        idx = self.lookup(blocks)
        known = idx >= 0
        if not known.any():
            n = len(blocks)
            return np.full(n, UNKNOWN, np.int8), np.full(n, -1, np.int64), np.zeros(n, np.int64)
        safe = np.where(known, idx, 0)
        return (np.where(known, self.kind[safe], UNKNOWN).astype(np.int8),
                np.where(known, self.frame[safe], -1), np.where(known, self.learned_ns[safe], 0))

    def learn(self, blocks: np.ndarray, kinds: np.ndarray, frames: np.ndarray,
              now_ns: int) -> None:
        """Record blocks (a block given twice keeps its last entry)."""
        if not len(blocks):
            return
        # the last entry of each block wins
        rev = np.unique(blocks[::-1], return_index=True)[1]
        keep = len(blocks) - 1 - rev
        blocks, kinds, frames = blocks[keep], kinds[keep], frames[keep]
        idx = self.lookup(blocks)
        old = idx >= 0
        self.kind[idx[old]] = kinds[old]
        self.frame[idx[old]] = frames[old]
        self.learned_ns[idx[old]] = now_ns
        new = ~old
        if new.any():
            b = np.concatenate([self.blocks, blocks[new]])
            order = np.argsort(b, kind="stable")
            self.blocks = b[order]
            self.kind = np.concatenate([self.kind, kinds[new].astype(np.int8)])[order]
            self.frame = np.concatenate([self.frame, frames[new]])[order]
            self.learned_ns = np.concatenate(
                [self.learned_ns, np.full(int(new.sum()), now_ns, np.int64)])[order]

    def forget(self, blocks: np.ndarray) -> None:
        idx = self.lookup(blocks)
        idx = idx[idx >= 0]
        if len(idx):
            keep = np.ones(len(self.blocks), bool)
            keep[idx] = False
            self.blocks, self.kind = self.blocks[keep], self.kind[keep]
            self.frame, self.learned_ns = self.frame[keep], self.learned_ns[keep]

    def clear(self) -> None:
        self.__init__()

    def as_dict(self) -> dict[int, int]:
        """{block: kind}, for tests and reports."""
        return dict(zip(self.blocks.tolist(), self.kind.tolist(), strict=True))
