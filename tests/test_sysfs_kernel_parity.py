"""The sysfs model answers a sequence of writes as the real kernel did.

The expected results were observed by running the same sequence on the
guest's kernel (Debian 6.12.95 with DAMON, ../shared/guest) with
``/sys/kernel/mm/damon/admin`` as the root. One entry differs on purpose:
``update_tuned_intervals`` arrived in 6.15 (6.12 answers EINVAL); the model
follows the newer kernels damo expects.
"""

from __future__ import annotations

import errno

import pytest

from pydamon.errors import DamonError
from pydamon.interfaces.sysfs import build_sysfs_tree
from sysfs_fakeops import fake_factory

K = "kdamonds/0"
C = K + "/contexts/0"
S = C + "/schemes/0"
SEQUENCE = [
 ("kdamonds/nr_kdamonds", "1"), ("kdamonds/nr_kdamonds", "-1"), ("kdamonds/nr_kdamonds", "abc"),
 ("kdamonds/nr_kdamonds", "99999999999"), ("kdamonds/nr_kdamonds", "1"),
 (K + "/state", "bogus"), (K + "/state", "off"), (K + "/state", "update_schemes_stats"),
 (K + "/state", "commit"), (K + "/state", "on"),
 (K + "/contexts/nr_contexts", "2"), (K + "/contexts/nr_contexts", "1"),
 (K + "/pid", "1"),
 (C + "/operations", "paddr\0junk"), (C + "/operations", "foo"), (C + "/operations", ""),
 (C + "/monitoring_attrs/intervals/sample_us", "18446744073709551616"),
 (C + "/monitoring_attrs/intervals/sample_us", "18446744073709551615"),
 (C + "/monitoring_attrs/intervals/sample_us", "0x1388"),
 (C + "/monitoring_attrs/intervals/sample_us", "-0"),
 (C + "/monitoring_attrs/intervals/sample_us", "010"),
 (C + "/monitoring_attrs/intervals/sample_us", "5000\n"),
 (C + "/monitoring_attrs/nr_regions/min", "08"),
 (C + "/targets/nr_targets", "1"), (C + "/targets/0/pid_target", "99999999999999999999"),
 (C + "/targets/0/pid_target", "x"), (C + "/targets/0/pid_target", "-0"),
 (C + "/schemes/nr_schemes", "1"), (S + "/action", "pageout\n"), (S + "/action", "page"),
 (S + "/target_nid", "-0"), (S + "/target_nid", "2147483648"),
 (S + "/quotas/ms", "99999999999999999999"), (S + "/quotas/weights/sz_permil", "4294967296"),
 (S + "/quotas/goals/nr_goals", "1"), (S + "/quotas/goals/0/target_metric", "user_input"),
 (S + "/filters/nr_filters", "1"), (S + "/filters/0/type", "addr"), (S + "/filters/0/matching", "maybe"),
 (S + "/filters/0/matching", "yes"), (S + "/filters/0/addr_start", "8192"),
 (S + "/stats/nr_tried", "1"),
 (S + "/action", "stat"),
 (K + "/state", "on"),  # addr filter end < start
 (S + "/filters/nr_filters", "0"),
 (C + "/monitoring_attrs/nr_regions/min", "2"), (K + "/state", "on"),
 (C + "/monitoring_attrs/nr_regions/min", "10"),
 (C + "/targets/nr_targets", "2"), (K + "/state", "on"), (C + "/targets/nr_targets", "1"),
 (K + "/state", "on"), (K + "/state", "on"), ("kdamonds/nr_kdamonds", "1"),
 (C + "/schemes/nr_schemes", "1"), (K + "/state", "update_schemes_stats"),
 (K + "/state", "update_schemes_tried_bytes"), (K + "/state", "clear_schemes_tried_regions"),
 (K + "/state", "update_schemes_effective_quotas"), (K + "/state", "commit_schemes_quota_goals"),
 (K + "/state", "update_tuned_intervals"),
 (K + "/state", "off"), (K + "/state", "off"), (K + "/state", "update_schemes_stats"),
 (K + "/contexts/nr_contexts", "0"), (K + "/state", "on"),
 ("kdamonds/nr_kdamonds", "0"),
]

# what 6.12.95 answered to each write (EACCES of the read-only file at open)
KERNEL_6_12 = [
    'OK', 'EINVAL', 'EINVAL', 'ERANGE', 'OK', 'EINVAL', 'EINVAL', 'EINVAL', 'EINVAL', 'EINVAL',
    'EINVAL', 'OK', 'EACCES', 'OK', 'EINVAL', 'OK', 'ERANGE', 'OK', 'OK', 'EINVAL', 'OK', 'OK',
    'EINVAL', 'OK', 'EINVAL', 'EINVAL', 'OK', 'OK', 'OK', 'EINVAL', 'OK', 'ERANGE', 'EINVAL',
    'ERANGE', 'OK', 'OK', 'OK', 'OK', 'EINVAL', 'OK', 'OK', 'EACCES', 'OK', 'ENOMEM', 'OK',
    'OK', 'EINVAL', 'OK', 'OK', 'EINVAL', 'OK', 'OK', 'EBUSY', 'EBUSY', 'OK', 'OK', 'OK', 'OK',
    'OK', 'OK', 'EINVAL', 'OK', 'EPERM', 'EINVAL', 'OK', 'EINVAL', 'OK',
]
#: where the model is newer than 6.12 on purpose
NEWER_THAN_6_12 = {60: "OK"}


def test_write_sequence_matches_the_kernel():
    tree = build_sysfs_tree(fake_factory, ["vaddr", "fvaddr", "paddr"])
    got = []
    try:
        for path, value in SEQUENCE:
            try:
                tree.write(path, value)
                got.append("OK")
            except DamonError as e:
                got.append(errno.errorcode[e.errno])
    finally:
        tree.shutdown()
    expected = [NEWER_THAN_6_12.get(i, r) for i, r in enumerate(KERNEL_6_12)]
    mismatches = [(i, SEQUENCE[i], want, have)
                  for i, (want, have) in enumerate(zip(expected, got, strict=True)) if want != have]
    assert not mismatches, mismatches


@pytest.mark.parametrize("i", sorted(NEWER_THAN_6_12))
def test_deliberate_differences_are_documented(i):
    assert SEQUENCE[i] == (K + "/state", "update_tuned_intervals")
