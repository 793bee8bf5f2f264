"""damo's DAMON parameter options, and building an engine context from them.

Monitoring: ``-s/--sample``, ``-a/--aggr``, ``-u/--updr``, ``-n/--minr``,
``-m/--maxr``, ``--monitoring_intervals``, ``--monitoring_nr_regions_range``,
``--ops``, ``-r/--regions``, ``--target_pid``.

Schemes: ``--damos_action`` starts a scheme; the other ``--damos_*`` options
given after it belong to it (the i-th ``--damos_access_rate`` to the i-th
action), as in damo. ``--schemes`` takes several schemes at once as JSON
(text or a file) in damo's scheme format.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass, field

from ..core.attrs import MonitoringAttrs
from ..core.damos import (
    AccessPattern,
    Action,
    Quota,
    Scheme,
    WatermarkMetric,
    Watermarks,
)
from .units import (
    UINT_MAX,
    ULONG_MAX,
    UnitError,
    parse_access_rate,
    parse_addr_ranges,
    parse_number,
    parse_size,
    parse_time_ms,
    parse_time_us,
)

DEFAULT_QUOTA_RESET_MS = 1000


class ArgsError(ValueError):
    """A bad option value or combination; the message says how to fix it."""


def add_monitoring_args(p: argparse.ArgumentParser, *, default_update: str = "1s") -> None:
    g = p.add_argument_group("monitoring parameters (as damo's)")
    g.add_argument("-s", "--sample", metavar="<time>", default="5ms",
                   help="sampling interval (5ms; bare numbers are microseconds)")
    g.add_argument("-a", "--aggr", metavar="<time>", default="100ms",
                   help="aggregation interval (100ms)")
    g.add_argument("-u", "--updr", metavar="<time>", default=default_update,
                   help=f"operations update interval ({default_update})")
    g.add_argument("-n", "--minr", metavar="<#>", default="10", help="minimum number of regions")
    g.add_argument("-m", "--maxr", metavar="<#>", default="1000", help="maximum number of regions")
    g.add_argument("--monitoring_intervals", nargs=3, metavar=("<sample>", "<aggr>", "<update>"),
                   help="the three intervals at once")
    g.add_argument("--monitoring_nr_regions_range", nargs=2, metavar=("<min>", "<max>"),
                   help="min/max number of regions at once")
    g.add_argument("--ops", choices=["vaddr", "fvaddr", "paddr", "sim"],
                   help="operations set (default: vaddr for a process, paddr for memory, "
                        "sim for --sim)")
    g.add_argument("-r", "--regions", metavar='"<start>-<end> ..."',
                   help="monitoring target address ranges")
    g.add_argument("--target_pid", metavar="<pid>", type=int, help="pid of the process to monitor")


def add_damos_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("DAMOS scheme parameters (as damo's; repeat per scheme)")
    g.add_argument("--damos_action", action="append", nargs="+",
                   metavar=("<action>", "<target_nid>"),
                   help="action of a new scheme: " + ", ".join(a.value for a in Action)
                        + "; migrate_hot and migrate_cold take the destination node too")
    g.add_argument("--damos_access_rate", action="append", nargs=2, metavar=("<min>", "<max>"),
                   help="access rate range, percent (0%% 5%%) or samples (3samples)")
    g.add_argument("--damos_sz_region", action="append", nargs=2, metavar=("<min>", "<max>"),
                   help="region size range (4K max)")
    g.add_argument("--damos_age", action="append", nargs=2, metavar=("<min>", "<max>"),
                   help="age range (1s max; bare numbers are microseconds)")
    g.add_argument("--damos_apply_interval", action="append", metavar="<time>",
                   help="apply interval (0: the aggregation interval)")
    g.add_argument("--damos_quotas", action="append", nargs="+", metavar="<quota>",
                   help="<time ms> [<size> [<reset interval ms> [<sz> <access> <age> weights]]]")
    g.add_argument("--damos_quota_time", action="append", metavar="<ms>", help="time quota")
    g.add_argument("--damos_quota_space", action="append", metavar="<bytes>", help="size quota")
    g.add_argument("--damos_quota_interval", action="append", metavar="<ms>",
                   help="quota reset interval (default 1s when a quota is set)")
    g.add_argument("--damos_quota_weights", "--damos_weights", action="append", nargs=3,
                   metavar=("<sz>", "<access>", "<age>"),
                   help="prioritization weights (permil)")
    g.add_argument("--damos_wmarks", action="append", nargs=5,
                   metavar=("<metric>", "<interval>", "<high>", "<mid>", "<low>"),
                   help="watermarks: none|free_mem_rate, check interval (us), marks (permil)")
    g.add_argument("--schemes", metavar="<json or file>",
                   help="several schemes as JSON (a list, damo's format); text or a file path")


# -- monitoring attributes ----------------------------------------------------------------
def attrs_from_args(args: argparse.Namespace) -> MonitoringAttrs:
    try:
        sample, aggr, update = args.sample, args.aggr, args.updr
        if getattr(args, "monitoring_intervals", None):
            sample, aggr, update = args.monitoring_intervals
        minr, maxr = args.minr, args.maxr
        if getattr(args, "monitoring_nr_regions_range", None):
            minr, maxr = args.monitoring_nr_regions_range
        attrs = MonitoringAttrs(
            sample_us=parse_time_us(sample), aggr_us=parse_time_us(aggr),
            update_us=parse_time_us(update), min_nr_regions=parse_number(minr),
            max_nr_regions=parse_number(maxr))
    except UnitError as e:
        raise ArgsError(str(e)) from None
    if attrs.sample_us <= 0:
        raise ArgsError("the sampling interval must be positive (e.g. -s 5ms)")
    if attrs.sample_us > attrs.aggr_us:
        raise ArgsError(f"sampling interval ({sample}) is longer than the aggregation interval "
                        f"({aggr}); make -a at least -s")
    if attrs.min_nr_regions < 3:
        raise ArgsError(f"--minr {minr} is below 3, DAMON's minimum; use -n 3 or more")
    if attrs.min_nr_regions > attrs.max_nr_regions:
        raise ArgsError(f"--minr {minr} is larger than --maxr {maxr}; make -m at least -n")
    return attrs


def regions_from_args(args: argparse.Namespace) -> list[tuple[int, int]]:
    if not getattr(args, "regions", None):
        return []
    try:
        return parse_addr_ranges(args.regions)
    except UnitError as e:
        raise ArgsError(f"-r/--regions: {e}") from None


# -- schemes --------------------------------------------------------------------------------
@dataclass
class SchemeSpec:
    """A scheme as the user gave it: units resolved against the attributes later."""

    action: Action
    sz: tuple[int, int] = (0, ULONG_MAX)
    access: tuple[object, object] = ("0%", "100%")
    age_us: tuple[int, int] | None = None
    age_aggrs: tuple[int, int] | None = None
    apply_interval_us: int = 0
    quota_ms: int = 0
    quota_sz: int = 0
    quota_reset_ms: int | None = None
    weights: tuple[int, int, int] = (0, 0, 0)
    wmarks: Watermarks = field(default_factory=Watermarks)
    #: the NUMA node migrate_hot/migrate_cold move pages to (-1: none given)
    target_nid: int = -1

    def build(self, attrs: MonitoringAttrs) -> Scheme:
        try:
            lo = parse_access_rate(self.access[0]).to_samples(attrs.max_nr_accesses)
            hi = parse_access_rate(self.access[1]).to_samples(attrs.max_nr_accesses)
        except UnitError as e:
            raise ArgsError(f"--damos_access_rate: {e}") from None
        if lo > hi:
            raise ArgsError(f"--damos_access_rate {self.access[0]} {self.access[1]}: min > max")
        if self.age_aggrs is not None:
            age_lo, age_hi = self.age_aggrs
        elif self.age_us is not None:
            aggr = max(attrs.aggr_us, 1)
            age_lo = self.age_us[0] // aggr
            age_hi = UINT_MAX if self.age_us[1] >= ULONG_MAX else self.age_us[1] // aggr
        else:
            age_lo, age_hi = 0, UINT_MAX
        if age_lo > age_hi:
            raise ArgsError("--damos_age: min is larger than max")
        if self.sz[0] > self.sz[1]:
            raise ArgsError("--damos_sz_region: min is larger than max")
        reset = self.quota_reset_ms
        if reset is None:
            reset = DEFAULT_QUOTA_RESET_MS if (self.quota_ms or self.quota_sz) else 0
        return Scheme(
            pattern=AccessPattern(self.sz[0], min(self.sz[1], ULONG_MAX), lo, min(hi, UINT_MAX),
                                  age_lo, min(age_hi, UINT_MAX)),
            action=self.action,
            apply_interval_us=self.apply_interval_us,
            quota=Quota(ms=self.quota_ms, sz=self.quota_sz, reset_interval_ms=reset,
                        weight_sz=self.weights[0], weight_nr_accesses=self.weights[1],
                        weight_age=self.weights[2]),
            wmarks=self.wmarks,
            target_nid=self.target_nid,
        )


def _action(text: str) -> Action:
    try:
        return Action(text.strip())
    except ValueError:
        raise ArgsError(f"unknown DAMOS action {text!r}; use one of: "
                        + ", ".join(a.value for a in Action)) from None


MIGRATE_ACTIONS = (Action.MIGRATE_HOT, Action.MIGRATE_COLD)


def _target_nid(action: Action, rest: list[str]) -> int:
    """The destination node given after a migrate action (as damo takes it)."""
    if action not in MIGRATE_ACTIONS:
        if rest:
            raise ArgsError(f"--damos_action {action.value} takes no more arguments "
                            f"(got {' '.join(rest)})")
        return -1
    if len(rest) != 1:
        raise ArgsError(f"--damos_action {action.value} needs one numeric target node "
                        f"(e.g. --damos_action {action.value} 1)")
    try:
        return int(rest[0])
    except ValueError:
        raise ArgsError(f"--damos_action {action.value}: target node {rest[0]!r} is not "
                        f"a number") from None


def _pick(values: list | None, i: int, name: str, nr_schemes: int):
    if not values:
        return None
    if len(values) > nr_schemes:
        raise ArgsError(f"{name} given {len(values)} times but only {nr_schemes} "
                        f"--damos_action; give one --damos_action per scheme")
    return values[i] if i < len(values) else None


def scheme_specs_from_args(args: argparse.Namespace) -> list[SchemeSpec]:
    specs: list[SchemeSpec] = []
    actions = getattr(args, "damos_action", None) or []
    others = [n for n in ("damos_access_rate", "damos_sz_region", "damos_age", "damos_quotas",
                          "damos_quota_time", "damos_quota_space", "damos_quota_interval",
                          "damos_quota_weights", "damos_wmarks", "damos_apply_interval")
              if getattr(args, n, None)]
    if others and not actions:
        raise ArgsError(f"--{others[0]} needs a --damos_action to say what the scheme does "
                        f"(e.g. --damos_action pageout)")
    n = len(actions)
    try:
        for i, act in enumerate(actions):
            spec = SchemeSpec(action=_action(act[0]))
            spec.target_nid = _target_nid(spec.action, act[1:])
            if (v := _pick(args.damos_access_rate, i, "--damos_access_rate", n)) is not None:
                spec.access = (v[0], v[1])
            if (v := _pick(args.damos_sz_region, i, "--damos_sz_region", n)) is not None:
                spec.sz = (parse_size(v[0]), parse_size(v[1]))
            if (v := _pick(args.damos_age, i, "--damos_age", n)) is not None:
                spec.age_us = (parse_time_us(v[0]), parse_time_us(v[1]))
            if (v := _pick(args.damos_apply_interval, i, "--damos_apply_interval", n)) is not None:
                spec.apply_interval_us = parse_time_us(v)
            if (v := _pick(args.damos_quotas, i, "--damos_quotas", n)) is not None:
                if len(v) > 6:
                    raise ArgsError("--damos_quotas takes at most 6 values: <time ms> <size> "
                                    "<reset interval ms> <sz weight> <access weight> <age weight>")
                spec.quota_ms = parse_time_ms(v[0])
                if len(v) > 1:
                    spec.quota_sz = parse_size(v[1])
                if len(v) > 2:
                    spec.quota_reset_ms = parse_time_ms(v[2])
                if len(v) > 3:
                    w = [parse_number(x) for x in v[3:]] + [0, 0, 0]
                    spec.weights = (w[0], w[1], w[2])
            if (v := _pick(args.damos_quota_time, i, "--damos_quota_time", n)) is not None:
                spec.quota_ms = parse_time_ms(v)
            if (v := _pick(args.damos_quota_space, i, "--damos_quota_space", n)) is not None:
                spec.quota_sz = parse_size(v)
            if (v := _pick(args.damos_quota_interval, i, "--damos_quota_interval", n)) is not None:
                spec.quota_reset_ms = parse_time_ms(v)
            if (v := _pick(args.damos_quota_weights, i, "--damos_quota_weights", n)) is not None:
                spec.weights = (parse_number(v[0]), parse_number(v[1]), parse_number(v[2]))
            if (v := _pick(args.damos_wmarks, i, "--damos_wmarks", n)) is not None:
                spec.wmarks = _wmarks(v)
            specs.append(spec)
    except UnitError as e:
        raise ArgsError(str(e)) from None
    if getattr(args, "schemes", None):
        specs.extend(scheme_specs_from_json(args.schemes))
    return specs


def _wmarks(v: list[str]) -> Watermarks:
    try:
        metric = WatermarkMetric(v[0])
    except ValueError:
        raise ArgsError(f"--damos_wmarks: unknown metric {v[0]!r}; use none or free_mem_rate") from None
    high, mid, low = (parse_number(x) for x in v[2:5])
    if not high >= mid >= low:
        raise ArgsError(f"--damos_wmarks: marks must be high >= mid >= low, got {high} {mid} {low}")
    return Watermarks(metric, parse_time_us(v[1]), high, mid, low)


def scheme_specs_from_json(text: str) -> list[SchemeSpec]:
    """Schemes in damo's JSON form: ``[{"action": ..., "access_pattern": {...}, ...}]``."""
    source = "--schemes"
    if os.path.isfile(text):
        source = text
        with open(text) as f:
            text = f.read()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ArgsError(f"{source}: not valid JSON ({e}); give a list of schemes, e.g. "
                        '\'[{"action": "pageout", "access_pattern": {"nr_accesses": '
                        '{"min": "0%", "max": "0%"}}}]\'') from None
    if isinstance(data, dict):
        data = data.get("schemes", [data])
    if not isinstance(data, list):
        raise ArgsError(f"{source}: expected a list of schemes")
    specs = []
    try:
        for kv in data:
            spec = SchemeSpec(action=_action(kv.get("action", "stat")))
            if kv.get("target_nid") is not None:
                spec.target_nid = int(kv["target_nid"])
            ap = kv.get("access_pattern", {})
            if "sz_bytes" in ap:
                spec.sz = (parse_size(ap["sz_bytes"]["min"]), parse_size(ap["sz_bytes"]["max"]))
            if "nr_accesses" in ap:
                spec.access = (str(ap["nr_accesses"]["min"]).replace(" ", ""),
                               str(ap["nr_accesses"]["max"]).replace(" ", ""))
            if "age" in ap:
                lo, hi = str(ap["age"]["min"]), str(ap["age"]["max"])
                if "aggr" in lo or "aggr" in hi:
                    spec.age_aggrs = (parse_number(lo.split()[0]), parse_number(hi.split()[0]))
                else:
                    spec.age_us = (parse_time_us(lo), parse_time_us(hi))
            if kv.get("apply_interval_us") is not None:
                spec.apply_interval_us = parse_time_us(kv["apply_interval_us"])
            q = kv.get("quotas")
            if q:
                spec.quota_ms = parse_time_ms(q.get("time_ms", 0))
                spec.quota_sz = parse_size(q.get("sz_bytes", 0))
                if "reset_interval_ms" in q:
                    spec.quota_reset_ms = parse_time_ms(q["reset_interval_ms"])
                w = q.get("weights", {})
                spec.weights = tuple(parse_number(str(w.get(k, 0)).split()[0])  # type: ignore[assignment]
                                     for k in ("sz_permil", "nr_accesses_permil", "age_permil"))
            wm = kv.get("watermarks")
            if wm:
                spec.wmarks = _wmarks([wm.get("metric", "none"), str(wm.get("interval_us", 0)),
                                       *(str(wm.get(k, 0)).split()[0] for k in
                                         ("high_permil", "mid_permil", "low_permil"))])
            specs.append(spec)
    except (KeyError, TypeError, AttributeError) as e:
        raise ArgsError(f"{source}: bad scheme ({e}); see 'pydamon record --help'") from None
    except UnitError as e:
        raise ArgsError(f"{source}: {e}") from None
    return specs


def schemes_from_args(args: argparse.Namespace, attrs: MonitoringAttrs) -> list[Scheme]:
    return [s.build(attrs) for s in scheme_specs_from_args(args)]
