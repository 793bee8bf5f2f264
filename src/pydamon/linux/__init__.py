"""Thin wrappers over the Linux interfaces pydamon's real operations sets use.

One concern per module: :mod:`procfs` (maps, iomem, meminfo, status),
:mod:`pagemap` (virtual to physical translation), :mod:`page_idle` (the
idle page bitmap and ``/proc/kpageflags``), :mod:`pidfd` (process handles
and ``process_madvise``), :mod:`caps` (the checks done before a kdamond
starts). Every system call on a hot path goes through :mod:`syscount` so
that tests and benchmarks can report calls per region-sample.
"""
