"""The garbage collector during a local run: the heap as it was before the run is frozen while the job runs and
its rows are read back into a Distiset, then given back to the collector.

A process that has imported Apache Beam and ``datasets`` holds about a million long-lived objects. Every full
collection during a run walks them all again (0.2-0.3 s each, about 1 s per run of a few thousand requests,
``benchmarks/README.md``) and stalls the event loop that keeps the requests in flight. Frozen
(``gc.freeze``), they are skipped; the run's own objects are collected as usual. ``gc.unfreeze`` at the end puts
them back, so after the run the process's collector is as the user had it: nothing lasting, unlike the start-up
tuning of the project's own processes (``beam_distil.owned_process``), which is never applied to a user's
process. A process that froze its heap itself, or disabled the collector, is left as it is::

    with heap_frozen_during_run():
        beam_pipeline.run().wait_until_finish()
"""

from __future__ import annotations

import contextlib
import gc
from typing import Iterator


@contextlib.contextmanager
def heap_frozen_during_run() -> Iterator[None]:
    """Freezes the heap for the block and unfreezes it after, unless the process manages its collector itself."""
    if not gc.isenabled() or gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
