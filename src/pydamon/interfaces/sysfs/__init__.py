"""The DAMON sysfs interface (``/sys/kernel/mm/damon/admin``) as a node tree."""

from .model import (
    DIFFERENCES_FROM_KERNEL,
    MAX_CHILDREN,
    STATE_COMMANDS,
    SYSFS_OPS,
    SysfsTree,
    build_sysfs_tree,
    default_ops_factory,
)

__all__ = [
    "DIFFERENCES_FROM_KERNEL", "MAX_CHILDREN", "STATE_COMMANDS", "SYSFS_OPS", "SysfsTree",
    "build_sysfs_tree", "default_ops_factory",
]
