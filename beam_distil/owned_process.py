"""Start-up tuning for the processes the project owns: the ``beam-distil`` command, the Flex Template
launcher and the recipes in ``pipelines/`` (those after their imports, at the start of ``__main__``). Never
applied by ``import beam_distil``: a user's own Beam job keeps its garbage collector as it set it.

Importing Apache Beam creates about a million long-lived objects. The garbage collector would walk them all
several times while they are made, and again in every full collection of the run; and Python's collection at
shutdown walks the whole heap once more. Here collections are paused while Beam is imported, everything alive
is then moved to the permanent generation (``gc.freeze``), which collections skip, and the heap is frozen
again at exit (the OS frees a finished process's memory anyway). Objects created later are collected as usual.
``benchmarks/README.md`` has the measured difference.

Example (the first statement of an entry point)::

    from beam_distil.owned_process import tune_owned_process

    def console_main() -> int:
        tune_owned_process()
        return main()
"""

from __future__ import annotations

import atexit
import contextlib
import gc
from typing import Iterator

_tuned = False


def tune_owned_process() -> None:
    """Imports Apache Beam with collections paused, freezes the heap, and freezes it again at exit. Idempotent."""
    global _tuned
    if _tuned:
        return
    _tuned = True
    collecting = gc.isenabled()
    gc.disable()
    try:
        import apache_beam  # noqa: F401
    finally:
        if collecting:
            gc.enable()
    gc.freeze()
    atexit.register(gc.freeze)


@contextlib.contextmanager
def collections_paused() -> Iterator[None]:
    """In a tuned process, pauses garbage collection for the block: loading a large pipeline file makes millions
    of objects and no garbage, and the collections it would trigger are most of its time. Elsewhere (a user's
    process) it changes nothing."""
    if not _tuned or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
