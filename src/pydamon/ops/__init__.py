"""Operations sets and their registry (the kernel's damon_register_ops/damon_select_ops)."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import einval
from .base import Operations

OpsFactory = Callable[[], Operations]
_registry: dict[str, OpsFactory] = {}


def register_ops(name: str, factory: OpsFactory) -> None:
    """Register an operations set; registering a name twice is EINVAL, as in the kernel."""
    if name in _registry:
        raise einval(f"operations set {name!r} is already registered")
    _registry[name] = factory


def unregister_ops(name: str) -> None:
    _registry.pop(name, None)


def available_ops() -> list[str]:
    _load_builtin()
    return list(_registry)


def make_ops(name: str) -> Operations:
    _load_builtin()
    try:
        factory = _registry[name]
    except KeyError:
        raise einval(f"operations set {name!r} is not available") from None
    return factory()


_builtin_loaded = False


def _load_builtin() -> None:
    global _builtin_loaded
    if _builtin_loaded:
        return
    _builtin_loaded = True
    from . import builtin

    builtin.register_all()


__all__ = ["Operations", "register_ops", "unregister_ops", "available_ops", "make_ops"]
