"""What checking one transparent huge page costs through idle page tracking.

Run in the guest (it needs the idle page bitmap and root)::

    ../shared/guest/run-in-guest --mem 3G -- .venv/bin/python bench/bench_page_idle_heads.py

A vaddr sample in a huge page is checked through its head frame: one bitmap
write marks it, one bitmap read checks it (each a reverse-map walk in the
kernel, and the read also steps over the 64 frames of its word). With THP
and 1000 regions, a 4 GiB target checks ~935 distinct heads per sample where
a 1 GiB one checks ~530 (its regions share huge pages), so this per-head
cost is what the side-by-side benchmark's 4 GiB/1 GiB ratio grows by.

For heads two huge pages apart (as at 4 GiB), this prints the CPU per head
(this process, io-wq workers included) of: one io_uring write each (how
pydamon marks far-apart heads), one inline io_uring read each (how it checks
them), and plain pwrite/pread for reference. The same calls on words that
hold no head (a zero word written, a word of tail frames read) cost all but
the reverse-map walk: the difference is the walk, the rest is the call.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "tests" / "kernel"))

from kernel_helpers import real_kernel_reason, start_workload  # noqa: E402

from pydamon.linux import page_idle  # noqa: E402
from pydamon.linux.batching import address_of  # noqa: E402
from pydamon.linux.pagemap import PAGE_SHIFT, PagemapReader  # noqa: E402
from pydamon.linux.uring import IORING_OP_READ, IORING_OP_WRITE, Uring  # noqa: E402

HUGE_PAGES = 512  # frames


def cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def heads_of(pid: int, addr: int, size: int, step_blocks: int) -> np.ndarray:
    """Head frames of the workload's PMD-mapped huge pages, every step_blocks-th block."""
    first = (addr + (2 << 20) - 1) >> 21
    last = (addr + size) >> 21
    pages = (np.arange(first, last, step_blocks, dtype=np.int64) << 21) >> PAGE_SHIFT
    fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY)
    try:
        pfns = PagemapReader(fd).frames(pages << PAGE_SHIFT)
    finally:
        os.close(fd)
    return np.sort(pfns[(pfns >= 0) & (pfns % HUGE_PAGES == 0)])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mib", type=int, default=2048)
    ap.add_argument("--step-blocks", type=int, default=2, help="heads this many huge pages apart")
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args()
    reason = real_kernel_reason()
    if reason:
        print(reason, file=sys.stderr)
        return 2
    w = start_workload(args.size_mib, args.size_mib // 2, 64, thp=True)
    try:
        heads = heads_of(w.pid, w.addr, w.size, args.step_blocks)
        fd = os.open(page_idle.BITMAP_PATH, os.O_RDWR)
        ring = Uring()
        try:
            run(heads, fd, ring, args.rounds)
        finally:
            ring.close()
            os.close(fd)
    finally:
        w.proc.kill()
        w.proc.wait()
    return 0


def run(heads: np.ndarray, fd: int, ring: Uring, rounds: int) -> None:
    n = len(heads)
    offsets = (heads >> 6) * 8
    words = (np.uint64(1) << (heads & 63).astype(np.uint64)).astype(np.uint64)
    buf = np.zeros(n, np.uint64)
    lens = np.full(n, 8)
    write_addrs = address_of(words) + np.arange(n) * 8
    read_addrs = address_of(buf) + np.arange(n) * 8
    ring.issue_inline(IORING_OP_READ, fd)

    def ring_write() -> None:
        ring.run(IORING_OP_WRITE, fd, offsets, write_addrs, lens, None)

    def ring_read() -> None:
        ring.run(IORING_OP_READ, fd, offsets, read_addrs, lens, None)

    # the same calls without a walk: a zero word at each head's offset (no bit
    # set, nothing marked), and the word after each head's (64 tail frames of
    # its huge page, which the bitmap read skips)
    zero_words = np.zeros(n, np.uint64)
    zero_addrs = address_of(zero_words) + np.arange(n) * 8

    def ring_write_zero() -> None:
        ring.run(IORING_OP_WRITE, fd, offsets, zero_addrs, lens, None)

    def ring_read_tails() -> None:
        ring.run(IORING_OP_READ, fd, offsets + 8, read_addrs, lens, None)

    # heads in pairs (neighbours in frame order, at most 64 words apart), one
    # write each carrying the zero words between the two
    first, second = heads[0:n - n % 2:2], heads[1:n - n % 2:2]
    near = (second >> 6) - (first >> 6) < 64
    first, second = first[near], second[near]
    span_words = (second >> 6) - (first >> 6) + 1
    spans = np.zeros(int(span_words.sum()), np.uint64)
    span_starts = np.concatenate(([0], span_words.cumsum()[:-1]))
    spans[span_starts] |= np.uint64(1) << (first & 63).astype(np.uint64)
    spans[span_starts + span_words - 1] |= np.uint64(1) << (second & 63).astype(np.uint64)
    span_addrs = address_of(spans) + span_starts * 8

    def ring_write_pairs() -> None:
        ring.run(IORING_OP_WRITE, fd, (first >> 6) * 8, span_addrs, span_words * 8, None)

    def plain_write() -> None:
        for off, word in zip(offsets.tolist(), words.tolist(), strict=True):
            os.pwrite(fd, word.to_bytes(8, "little"), off)

    def plain_read() -> None:
        for off in offsets.tolist():
            os.pread(fd, 8, off)

    def per_head_us(step, before=None) -> float:
        total = 0.0
        for _ in range(rounds):
            if before is not None:
                before()
            t0 = cpu_s()
            step()
            total += cpu_s() - t0
        return total / (rounds * n) * 1e6

    print(f"{n} huge-page heads, {rounds} rounds; CPU per head (us), this process "
          f"and its io-wq workers")
    w_ring = per_head_us(ring_write)
    r_ring = per_head_us(ring_read, before=ring_write)  # idle heads: a walk each
    w_zero = per_head_us(ring_write_zero)
    r_tails = per_head_us(ring_read_tails)
    w_pairs = per_head_us(ring_write_pairs) * n / (2 * len(first))
    w_plain = per_head_us(plain_write)
    r_plain = per_head_us(plain_read, before=plain_write)
    ring_write()
    ring_read()  # idle unless the workload touched them since the mark (its hot range)
    still_idle = float(np.mean((buf >> (heads & 63).astype(np.uint64)) & np.uint64(1)))
    print(f"  mark, io_uring write each     {w_ring:7.1f}")
    print(f"  check, inline io_uring read   {r_ring:7.1f}")
    print(f"  the same write, a zero word   {w_zero:7.1f}  (no walk: the io-wq write "
          f"itself; the walk {w_ring - w_zero:.1f})")
    print(f"  the same read, a tail word    {r_tails:7.1f}  (no walk: the inline read "
          f"itself; the walk {r_ring - r_tails:.1f})")
    print(f"  mark, io_uring write per pair {w_pairs:7.1f}  (carrying "
          f"{float(np.mean(span_words)) - 2:.0f} zero words between the two)")
    print(f"  mark, pwrite each             {w_plain:7.1f}")
    print(f"  check, pread each             {r_plain:7.1f}")
    print(f"  mark + check through io_uring {w_ring + r_ring:7.1f} per head "
          f"({still_idle:.0%} of the heads read idle)")


if __name__ == "__main__":
    sys.exit(main())
