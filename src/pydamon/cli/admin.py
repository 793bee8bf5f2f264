"""Driving a DAMON sysfs admin tree by plain file reads and writes, as damo does.

``start``, ``tune``, ``stop`` and ``status`` work on any directory laid out
like ``/sys/kernel/mm/damon/admin``: the pydamon daemon's FUSE mount
(default ``/run/pydamon/sysfs``), or, in tests, an in-process tree. File
access goes through a small :class:`AdminDir` so both work the same.

Staging follows damo's order (see damo-interop.md, "What each command
writes"): ``nr_*`` files are written only when they differ (a write
recreates every child with defaults), then operations, intervals, region
bounds, targets and their regions, schemes; then the ``state`` command.
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass, field
from typing import Protocol

from ..core.attrs import MonitoringAttrs
from ..core.damos import Scheme

DEFAULT_SYSFS_DIR = "/run/pydamon/sysfs"


class AdminError(Exception):
    """A failed read/write of the admin tree; the message names the file, errno and fix."""


_HINTS = {
    errno.EBUSY: "a kdamond is running; stop it first (pydamon stop)",
    errno.EINVAL: "the value or command was rejected; check the option values "
                  "(e.g. -s must not exceed -a, ranges need min <= max)",
    errno.EACCES: "permission denied; run as root (the admin files are root's, mode 0600)",
    errno.EPERM: "operation not permitted; run as root, or the kdamond is not running",
    errno.ENOENT: "no such file; is the tree mounted? start it with "
                  "'pydamon daemon --sysfs DIR' or pass the right --sysfs DIR",
    errno.ESRCH: "the target process does not exist; check the pid",
    errno.ENOTCONN: "the FUSE daemon died; unmount the directory (umount -l DIR) and restart it",
}


def explain_oserror(action: str, path: str, e: OSError) -> AdminError:
    name = errno.errorcode.get(e.errno or 0, str(e.errno))
    hint = _HINTS.get(e.errno or 0, "")
    return AdminError(f"{action} {path} failed: {name} ({os.strerror(e.errno or 0)})"
                      + (f"; {hint}" if hint else ""))


class AdminDir(Protocol):
    """File access relative to the admin directory (the one holding ``kdamonds/``)."""

    def read(self, rel: str) -> str: ...
    def write(self, rel: str, text: str) -> None: ...
    def exists(self, rel: str) -> bool: ...
    def isdir(self, rel: str) -> bool: ...
    def listdir(self, rel: str) -> list[str]: ...
    def describe(self, rel: str) -> str: ...


class RealAdminDir:
    """A real directory (a FUSE mount of the daemon, or the kernel's sysfs if asked)."""

    def __init__(self, root: str):
        self.root = resolve_admin_root(root)

    def _p(self, rel: str) -> str:
        return os.path.join(self.root, rel)

    def describe(self, rel: str) -> str:
        return self._p(rel)

    def read(self, rel: str) -> str:
        try:
            with open(self._p(rel)) as f:
                return f.read()
        except OSError as e:
            raise explain_oserror("reading", self._p(rel), e) from None

    def write(self, rel: str, text: str) -> None:
        try:
            fd = os.open(self._p(rel), os.O_WRONLY | os.O_TRUNC)
        except OSError as e:
            raise explain_oserror(f"writing {text!r} to", self._p(rel), e) from None
        try:
            os.write(fd, text.encode())
        except OSError as e:
            raise explain_oserror(f"writing {text!r} to", self._p(rel), e) from None
        finally:
            os.close(fd)

    def exists(self, rel: str) -> bool:
        return os.path.exists(self._p(rel))

    def isdir(self, rel: str) -> bool:
        return os.path.isdir(self._p(rel))

    def listdir(self, rel: str) -> list[str]:
        try:
            return os.listdir(self._p(rel))
        except OSError as e:
            raise explain_oserror("listing", self._p(rel), e) from None


class TreeAdminDir:
    """An in-process :class:`pydamon.interfaces.tree.Tree` (tests, embedding)."""

    def __init__(self, tree):
        self.tree = tree

    def describe(self, rel: str) -> str:
        return "/" + rel

    def read(self, rel: str) -> str:
        try:
            return self.tree.read(rel)
        except OSError as e:
            raise explain_oserror("reading", "/" + rel, e) from None

    def write(self, rel: str, text: str) -> None:
        try:
            self.tree.write(rel, text)
        except OSError as e:
            raise explain_oserror(f"writing {text!r} to", "/" + rel, e) from None

    def exists(self, rel: str) -> bool:
        try:
            self.tree.lookup(rel)
            return True
        except OSError:
            return False

    def isdir(self, rel: str) -> bool:
        from ..interfaces.tree import Dir

        try:
            return isinstance(self.tree.lookup(rel), Dir)
        except OSError:
            return False

    def listdir(self, rel: str) -> list[str]:
        try:
            return self.tree.listdir(rel)
        except OSError as e:
            raise explain_oserror("listing", "/" + rel, e) from None


def resolve_admin_root(root: str) -> str:
    """The directory holding ``kdamonds/`` under ``root`` (root itself, admin/, or the full path)."""
    for sub in ("", "admin", "kernel/mm/damon/admin"):
        cand = os.path.join(root, sub) if sub else root
        if os.path.isdir(os.path.join(cand, "kdamonds")):
            return cand
    if not os.path.exists(root):
        raise AdminError(f"{root} does not exist; start the daemon first "
                         f"(sudo pydamon daemon --sysfs {root}) or pass --sysfs DIR")
    raise AdminError(f"{root} has no kdamonds/ directory; it is not a DAMON sysfs admin "
                     f"tree (is the pydamon daemon mounted there? 'findmnt {root}')")


# -- what to stage ------------------------------------------------------------------------
@dataclass
class StageTarget:
    pid: int | None = None
    regions: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class StageRequest:
    ops: str
    attrs: MonitoringAttrs
    targets: list[StageTarget]
    schemes: list[Scheme]


K = "kdamonds"


def _ctx(kd: int = 0) -> str:
    return f"{K}/{kd}/contexts/0"


def _set_nr(adm: AdminDir, rel: str, n: int) -> None:
    """Write an ``nr_*`` file only when it differs: a write recreates all children."""
    if adm.read(rel).strip() != str(n):
        adm.write(rel, str(n))


def kdamond_states(adm: AdminDir) -> list[str]:
    n = int(adm.read(f"{K}/nr_kdamonds").strip() or 0)
    return [adm.read(f"{K}/{i}/state").strip() for i in range(n)]


def stage(adm: AdminDir, req: StageRequest, kd: int = 0) -> None:
    n_kd = int(adm.read(f"{K}/nr_kdamonds").strip() or 0)
    if n_kd <= kd:
        adm.write(f"{K}/nr_kdamonds", str(kd + 1))
    if adm.exists(f"{K}/{kd}/refresh_ms"):
        adm.write(f"{K}/{kd}/refresh_ms", "0")
    _set_nr(adm, f"{K}/{kd}/contexts/nr_contexts", 1)
    c = _ctx(kd)
    adm.write(f"{c}/operations", req.ops)
    a = req.attrs
    iv = f"{c}/monitoring_attrs/intervals"
    adm.write(f"{iv}/sample_us", str(a.sample_us))
    adm.write(f"{iv}/aggr_us", str(a.aggr_us))
    adm.write(f"{iv}/update_us", str(a.update_us))
    if adm.isdir(f"{iv}/intervals_goal"):
        g = a.intervals_goal
        for name, v in (("access_bp", g.access_bp), ("aggrs", g.aggrs),
                        ("min_sample_us", g.min_sample_us), ("max_sample_us", g.max_sample_us)):
            adm.write(f"{iv}/intervals_goal/{name}", str(v))
    adm.write(f"{c}/monitoring_attrs/nr_regions/min", str(a.min_nr_regions))
    adm.write(f"{c}/monitoring_attrs/nr_regions/max", str(a.max_nr_regions))
    if adm.exists(f"{c}/addr_unit"):
        adm.write(f"{c}/addr_unit", "1")
    _set_nr(adm, f"{c}/targets/nr_targets", len(req.targets))
    for i, t in enumerate(req.targets):
        td = f"{c}/targets/{i}"
        if t.pid is not None:
            adm.write(f"{td}/pid_target", str(t.pid))
        _set_nr(adm, f"{td}/regions/nr_regions", len(t.regions))
        for j, (s, e) in enumerate(t.regions):
            adm.write(f"{td}/regions/{j}/start", str(s))
            adm.write(f"{td}/regions/{j}/end", str(e))
    _set_nr(adm, f"{c}/schemes/nr_schemes", len(req.schemes))
    for i, s in enumerate(req.schemes):
        sd = f"{c}/schemes/{i}"
        p = s.pattern
        for name, lo, hi in (("sz", p.min_sz_region, p.max_sz_region),
                             ("nr_accesses", p.min_nr_accesses, p.max_nr_accesses),
                             ("age", p.min_age_region, p.max_age_region)):
            adm.write(f"{sd}/access_pattern/{name}/min", str(lo))
            adm.write(f"{sd}/access_pattern/{name}/max", str(hi))
        adm.write(f"{sd}/action", s.action.value)
        q = s.quota
        adm.write(f"{sd}/quotas/ms", str(q.ms))
        adm.write(f"{sd}/quotas/bytes", str(q.sz))
        adm.write(f"{sd}/quotas/reset_interval_ms", str(q.reset_interval_ms))
        adm.write(f"{sd}/quotas/weights/sz_permil", str(q.weight_sz))
        adm.write(f"{sd}/quotas/weights/nr_accesses_permil", str(q.weight_nr_accesses))
        adm.write(f"{sd}/quotas/weights/age_permil", str(q.weight_age))
        w = s.wmarks
        adm.write(f"{sd}/watermarks/metric", w.metric.value)
        adm.write(f"{sd}/watermarks/interval_us", str(w.interval_us))
        adm.write(f"{sd}/watermarks/high", str(w.high))
        adm.write(f"{sd}/watermarks/mid", str(w.mid))
        adm.write(f"{sd}/watermarks/low", str(w.low))
        if adm.exists(f"{sd}/apply_interval_us"):
            adm.write(f"{sd}/apply_interval_us", str(s.apply_interval_us))


def _wait_state(adm: AdminDir, kd: int, want: str, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        state = adm.read(f"{K}/{kd}/state").strip()
        if state == want:
            return
        if time.monotonic() >= deadline:
            raise AdminError(f"kdamond {kd} state is {state!r}, not {want!r}, after "
                             f"{timeout_s:g} s; check the daemon's log")
        time.sleep(0.05)


def start(adm: AdminDir, req: StageRequest) -> int:
    """Stage and turn kdamond 0 on; returns its pid (as the ``pid`` file reads)."""
    states = kdamond_states(adm)
    if "on" in states:
        raise AdminError(f"kdamond {states.index('on')} is already running; stop it first "
                         f"(pydamon stop) or change it with pydamon tune")
    stage(adm, req)
    adm.write(f"{K}/0/state", "on")
    _wait_state(adm, 0, "on")
    return int(adm.read(f"{K}/0/pid").strip())


def tune(adm: AdminDir, req: StageRequest) -> None:
    states = kdamond_states(adm)
    if not states or states[0] != "on":
        raise AdminError("no kdamond is running; start one first (pydamon start)")
    stage(adm, req)
    adm.write(f"{K}/0/state", "commit")


def stop(adm: AdminDir) -> list[int]:
    """Turn every running kdamond off; returns the indices stopped."""
    stopped = []
    for i, state in enumerate(kdamond_states(adm)):
        if state == "on":
            adm.write(f"{K}/{i}/state", "off")
            _wait_state(adm, i, "off")
            stopped.append(i)
    return stopped


def _try(adm: AdminDir, rel: str, default: str = "?") -> str:
    try:
        return adm.read(rel).strip()
    except AdminError:
        return default


def status(adm: AdminDir) -> str:
    """A summary of every kdamond, refreshing scheme stats of running ones first."""
    lines = []
    n = int(adm.read(f"{K}/nr_kdamonds").strip() or 0)
    if n == 0:
        return "no kdamond (nr_kdamonds is 0); start one with 'pydamon start'\n"
    for i in range(n):
        state = _try(adm, f"{K}/{i}/state")
        kd = f"{K}/{i}"
        nr_schemes_total = 0
        nr_ctx = int(_try(adm, f"{kd}/contexts/nr_contexts", "0") or 0)
        for ci in range(nr_ctx):
            nr_schemes_total += int(_try(adm, f"{kd}/contexts/{ci}/schemes/nr_schemes", "0") or 0)
        if state == "on" and nr_schemes_total:
            try:
                adm.write(f"{kd}/state", "update_schemes_stats")
            except AdminError as e:
                lines.append(f"# (scheme stats not refreshed: {e})")
        lines.append(f"kdamond {i}: state {state}, pid {_try(adm, f'{kd}/pid')}")
        for ci in range(nr_ctx):
            c = f"{kd}/contexts/{ci}"
            iv = f"{c}/monitoring_attrs/intervals"
            lines.append(f"  context {ci}: ops {_try(adm, f'{c}/operations')}, "
                         f"sample {_try(adm, f'{iv}/sample_us')} us, "
                         f"aggr {_try(adm, f'{iv}/aggr_us')} us, "
                         f"update {_try(adm, f'{iv}/update_us')} us, regions "
                         f"[{_try(adm, f'{c}/monitoring_attrs/nr_regions/min')}, "
                         f"{_try(adm, f'{c}/monitoring_attrs/nr_regions/max')}]")
            nt = int(_try(adm, f"{c}/targets/nr_targets", "0") or 0)
            for ti in range(nt):
                td = f"{c}/targets/{ti}"
                nr = int(_try(adm, f"{td}/regions/nr_regions", "0") or 0)
                regions = " ".join(f"{_try(adm, f'{td}/regions/{j}/start')}-"
                                   f"{_try(adm, f'{td}/regions/{j}/end')}" for j in range(nr))
                lines.append(f"    target {ti}: pid {_try(adm, f'{td}/pid_target')}"
                             + (f", regions {regions}" if regions else ""))
            ns = int(_try(adm, f"{c}/schemes/nr_schemes", "0") or 0)
            for si in range(ns):
                sd = f"{c}/schemes/{si}"
                ap = f"{sd}/access_pattern"
                st = f"{sd}/stats"
                lines.append(
                    f"    scheme {si}: action {_try(adm, f'{sd}/action')}, "
                    f"sz [{_try(adm, f'{ap}/sz/min')}, {_try(adm, f'{ap}/sz/max')}], "
                    f"nr_accesses [{_try(adm, f'{ap}/nr_accesses/min')}, "
                    f"{_try(adm, f'{ap}/nr_accesses/max')}], "
                    f"age [{_try(adm, f'{ap}/age/min')}, {_try(adm, f'{ap}/age/max')}], "
                    f"quota {_try(adm, f'{sd}/quotas/ms')} ms / "
                    f"{_try(adm, f'{sd}/quotas/bytes')} B per "
                    f"{_try(adm, f'{sd}/quotas/reset_interval_ms')} ms")
                lines.append(
                    f"      stats: tried {_try(adm, f'{st}/nr_tried')} regions "
                    f"({_try(adm, f'{st}/sz_tried')} B), applied {_try(adm, f'{st}/nr_applied')}"
                    f" regions ({_try(adm, f'{st}/sz_applied')} B), quota exceeded "
                    f"{_try(adm, f'{st}/qt_exceeds')} times")
    return "\n".join(lines) + "\n"
