"""The ledger of provider batches: which requests went into which batch, written before the batch is polled, so a
killed, failed or re-run pipeline finds its batches again instead of paying for them twice.

It lives next to the response cache, in ``<cache_dir>/offline_batches/``, one small JSON file per submission
(``<submission>.json``), on any path Beam's ``FileSystems`` can write (``gs://`` on Dataflow, where a retried
bundle may run on another worker). A record is written *before* the batch is created (``batch_id`` still
``None``) and again once the provider gave its id, so that a process dying between the two leaves a record the
next run can match with the provider's own list of batches (``OfflineBatchAPI.find_batch``)::

    ledger = BatchLedger("/home/me/.cache/beam_distil")
    record = ledger.new_record(provider="openai", model="gpt-4o-mini", task="gen", custom_ids=["a1-0", "b2-0"])
    ledger.save(record)                       # before creating the batch
    record.batch_id = "batch_abc"; ledger.save(record)
    ledger.load_index()                       # {"a1-0": [record], "b2-0": [record]}: every submission, oldest first

A record is never deleted: a finished batch's answers are in the response cache, which is what a later run reads
first; the ledger only matters for requests the cache does not have yet.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence

from apache_beam.io.filesystems import FileSystems

from beam_distil.cache import write_whole
from beam_distil.helpers import is_url

logger = logging.getLogger("beam_distil")

LEDGER_FOLDER = "offline_batches"


@dataclass
class BatchRecord:
    """One submission of requests to a provider's batch API."""

    submission: str
    """Hex digest of what was submitted (the requests and the attempt), the record's file name; attached to the
    batch where the provider allows, so it can be found again (``find_batch``)."""
    provider: str
    model: str
    task: str
    custom_ids: List[str]
    attempt: int = 1
    """1 for a first submission; n for the (n-1)th resend of requests an earlier batch left unanswered."""
    batch_id: Optional[str] = None
    """The provider's id, once it gave one."""
    created_at: float = field(default_factory=time.time)
    last_status: Optional[str] = None
    """The provider's word for the batch's state when last seen (for the end-of-run message), ``None`` before."""
    final: bool = False
    """Whether the batch had ended when last seen (answers collected into the cache)."""


class BatchLedger:
    """The batch records under ``<cache_dir>/offline_batches``."""

    def __init__(self, cache_dir: str) -> None:
        self.directory = FileSystems.join(cache_dir, LEDGER_FOLDER)
        self._made = False

    @staticmethod
    def new_record(provider: str, model: str, task: str, custom_ids: Sequence[str], attempt: int = 1) -> BatchRecord:
        """A record for submitting ``custom_ids`` (its submission digest derives from them and ``attempt``)."""
        digest = hashlib.sha256(
            json.dumps({"provider": provider, "model": model, "ids": sorted(custom_ids), "attempt": attempt}).encode()
        ).hexdigest()
        return BatchRecord(digest[:40], provider, model, task, list(custom_ids), attempt=attempt)

    def _path(self, submission: str) -> str:
        return FileSystems.join(self.directory, f"{submission}.json")

    def save(self, record: BatchRecord) -> None:
        """Writes ``record`` whole (a reader never sees a torn record). Raises when the ledger cannot be written:
        a batch must not be created, or polled as if recorded, without its record."""
        if not self._made and not is_url(self.directory):
            os.makedirs(self.directory, exist_ok=True)
        self._made = True
        write_whole(self._path(record.submission), json.dumps(asdict(record)).encode())

    def records(self) -> List[BatchRecord]:
        """Every record, oldest first. A record that cannot be read is skipped with a warning: its requests
        are then sent again, which costs money but loses nothing."""
        try:
            matched = FileSystems.match([FileSystems.join(self.directory, "*.json")])[0].metadata_list
        except Exception:  # noqa: BLE001 — no ledger folder yet (Beam raises its own error type for that)
            return []
        records = []
        for metadata in matched:
            try:
                with FileSystems.open(metadata.path) as file:
                    records.append(BatchRecord(**json.loads(file.read())))
            except (OSError, ValueError, TypeError) as error:
                logger.warning("Batch ledger record %r cannot be read (%s): ignored.", metadata.path, error)
        return sorted(records, key=lambda record: (record.created_at, record.attempt))

    def load_index(self) -> Dict[str, List[BatchRecord]]:
        """``{custom_id: [records that hold it, oldest first]}``."""
        index: Dict[str, List[BatchRecord]] = {}
        for record in self.records():
            for custom_id in record.custom_ids:
                index.setdefault(custom_id, []).append(record)
        return index

    def unfinished(self, tasks: Optional[Sequence[str]] = None) -> List[BatchRecord]:
        """Records of batches not seen ended yet (of ``tasks`` only, when given)."""
        return [r for r in self.records() if not r.final and (tasks is None or r.task in tasks)]
