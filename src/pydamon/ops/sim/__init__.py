"""The simulated operations set (``sim``): synthetic targets with exact ground truth.

A :class:`SimWorld` holds simulated processes (each running a
:class:`Workload`) and a simulated physical memory. :class:`SimOps` monitors
them like the kernel's operations sets would (``mode`` ``sim``/``vaddr``,
``fvaddr`` or ``paddr``) and applies every DAMOS action with a visible
effect: a paged-out range reads as paged out until accessed again, ``stat``
only counts. Cost does not depend on the simulated size: memory state is
interval sets and access rates are a few constant segments, so a 1 TiB
target costs what a 1 GiB one does at equal region counts.

Example::

    from pydamon.core import Context, Kdamond, Target, VirtualClock
    from pydamon.ops.sim import SimOps, SimWorld, builtin_workload

    world = SimWorld(seed=0)
    pid = world.spawn(builtin_workload("hotcold"))
    ctx = Context(SimOps(world), targets=[Target(pid=pid)], clock=VirtualClock(), seed=0)
    Kdamond(ctx).run(duration_us=10_000_000)
    world.process(pid).hot_ranges(ctx.clock.now_ns())   # the truth to compare with

Built-in workloads (:func:`list_builtin_workloads`): ``hotcold``, ``huge``,
``moving``, ``phases``, ``zipf``. Anything else is a small JSON file loaded
with :func:`load_workload` (or :func:`resolve_workload`, which takes a
built-in name or a path).

Workload file format
--------------------
A JSON object::

    {
      "name": "mywork",                       # optional, default: the file name
      "description": "...",                   # optional
      "layout": [                             # mappings, sorted, disjoint, page-aligned
        {"name": "text", "start": "0x400000", "size": "2MiB", "kind": "file"},
        {"name": "heap", "gap": "16MiB", "size": "64MiB"},
        {"name": "anon", "start": "0x7f0000000000", "size": "1GiB"},
        {"name": "stack", "start": "0x7ffffe000000", "size": "8MiB"}
      ],
      "patterns": [ ... ]                     # or "phases" (not both)
      "phases": [ {"duration_s": 10, "patterns": [ ... ]}, ... ],
      "repeat": true,                         # phases cycle (default) or the last one stays
      "populated": "all"                      # or a list of {mapping, offset, size}:
                                              # memory resident at start (default: all mapped)
    }

Sizes are integers, hex strings (``"0x1000"``) or strings with a binary
unit (``"4KiB"``, ``"64MiB"``, ``"1GiB"``, ``"1TiB"``; ``K``/``KB`` mean
KiB too). A mapping has a ``start`` address, or a ``gap`` after the previous
mapping's end (default 0); ``kind`` is ``anon`` (default) or ``file`` (the
``anon`` DAMOS filter uses it). For the vaddr "three regions" to leave the
unmapped holes out, a layout needs at least two big gaps (heap to mmap area,
mmap area to stack), as the built-ins have.

Patterns say how often each page is accessed, in accesses per second per page
(``"every_sample"``: accessed in every sampling interval; ``"never"``: 0).
Where patterns overlap their rates add up; unlisted memory is never accessed.
Each pattern names a ``mapping`` and optionally an ``offset`` and ``size``
inside it (default: the whole mapping); all page-aligned:

- ``{"type": "range", "mapping": ..., "offset": ..., "size": ..., "rate": R}``:
  a fixed hot (or cold) range.
- ``{"type": "moving", "mapping": ..., "window": "64MiB", "speed": "32MiB",
  "rate": R, "start_offset": 0}``: a window of ``window`` bytes moving
  ``speed`` bytes per second through the range, wrapping at its end.
- ``{"type": "zipf", "mapping": ..., "buckets": 64, "exponent": 1.0,
  "max_rate": 1000, "shuffle_seed": 7}``: the range cut into ``buckets`` equal
  slices; the k-th most popular (k = 1, 2, ...) has rate ``max_rate / k**exponent``.
  Slices are ranked by address, or in a random order fixed by ``shuffle_seed``.

Ground truth
------------
At virtual time ``t_ns`` (the monitoring clock's time):
``proc.access_rate(addrs, t_ns)``, ``proc.hot_ranges(t_ns, min_rate=0.0)``
(ranges with rate strictly above ``min_rate``) and ``proc.rate_map(t_ns)``
(the constant-rate segments) are exact. A sampled page is reported accessed
with probability ``1 - exp(-rate * sampling_interval)``, drawn from the
process's generator seeded by ``SimWorld(seed=...)``, so runs repeat exactly.
``proc.paged_out_bytes()``, ``proc.paged_out_ranges()``,
``proc.resident_bytes()``, ``proc.nr_faults``, ``proc.refault_bytes`` and
``proc.action_bytes`` show what DAMOS did.
"""

from .intervals import IntervalSet
from .ops import MODES, SimOps
from .workload import (
    EVERY_SAMPLE,
    MovingPattern,
    Phase,
    RangePattern,
    RateMap,
    SimMapping,
    Workload,
    WorkloadError,
    ZipfPattern,
    builtin_workload,
    list_builtin_workloads,
    load_workload,
    parse_size,
    resolve_workload,
)
from .world import (
    FIRST_SIM_PID,
    SimPhysicalMemory,
    SimProcess,
    SimWorld,
    access_probability,
    physical_workload,
    physical_workload_from_iomem,
    workload_from_maps,
)

__all__ = [
    "EVERY_SAMPLE", "FIRST_SIM_PID", "MODES", "IntervalSet", "MovingPattern", "Phase",
    "RangePattern", "RateMap", "SimMapping", "SimOps", "SimPhysicalMemory", "SimProcess",
    "SimWorld", "Workload", "WorkloadError", "ZipfPattern", "access_probability",
    "builtin_workload", "list_builtin_workloads", "load_workload", "parse_size",
    "physical_workload", "physical_workload_from_iomem", "resolve_workload",
    "workload_from_maps",
]
