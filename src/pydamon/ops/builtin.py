"""Registration of the operations sets that ship with pydamon.

``sim`` always; ``vaddr``, ``fvaddr`` and ``paddr`` on Linux (they check
their kernel requirements when a kdamond starts, not at registration, so
that ``avail_operations`` lists them and errors are explicit).
"""

from __future__ import annotations

import importlib

_BUILTIN = (
    ("sim", "pydamon.ops.sim", "SimOps"),
    ("vaddr", "pydamon.ops.vaddr", "VaddrOps"),
    ("fvaddr", "pydamon.ops.vaddr", "FvaddrOps"),
    ("paddr", "pydamon.ops.paddr", "PaddrOps"),
)


def register_all() -> None:
    from . import register_ops

    for name, module, cls in _BUILTIN:
        try:
            factory = getattr(importlib.import_module(module), cls)
        except (ImportError, AttributeError):
            continue
        register_ops(name, factory)
