"""Clocks for the engine: real time for real memory, virtual time for simulations.

The kdamond loop never reads time or sleeps by itself; it asks its clock.
A :class:`VirtualClock` makes ``sleep`` advance time instantly, so an hour of
monitoring of a simulated workload runs as fast as the engine can compute,
and deterministically.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def now_ns(self) -> int:
        """Monotonic time in nanoseconds."""

    def sleep_us(self, us: int, interrupt: threading.Event | None = None) -> None:
        """Wait ``us`` microseconds, or less if ``interrupt`` gets set."""

    def charge_ns(self, ns: int) -> None:
        """Account ``ns`` of simulated work (no-op on a real clock)."""

    @property
    def is_virtual(self) -> bool: ...


class RealClock:
    """Monotonic wall-clock time; sleeps really sleep."""

    is_virtual = False

    def now_ns(self) -> int:
        return time.monotonic_ns()

    def sleep_us(self, us: int, interrupt: threading.Event | None = None) -> None:
        if us <= 0:
            return
        if interrupt is None:
            time.sleep(us / 1e6)
        else:
            interrupt.wait(us / 1e6)

    def charge_ns(self, ns: int) -> None:
        pass


class VirtualClock:
    """Time that moves only when the engine sleeps or work is charged.

    One virtual clock per kdamond: two engines sharing one would see each
    other's sleeps as their own.
    """

    is_virtual = True

    def __init__(self, start_ns: int = 0):
        self._now = start_ns

    def now_ns(self) -> int:
        return self._now

    def sleep_us(self, us: int, interrupt: threading.Event | None = None) -> None:
        if us > 0:
            self._now += us * 1000

    def charge_ns(self, ns: int) -> None:
        if ns > 0:
            self._now += ns

    def advance_us(self, us: int) -> None:
        self.sleep_us(us)
