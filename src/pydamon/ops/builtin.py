"""Registration of the operations sets that ship with pydamon.

``sim`` always; ``vaddr``, ``fvaddr`` and ``paddr`` on Linux (they check
their kernel requirements when a kdamond starts, not at registration, so
that ``avail_operations`` lists them and errors are explicit). Factories
import their module on first use, so importing pydamon stays cheap.
"""

from __future__ import annotations

import importlib

from ..core.operations import Operations, register_ops

_BUILTIN = (
    ("sim", "pydamon.ops.sim", "SimOps"),
    ("vaddr", "pydamon.ops.vaddr", "VaddrOps"),
    ("fvaddr", "pydamon.ops.vaddr", "FvaddrOps"),
    ("paddr", "pydamon.ops.paddr", "PaddrOps"),
)


def _lazy(module: str, cls: str):
    def factory() -> Operations:
        return getattr(importlib.import_module(module), cls)()

    return factory


def register_all() -> None:
    for name, module, cls in _BUILTIN:
        register_ops(name, _lazy(module, cls))
