"""The heap a process starts with, set aside from CPython's garbage collector.

Once mitmdump has loaded the addon it holds about 140,000 objects that live as long as the
process (mitmproxy, exchangelib and its zone map, googleapiclient, calsync's modules), and
a worker process nearly as many. Every full collection visits them all: 80-130 ms of CPU
on the machine the benchmarks run on, during which no other thread of the process runs:
mitmproxy's event loop stops passing traffic, the worker stops mirroring. CPython starts
one whenever the long-lived objects grew by a quarter since the last, so it comes back as
the process works, and every request or change that meets it waits.

`freeze_heap` collects once, then moves everything left into the permanent generation
(`gc.freeze`), which collections skip: later full collections visit only what was made
since, a few milliseconds. Nothing frozen is ever freed, so it is done when a process has
built what it keeps (the addon running, a worker warmed up), never per request.
"""

from __future__ import annotations

import gc


def freeze_heap() -> int:
    """Collect, then freeze what is left; how many objects are frozen now."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
