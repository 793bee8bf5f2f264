"""Option value parsing: times, sizes, access rates, percentages, address ranges."""

import pytest

from pydamon.cli.units import (
    UINT_MAX,
    ULONG_MAX,
    UnitError,
    format_size,
    format_time_ns,
    parse_access_rate,
    parse_addr_range,
    parse_addr_ranges,
    parse_number,
    parse_percent,
    parse_size,
    parse_time_ms,
    parse_time_ns,
    parse_time_us,
)


@pytest.mark.parametrize("text,us", [
    ("5ms", 5_000), ("100ms", 100_000), ("1s", 1_000_000), ("1.5s", 1_500_000),
    ("100 ms", 100_000), ("500us", 500), ("5000", 5_000), (5000, 5_000), ("2m", 120_000_000),
    ("1 s 500 ms", 1_500_000), ("1,000", 1_000), ("0", 0),
])
def test_time_us(text, us):
    assert parse_time_us(text) == us


def test_time_bare_unit_and_max():
    assert parse_time_ns("10", bare_unit="s") == 10_000_000_000
    assert parse_time_ms("250") == 250
    assert parse_time_ms("2s") == 2000
    assert parse_time_us("max") == ULONG_MAX


@pytest.mark.parametrize("bad", ["5 parsecs", "fast", "", "5ms5", "-3s", "1 s foo"])
def test_time_rejects(bad):
    with pytest.raises(UnitError) as e:
        parse_time_us(bad)
    assert repr(bad) in str(e.value) or "unit" in str(e.value) or "negative" in str(e.value)


@pytest.mark.parametrize("text,nbytes", [
    ("4096", 4096), ("4K", 4096), ("4KiB", 4096), ("4 KiB", 4096), ("2MiB", 2 << 20),
    ("1G", 1 << 30), ("1.5GiB", 3 << 29), ("0x1000", 4096), ("max", ULONG_MAX), ("min", 0),
    (8192, 8192), ("1,048,576", 1 << 20),
])
def test_size(text, nbytes):
    assert parse_size(text) == nbytes


@pytest.mark.parametrize("bad", ["4 parsecs", "lots", "-4K", "4QiB"])
def test_size_rejects(bad):
    with pytest.raises(UnitError):
        parse_size(bad)


def test_access_rate_percent_and_samples():
    assert parse_access_rate("0%").to_samples(20) == 0
    assert parse_access_rate("50%").to_samples(20) == 10
    assert parse_access_rate("100%").to_samples(20) == 20
    assert parse_access_rate("5").to_samples(20) == 1  # bare: percent, as damo
    assert parse_access_rate("3samples").to_samples(20) == 3
    assert parse_access_rate("max").to_samples(20) == UINT_MAX
    with pytest.raises(UnitError):
        parse_access_rate("101%")
    with pytest.raises(UnitError):
        parse_access_rate("5 hz")


def test_percent():
    assert parse_percent("12.5%") == 12.5
    assert parse_percent(7) == 7
    with pytest.raises(UnitError):
        parse_percent("150")
    with pytest.raises(UnitError):
        parse_percent("abc")


def test_addr_ranges():
    assert parse_addr_range("4096-8192") == (4096, 8192)
    assert parse_addr_range("0x1000-0x2000") == (4096, 8192)
    assert parse_addr_ranges("8192-12288 0-4096") == [(0, 4096), (8192, 12288)]
    with pytest.raises(UnitError, match="empty or reversed"):
        parse_addr_range("8192-4096")
    with pytest.raises(UnitError, match="overlap"):
        parse_addr_ranges("0-8192 4096-12288")
    with pytest.raises(UnitError):
        parse_addr_range("start-end")


def test_number():
    assert parse_number("0x10") == 16
    assert parse_number("1,000") == 1000
    assert parse_number("max") == ULONG_MAX
    with pytest.raises(UnitError):
        parse_number("ten")


def test_format():
    assert format_size(4096) == "4.000 KiB"
    assert format_size(100) == "100 B"
    assert format_size(3 << 30) == "3.000 GiB"
    assert format_time_ns(100_000_000) == "100 ms"
    assert format_time_ns(1_500_000_000) == "1.500 s"
    assert format_time_ns(0) == "0 ns"
