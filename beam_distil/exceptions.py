"""distilabel's run-time exceptions (``distilabel.exceptions``), under the same names.

``DistilabelOfflineBatchGenerationNotFinishedException`` ends a run whose provider batches are still running
(``use_offline_batch_generation=True`` without ``offline_batch_generation_block_until_done``). Nothing is lost:
the batch ids are in the ledger next to the response cache, and running the same pipeline again collects what
has finished and pays for nothing twice::

    try:
        distiset = pipeline.run()
    except DistilabelOfflineBatchGenerationNotFinishedException as waiting:
        print(waiting.jobs_ids)           # ("batch_abc", ...): the provider's batch ids still running
        partial = waiting.distiset        # the rows that were done (the others come with a later run)
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple


class DistilabelException(Exception):
    """The base of distilabel's run-time exceptions."""


class DistilabelGenerationException(DistilabelException):
    """Generation could not go on as asked."""


class DistilabelOfflineBatchGenerationNotFinishedException(DistilabelGenerationException):
    """Provider batches are still running: run the pipeline again later to collect them.

    ``jobs_ids`` are the provider's batch ids still running; ``distiset`` (when raised by ``Pipeline.run``) holds
    the rows that were done, the rows waiting on a batch left out.
    """

    def __init__(self, jobs_ids: Sequence[str], message: Optional[str] = None, distiset: Any = None) -> None:
        self.jobs_ids: Tuple[str, ...] = tuple(jobs_ids)
        self.distiset = distiset
        super().__init__(message or f"Offline batch generation is not finished: batches {list(self.jobs_ids)}")

    def __reduce__(self) -> Any:  # pickles with its ids (Beam sends errors between processes)
        return (type(self), (self.jobs_ids, str(self), None))
