"""The operations-set interface (defined with the engine, in :mod:`pydamon.core.operations`)."""

from ..core.operations import Operations

__all__ = ["Operations"]
