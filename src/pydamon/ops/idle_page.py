"""What the Linux operations sets share: the idle page bitmap and the refusal
of actions user space cannot apply."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, ClassVar

from ..core.damos import Action, Scheme
from ..errors import einval
from ..linux import caps
from ..linux.page_idle import FrameChecker
from .base import Operations

if TYPE_CHECKING:
    from ..core.context import Context

log = logging.getLogger("pydamon.ops")


class IdlePageOps(Operations):
    """An operations set that checks accesses in ``/sys/kernel/mm/page_idle/bitmap``.

    The bitmap (and the capability checks that come with it) is opened when
    a kdamond starts and closed when it stops. Schemes whose action has no
    user-space mechanism are refused at start and commit with EINVAL and a
    log line that says why (:attr:`unsupported_why`).
    """

    #: why an action is refused, per action (a generic reason otherwise)
    unsupported_why: ClassVar[dict[Action, str]] = {}
    unsupported_default_why: ClassVar[str] = "not supported"
    #: a frame the last check read idle is not marked again when that check
    #: began at most this share of a sampling interval before the marks
    #: (:meth:`FrameChecker.mark`): its next sampling window then starts at
    #: the read, so it is at most this much longer than the others
    reuse_reads_share: float = 0.1

    def __init__(self) -> None:
        self.frames: FrameChecker | None = None
        #: the context being monitored (its clock and sampling interval), from init
        self._ctx: Context | None = None

    def rejection(self, scheme: Scheme) -> str | None:
        """Why ``scheme`` cannot run on this set, or None."""
        if scheme.action not in self.supported_actions:
            return self.unsupported_why.get(scheme.action, self.unsupported_default_why)
        return None

    def check_ctx(self, ctx: Context) -> None:
        for i, s in enumerate(ctx.schemes):
            why = self.rejection(s)
            if why is not None:
                log.warning("%s: rejecting scheme %d, action %r: %s",
                            self.name, i, s.action.value, why)
                raise einval(f"{self.name} cannot apply action {s.action.value!r} "
                             f"(scheme {i}): {why}")

    def _ready(self) -> FrameChecker:
        if self.frames is None:
            caps.check_real_kernel_ready()
            self.frames = FrameChecker.open()
        return self.frames

    def init(self, ctx: Context) -> None:
        self._ready()
        self._ctx = ctx

    def _now_ns(self) -> int | None:
        return self._ctx.clock.now_ns() if self._ctx is not None else None

    def _mark(self, check_pfns) -> None:
        """Mark the frames of a sample (``self.frames`` is open). The clock is
        read here, just before the marks, not reused from earlier in the
        preparation: the reuse bound is judged on the latest time."""
        ctx = self._ctx
        reuse_ns = (None if ctx is None
                    else int(ctx.sample_interval() * 1000 * self.reuse_reads_share))
        self.frames.mark(check_pfns, self._now_ns(), reuse_ns)

    def _accessed(self, check_pfns):
        """Which frames of a sample were accessed (``self.frames`` is open)."""
        return self.frames.accessed(check_pfns, self._now_ns())

    def cleanup(self, ctx: Context) -> None:
        self._ctx = None
        if self.frames is not None:
            self.frames.close()
            self.frames = None
