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


class StopEvent(threading.Event):
    """An event a sleeper waits on with one lock acquisition.

    ``Event.wait`` with a timeout goes through a Condition (a lock made per
    wait, several futex calls); the kdamond sleeps once per sample, and under
    an emulated CPU that wait cost ~1.6 ms of CPU against ~0.9 ms for a plain
    sleep (QEMU TCG). :meth:`sleep` blocks on a lock that :meth:`set` releases.
    """

    def __init__(self) -> None:
        super().__init__()
        self._wake = threading.Lock()
        self._wake.acquire()  # held while not set: sleepers block on it

    def set(self) -> None:
        super().set()
        try:
            self._wake.release()
        except RuntimeError:
            pass  # already released: set before

    def clear(self) -> None:
        super().clear()
        self._wake.acquire(blocking=False)

    def sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if the event is or gets set."""
        if seconds > 0 and not self.is_set() and self._wake.acquire(timeout=seconds):
            if self.is_set():
                self._wake.release()  # leave it released for other sleepers
            # else cleared again meanwhile: keep it held, as a clear event has it


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
        elif isinstance(interrupt, StopEvent):
            interrupt.sleep(us / 1e6)
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
