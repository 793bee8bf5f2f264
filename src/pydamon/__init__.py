"""pydamon: Linux DAMON and DAMOS in user space.

The Python API is the counterpart of the kernel's DAMON API::

    import pydamon as damon
    from pydamon.ops.sim import SimOps, builtin_workload

    ops = SimOps()
    pid = ops.world.spawn(builtin_workload("hotcold"))
    ctx = damon.Context(ops, targets=[damon.Target(pid=pid)],
                        clock=damon.VirtualClock(), seed=1)
    kd = damon.Kdamond(ctx)
    kd.run(duration_us=10_000_000)
"""

from . import ops as _ops  # noqa: F401  registers the built-in operations sets
from .core import *  # noqa: F401,F403
from .core import __all__ as _core_all
from .errors import DamonError

__all__ = [*_core_all, "DamonError"]
__version__ = "0.1.0"
