"""Real-kernel tests: they run inside the QEMU guest (../shared/guest).

On the host, ``test_in_guest.py`` boots the guest once and runs the
``guest_*.py`` files there with pytest, so the plain ``pytest`` of CI runs
them. Inside the guest (or on any kernel with idle page tracking, as root)
they can also be run directly::

    ../shared/guest/run-in-guest --mem 4G -- .venv/bin/python -m pytest tests/kernel/guest_vaddr.py

Helpers live in kernel_helpers.py; the shared fixtures are here.
"""

from __future__ import annotations

import pytest
from kernel_helpers import real_kernel_reason, spawn_workload, wait_workload


@pytest.fixture(scope="session")
def real_kernel() -> None:
    reason = real_kernel_reason()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def workloads_1g(real_kernel):
    """1 GiB buffers with a hot 64 MiB in the middle: (4 KiB pages, THP), populated together."""
    spawned = [spawn_workload(1024, 512, 64, thp=False), spawn_workload(1024, 512, 64, thp=True)]
    try:
        yield tuple(wait_workload(s) for s in spawned)
    finally:
        for proc, _ in spawned:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
