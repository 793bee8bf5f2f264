"""Invalid input raises the kernel's errno."""

import errno

import pytest

import pydamon as damon
from pydamon.core.regions import AddrRange, validate_ranges
from toy_ops import ToyOps, make_ctx


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(min_nr_regions=2),
        dict(min_nr_regions=0),
        dict(min_nr_regions=20, max_nr_regions=10),
        dict(sample_us=200_000, aggr_us=100_000),
        dict(intervals_goal=damon.IntervalsGoal(aggrs=3, min_sample_us=10, max_sample_us=5)),
        dict(intervals_goal=damon.IntervalsGoal(aggrs=3, min_sample_us=10_000, max_sample_us=20_000)),
    ],
)
def test_bad_attrs_are_einval(kwargs):
    with pytest.raises(damon.DamonError) as e:
        damon.MonitoringAttrs(**kwargs).validate()
    assert e.value.errno == errno.EINVAL


def test_good_attrs_pass():
    damon.MonitoringAttrs().validate()
    damon.MonitoringAttrs(min_nr_regions=3, max_nr_regions=3, sample_us=1, aggr_us=1).validate()


@pytest.mark.parametrize(
    "ranges",
    [
        [AddrRange(8192, 4096)],
        [AddrRange(0, 8192), AddrRange(4096, 12288)],
        [AddrRange(8192, 12288), AddrRange(0, 4096)],
    ],
)
def test_unsorted_or_overlapping_regions_are_einval(ranges):
    with pytest.raises(damon.DamonError) as e:
        validate_ranges(ranges)
    assert e.value.errno == errno.EINVAL


def test_touching_regions_are_fine():
    validate_ranges([AddrRange(0, 4096), AddrRange(4096, 8192)])


def test_unknown_action_is_einval():
    with pytest.raises(damon.DamonError) as e:
        damon.Action.parse("explode")
    assert e.value.errno == errno.EINVAL
    assert damon.Action.parse("pageout\n") is damon.Action.PAGEOUT


def test_start_rejects_invalid_context():
    ctx = make_ctx(ToyOps(), attrs=damon.MonitoringAttrs(min_nr_regions=1))
    with pytest.raises(damon.DamonError) as e:
        damon.Kdamond(ctx).start()
    assert e.value.errno == errno.EINVAL


def test_start_rejects_unsupported_action():
    class StatOnly(ToyOps):
        supported_actions = frozenset({damon.Action.STAT})

    ctx = make_ctx(StatOnly(), schemes=[damon.Scheme(action=damon.Action.PAGEOUT)])
    with pytest.raises(damon.DamonError) as e:
        damon.Kdamond(ctx).start()
    assert e.value.errno == errno.EINVAL
    assert "pageout" in str(e.value)


def test_stop_when_not_running_is_eperm():
    kd = damon.Kdamond(make_ctx(ToyOps()))
    with pytest.raises(damon.DamonError) as e:
        kd.stop()
    assert e.value.errno == errno.EPERM


def test_registering_ops_twice_is_einval():
    damon.register_ops("test-dup", ToyOps)
    try:
        with pytest.raises(damon.DamonError) as e:
            damon.register_ops("test-dup", ToyOps)
        assert e.value.errno == errno.EINVAL
    finally:
        from pydamon.ops import unregister_ops

        unregister_ops("test-dup")


def test_unknown_ops_is_einval():
    with pytest.raises(damon.DamonError) as e:
        damon.make_ops("no-such-ops")
    assert e.value.errno == errno.EINVAL
