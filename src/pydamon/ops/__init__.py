"""The operations sets that ship with pydamon, registered on import.

The interface and the registry live with the engine
(:mod:`pydamon.core.operations`, as the kernel's core.c keeps
damon_register_ops()); this package holds the implementations: ``sim``,
and ``vaddr``, ``fvaddr``, ``paddr`` on Linux.
"""

from __future__ import annotations

from ..core.operations import (
    Operations,
    OpsFactory,
    available_ops,
    make_ops,
    register_ops,
    unregister_ops,
)
from .builtin import register_all

register_all()

__all__ = ["Operations", "OpsFactory", "register_ops", "unregister_ops", "available_ops",
           "make_ops"]
