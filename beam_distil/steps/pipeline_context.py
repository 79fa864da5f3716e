"""Which pipeline a step joins when it is created: the innermost ``with Pipeline(...)`` block of its thread.

``Pipeline.__enter__``/``__exit__`` open and close the block; a step made inside it joins that pipeline, as in
distilabel. Kept here, below the steps, so that steps need nothing from ``beam_distil.pipeline``::

    with Pipeline("demo") as pipeline:
        current_pipeline() is pipeline      # True
"""

from __future__ import annotations

import threading
from typing import Any, Optional

_open_blocks = threading.local()


def current_pipeline() -> Optional[Any]:
    """The innermost ``with Pipeline(...)`` block of this thread, if any."""
    stack = getattr(_open_blocks, "stack", [])
    return stack[-1] if stack else None


def enter_pipeline(pipeline: Any) -> None:
    _open_blocks.stack = [*getattr(_open_blocks, "stack", []), pipeline]


def leave_pipeline(pipeline: Any) -> None:
    """Closes the innermost block of ``pipeline``: a block of the same pipeline opened around it stays open."""
    stack = list(getattr(_open_blocks, "stack", []))
    for index in range(len(stack) - 1, -1, -1):
        if stack[index] is pipeline:
            del stack[index]
            break
    _open_blocks.stack = stack
