"""Where the workplace's shared tools are (``<repo>/../shared``), and a guest runner.

CI clones the repository next to a copy of ``shared/``, so every path is
taken relative to the checkout, never from an absolute location.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
GUEST = SHARED / "guest" / "run-in-guest"
SANDBOX = SHARED / "tools" / "damon-sandbox"

#: one region of ``damo report access --raw_number``: address, size, accesses
DAMO_REGION_LINE = re.compile(r"^\d+\s+addr (\d+)\s+size (\d+)\s+access ([\d.]+)\s+age")

#: run-in-guest's status when the guest itself failed (boot failure, kernel panic)
GUEST_FAILED = 125


def run_in_guest(args: list[str], *, timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """``run-in-guest ARGS``, booted once more if the guest itself failed.

    Under TCG the emulated kernel rarely panics while booting (seen once:
    enqueue_timer during early boot); that says nothing about the code under
    test, so one more boot is tried before the result counts.
    """
    for _ in range(2):
        result = subprocess.run(["bash", str(GUEST), *args], capture_output=True, text=True,
                                timeout=timeout, **kwargs)
        if result.returncode != GUEST_FAILED:
            break
    return result
