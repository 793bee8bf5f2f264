"""A process with a hot and a cold part, for the real-kernel tests and benchmarks.

Maps an anonymous buffer (huge pages or 4 KiB pages), writes all of it once,
then keeps writing one byte of every page of the hot range in a loop. It
prints one JSON line (its pid, the buffer address, the hot range) and writes
it to ``--ready`` when the buffer is populated. No C, only Python and numpy
(the touch loop is a strided numpy write, fast enough under TCG).

    python workload.py --size-mib 1024 --hot-offset-mib 512 --hot-size-mib 64 [--thp]
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import sys
import time

import numpy as np

PAGE = 4096
HUGE = 2 << 20
MADV_POPULATE_WRITE = 23  # Linux 5.14


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--hot-offset-mib", type=int, default=0)
    ap.add_argument("--hot-size-mib", type=int, default=64)
    ap.add_argument("--thp", action="store_true", help="back the buffer with huge pages")
    ap.add_argument("--hugepage-after-populate", action="store_true",
                    help="populate with 4 KiB pages, then madvise(MADV_HUGEPAGE): "
                         "small pages that may be collapsed into huge ones")
    ap.add_argument("--duration", type=float, default=3600.0, help="exit after this many seconds")
    ap.add_argument("--ready", default="", help="file to write the JSON description to")
    ap.add_argument("--period-ms", type=float, default=0.0,
                    help="sleep between passes over the hot range (0: none)")
    args = ap.parse_args(argv)

    size = args.size_mib << 20
    # over-allocate by one huge page so the buffer can start 2 MiB aligned
    raw = mmap.mmap(-1, size + HUGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    base_all = np.frombuffer(raw, np.uint8)
    raw_addr = base_all.ctypes.data
    skip = (-raw_addr) % HUGE
    raw.madvise(mmap.MADV_HUGEPAGE if args.thp else mmap.MADV_NOHUGEPAGE)
    buf = base_all[skip:skip + size]
    addr = raw_addr + skip
    try:
        # populate in the kernel: a user fault per 4 KiB page is slow under TCG
        raw.madvise(MADV_POPULATE_WRITE, skip, size)
    except OSError:
        pass
    buf[::PAGE] = 1  # write every page (a no-op for the faults if populated)
    if args.hugepage_after_populate and not args.thp:
        raw.madvise(mmap.MADV_HUGEPAGE, skip, size)
    hot_lo = args.hot_offset_mib << 20
    hot_hi = hot_lo + (args.hot_size_mib << 20)
    hot = buf[hot_lo:hot_hi]
    info = {
        "pid": os.getpid(),
        "addr": addr,
        "size": size,
        "hot_start": addr + hot_lo,
        "hot_end": addr + hot_hi,
        "thp": args.thp,
    }
    line = json.dumps(info)
    if args.ready:
        tmp = args.ready + ".tmp"
        with open(tmp, "w") as f:
            f.write(line + "\n")
        os.replace(tmp, args.ready)
    print(line, flush=True)
    end = time.monotonic() + args.duration
    sleep = args.period_ms / 1000
    value = 2
    while time.monotonic() < end:
        hot[::PAGE] = value  # one write per page of the hot range
        value = (value + 1) & 0x7F or 1
        if sleep:
            time.sleep(sleep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
