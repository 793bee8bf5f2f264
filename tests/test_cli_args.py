"""damo's DAMON options turned into attributes and schemes, and their errors."""

import pytest

from pydamon.cli.damon_args import (
    ArgsError,
    attrs_from_args,
    regions_from_args,
    scheme_specs_from_json,
    schemes_from_args,
)
from pydamon.cli.main import build_parser, main
from pydamon.core.attrs import UINT_MAX, ULONG_MAX
from pydamon.core.damos import Action, WatermarkMetric


def parse(*argv):
    return build_parser().parse_args(["record", *argv])


def test_default_attrs_are_damos():
    a = attrs_from_args(parse("--sim", "hotcold"))
    assert (a.sample_us, a.aggr_us, a.update_us) == (5_000, 100_000, 1_000_000)
    assert (a.min_nr_regions, a.max_nr_regions) == (10, 1000)


def test_intervals_with_units():
    a = attrs_from_args(parse("-s", "10ms", "-a", "1s", "-u", "2s", "-n", "20", "-m", "500"))
    assert (a.sample_us, a.aggr_us, a.update_us) == (10_000, 1_000_000, 2_000_000)
    assert (a.min_nr_regions, a.max_nr_regions) == (20, 500)
    a = attrs_from_args(parse("--monitoring_intervals", "1ms", "20ms", "1s",
                              "--monitoring_nr_regions_range", "5", "50"))
    assert (a.sample_us, a.aggr_us, a.min_nr_regions, a.max_nr_regions) == (1000, 20_000, 5, 50)


@pytest.mark.parametrize("argv,msg", [
    (("-s", "200ms", "-a", "100ms"), "longer than the aggregation"),
    (("-n", "2"), "below 3"),
    (("-n", "100", "-m", "50"), "larger than --maxr"),
    (("-s", "fast"), "not a time"),
])
def test_bad_attrs(argv, msg):
    with pytest.raises(ArgsError, match=msg):
        attrs_from_args(parse(*argv))


def test_regions():
    assert regions_from_args(parse("-r", "4096-8192 0x10000-0x20000")) == [
        (4096, 8192), (65536, 131072)]
    with pytest.raises(ArgsError, match="regions"):
        regions_from_args(parse("-r", "8192-4096"))


def test_scheme_units_resolve_against_attrs():
    args = parse("-s", "5ms", "-a", "100ms", "--damos_action", "pageout",
                 "--damos_access_rate", "0%", "10%", "--damos_sz_region", "4K", "max",
                 "--damos_age", "2s", "max", "--damos_quotas", "10ms", "64MiB", "1s",
                 "--damos_quota_weights", "0", "3", "7", "--damos_apply_interval", "1s",
                 "--damos_wmarks", "free_mem_rate", "5s", "800", "500", "100")
    [s] = schemes_from_args(args, attrs_from_args(args))
    assert s.action is Action.PAGEOUT
    p = s.pattern
    assert (p.min_sz_region, p.max_sz_region) == (4096, ULONG_MAX)
    assert (p.min_nr_accesses, p.max_nr_accesses) == (0, 2)  # 10% of 20 samples
    assert (p.min_age_region, p.max_age_region) == (20, UINT_MAX)  # 2 s / 100 ms
    assert (s.quota.ms, s.quota.sz, s.quota.reset_interval_ms) == (10, 64 << 20, 1000)
    assert (s.quota.weight_sz, s.quota.weight_nr_accesses, s.quota.weight_age) == (0, 3, 7)
    assert s.apply_interval_us == 1_000_000
    assert s.wmarks.metric is WatermarkMetric.FREE_MEM_RATE
    assert (s.wmarks.interval_us, s.wmarks.high, s.wmarks.mid, s.wmarks.low) == (
        5_000_000, 800, 500, 100)


def test_several_schemes_pair_options_in_order():
    args = parse("--damos_action", "pageout", "--damos_access_rate", "0%", "0%",
                 "--damos_action", "stat", "--damos_access_rate", "50%", "100%",
                 "--damos_weights", "1", "2", "3")
    s0, s1 = schemes_from_args(args, attrs_from_args(args))
    assert (s0.action, s0.pattern.max_nr_accesses) == (Action.PAGEOUT, 0)
    assert (s1.action, s1.pattern.min_nr_accesses, s1.pattern.max_nr_accesses) == (
        Action.STAT, 10, 20)
    assert s0.quota.weight_sz == 1 and s1.quota.weight_sz == 0
    # a quota without interval gets a 1 s reset interval
    args = parse("--damos_action", "pageout", "--damos_quota_space", "1M")
    [s] = schemes_from_args(args, attrs_from_args(args))
    assert (s.quota.sz, s.quota.reset_interval_ms) == (1 << 20, 1000)


def test_migrate_actions_take_their_target_node_as_damo_does():
    args = parse("--damos_action", "migrate_cold", "1", "--damos_access_rate", "0%", "0%",
                 "--damos_action", "stat")
    s0, s1 = schemes_from_args(args, attrs_from_args(args))
    assert (s0.action, s0.target_nid) == (Action.MIGRATE_COLD, 1)
    assert (s1.action, s1.target_nid) == (Action.STAT, -1)
    [s] = schemes_from_args(parse("--schemes", '[{"action": "migrate_hot", "target_nid": 0}]'),
                            attrs_from_args(parse()))
    assert (s.action, s.target_nid) == (Action.MIGRATE_HOT, 0)


@pytest.mark.parametrize("argv,msg", [
    (("--damos_action", "migrate_cold"), "needs one numeric target node"),
    (("--damos_action", "migrate_hot", "x"), "is not a number"),
    (("--damos_action", "pageout", "1"), "takes no more arguments"),
    (("--damos_access_rate", "0%", "5%"), "needs a --damos_action"),
    (("--damos_action", "explode"), "unknown DAMOS action"),
    (("--damos_action", "stat", "--damos_access_rate", "50%", "10%"), "min > max"),
    (("--damos_action", "stat", "--damos_age", "5s", "1s"), "min is larger"),
    (("--damos_action", "stat", "--damos_quotas", *["1"] * 7), "at most 6"),
    (("--damos_action", "stat", "--damos_wmarks", "free_mem_rate", "1s", "100", "500", "800"),
     "high >= mid >= low"),
    (("--damos_action", "stat", "--damos_access_rate", "0%", "1%",
      "--damos_access_rate", "0%", "1%"), "only 1 --damos_action"),
])
def test_bad_schemes(argv, msg):
    args = parse(*argv)
    with pytest.raises(ArgsError, match=msg):
        schemes_from_args(args, attrs_from_args(args))


def test_json_schemes(tmp_path):
    text = ('[{"action": "pageout", "access_pattern": {"sz_bytes": {"min": "4 KiB", "max": "max"},'
            ' "nr_accesses": {"min": "0 %", "max": "0 %"}, "age": {"min": "1 s", "max": "max"}},'
            ' "quotas": {"time_ms": 0, "sz_bytes": "1 GiB", "reset_interval_ms": "1 s",'
            ' "weights": {"sz_permil": "0 %", "nr_accesses_permil": 1, "age_permil": 2}}},'
            ' {"action": "stat"}]')
    specs = scheme_specs_from_json(text)
    assert [s.action for s in specs] == [Action.PAGEOUT, Action.STAT]
    f = tmp_path / "schemes.json"
    f.write_text(text)
    args = parse("--schemes", str(f))
    s0, s1 = schemes_from_args(args, attrs_from_args(args))
    assert s0.pattern.min_sz_region == 4096 and s0.pattern.max_nr_accesses == 0
    assert s0.pattern.min_age_region == 10 and s0.quota.sz == 1 << 30
    assert s0.quota.reset_interval_ms == 1000 and s0.quota.weight_age == 2
    assert s1.pattern.max_nr_accesses == 20
    with pytest.raises(ArgsError, match="not valid JSON"):
        scheme_specs_from_json("[{")


def test_usage_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        main(["record", "--bogus"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unrecognized arguments: --bogus" in err
    assert main(["record", "--sim", "hotcold", "-s", "1s", "-a", "10ms"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "longer than the aggregation interval" in err[0]
    assert "Traceback" not in err[0]
