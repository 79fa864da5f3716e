"""beam_distil: distilabel's synthetic-data and AI-feedback pipelines on Apache Beam.

Port a distilabel pipeline by renaming its imports (``distilabel.pipeline`` -> ``beam_distil.pipeline``, and
likewise ``steps``, ``steps.tasks``, ``models``), or use any step as a ``PTransform`` in your own Beam job.
"""

import atexit
import gc

__version__ = "0.1.0"

# Importing Apache Beam creates about a million long-lived objects, and the garbage collector would walk them
# all several times while they are made (~0.25 s) and again in every full collection of the run (~0.13 s).
# Collections are paused while Beam is imported, then everything alive is moved to the permanent generation
# (gc.freeze), which collections skip. Objects created afterwards are collected as usual.
_collecting = gc.isenabled()
gc.disable()
try:
    import apache_beam  # noqa: F401,E402
finally:
    if _collecting:
        gc.enable()
gc.freeze()

# Python's shutdown collection would otherwise walk the heap of the run (about half a second); the process is
# ending and the OS frees its memory anyway.
atexit.register(gc.freeze)
