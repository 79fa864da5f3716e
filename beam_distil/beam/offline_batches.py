"""Generating a Task's rows through its provider's batch API (``llm.use_offline_batch_generation=True``).

One call of ``OfflineBatches.generate`` handles the rows of one Beam bundle:

1. Each row's prompt is formatted as online, and looked up in the response cache: a completion already paid for
   (online or in an earlier batch) is used as it is.
2. The rest become batch requests. A request's ``custom_id`` derives from the row id and the cache key of its
   call (``<digest>-<part>``, one part per request of the row: a provider without ``n`` gets one request per
   generation), so a re-run of the same rows asks for the same ids.
3. The ledger (``batch_ledger``) says which of those ids were already submitted, by this bundle's earlier attempt,
   a killed run, or a worker that died: those batches are polled again, never created again. The others are split
   into batches within the provider's limits (requests and bytes), each recorded in the ledger *before* it is
   created.
4. The batches are polled every ``offline_batch_generation_block_until_done`` seconds until they end (with
   ``None``, distilabel's default, they are looked at once: rows whose batch is still running are returned as
   ``None``, and the run ends with ``DistilabelOfflineBatchGenerationNotFinishedException``). Every answer goes
   into the response cache as soon as its batch is collected, so a later run, online or batch, pays nothing for it.
5. A request an expired, cancelled or failed batch left unanswered is sent again in a new batch, at most
   ``offline_batch_max_resends`` times, or fails its row at once (``offline_batch_unanswered="fail"``). A request
   the provider answered with an error, or without text, fails its row: counted and dead-lettered as online.

API calls that fail in a way worth retrying (rate limited, 5xx, reset) are retried with backoff; past that, the
bundle fails, and Beam's retry of it (or the next run) resumes from the ledger.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Dict, List, Optional, Sequence, Set

from beam_distil.beam.batch_ledger import BatchLedger, BatchRecord
from beam_distil.beam.llm_calls import RowResult, answered_row, cache_io, cached_row, describe_error, failed_row
from beam_distil.models.base import LLM, missing_answers, request_parts
from beam_distil.models.offline_batch import (
    BatchAnswer, BatchRequest, BatchStatus, OfflineBatchAPI, answer_of_requests, split_within_limits,
)
from beam_distil.models.retries import backoff_seconds
from beam_distil.models.structured_output import call_arguments
from beam_distil.rows import RowId

if TYPE_CHECKING:
    from beam_distil.cache import ResponseCache
    from beam_distil.exceptions import DistilabelOfflineBatchGenerationNotFinishedException
    from beam_distil.steps.tasks.base import Task

logger = logging.getLogger("beam_distil")

API_CALL_RETRIES = 8
"""Retries of one batch-API call (status, upload, create, download) that failed in a way worth retrying."""

Report = Callable[..., None]
"""``report(batches_open=+1, batch_requests=..., batch_answered=...)``: progress deltas."""


@dataclass
class BatchCounts:
    """What one ``generate`` call did with the provider's batch API, for the task's Beam counters."""

    batches_submitted: int = 0
    batches_resumed: int = 0
    """Batches of an earlier attempt or run that this call polled or collected instead of creating them again."""
    requests_submitted: int = 0
    requests_resent: int = 0
    rows_waiting: int = 0


@dataclass
class _Row:
    """One input row on its way through the batches."""

    input: Dict[str, Any]
    formatted: Any
    key: str
    custom_ids: List[str] = field(default_factory=list)


@dataclass
class _Tracked:
    """A batch this call waits on, and the requests of this call's rows in it."""

    record: BatchRecord
    wanted: Set[str]
    ended_before: bool = False
    """The batch had ended in an earlier run: its requests left without a usable answer are asked again now,
    as an online re-run asks again for what failed."""


class OfflineBatches:
    """A task's batch-API work in one process: the provider's API, the cache and the ledger."""

    def __init__(
        self, task: "Task", client: LLM, api: OfflineBatchAPI, cache: "ResponseCache", ledger: BatchLedger,
        report: Report,
    ) -> None:
        self._task = task
        self._client = client
        self._api = api
        self._cache = cache
        self._ledger = ledger
        self._report = report
        self._rng = random.Random()
        limit = client.offline_batch_max_requests
        self._max_requests = min(api.max_requests_per_batch, limit) if limit else api.max_requests_per_batch

    async def generate(self, row_ids: Sequence[RowId], inputs: Sequence[Dict[str, Any]]) -> "tuple[List[Optional[RowResult]], BatchCounts]":
        """A ``RowResult`` per row (``None``: still waiting on a running batch, when not blocking), and counts."""
        counts = BatchCounts()
        results: List[Optional[RowResult]] = [None] * len(inputs)
        lines: Dict[str, bytes] = {}  # each request of the rows, encoded, by custom_id
        rows: Dict[int, _Row] = {}
        for index, (row_id, input) in enumerate(zip(row_ids, inputs)):
            outcome = await self._prepare(row_id, input, lines)
            if isinstance(outcome, RowResult):
                results[index] = outcome
                continue
            rows[index] = outcome
        if not rows:
            return results, counts

        answered: Dict[str, BatchAnswer] = {}
        failed_requests: Dict[str, str] = {}
        tracked, new, attempts = await self._resume(list(lines))
        counts.batches_resumed = len(tracked)
        self._report(batches_open=len(tracked), batch_requests=len(lines))
        await self._submit(new, lines, attempts, tracked, failed_requests, counts)

        block = self._client.offline_batch_generation_block_until_done
        while True:
            unanswered: Dict[str, str] = {}
            for submission, entry in list(tracked.items()):
                status, batch_answers = await self._poll(entry)
                if not status.is_final:
                    continue
                del tracked[submission]
                self._report(batches_open=-1)
                ask_again = []
                for custom_id in entry.wanted:
                    answer = batch_answers.get(custom_id)
                    if entry.ended_before and not _usable(answer):
                        ask_again.append(custom_id)
                    elif answer is not None:
                        answered[custom_id] = answer
                    else:
                        unanswered[custom_id] = _why_unanswered(entry.record, status)
                await self._submit(ask_again, lines, attempts, tracked, failed_requests, counts)
                self._report(batch_answered=sum(1 for c in entry.wanted if c in batch_answers))
            await self._finish_rows(rows, answered, failed_requests, results)
            if unanswered:
                resend = [c for c in unanswered if self._may_resend(attempts[c])]
                for custom_id, reason in unanswered.items():
                    if custom_id not in resend:
                        failed_requests[custom_id] = reason
                counts.requests_resent += len(resend)
                await self._submit(resend, lines, attempts, tracked, failed_requests, counts)
                await self._finish_rows(rows, answered, failed_requests, results)
            if not tracked:
                break
            if block is None:
                counts.rows_waiting = sum(1 for i in rows if results[i] is None)
                break
            await asyncio.sleep(block)
        return results, counts

    async def _resume(self, custom_ids: List[str]) -> "tuple[Dict[str, _Tracked], List[str], Dict[str, int]]":
        """What the ledger knows of ``custom_ids``: the batches holding them (by submission), the requests never
        submitted, and how many times each was submitted already."""
        ledger_index = await cache_io(self._cache, self._ledger.load_index)
        tracked: Dict[str, _Tracked] = {}
        new: List[str] = []
        for custom_id in custom_ids:
            records = ledger_index.get(custom_id)
            if not records:
                new.append(custom_id)
                continue
            latest = records[-1]
            entry = tracked.setdefault(latest.submission, _Tracked(latest, set(), ended_before=latest.final))
            entry.wanted.add(custom_id)
        attempts = {custom_id: len(ledger_index.get(custom_id, ())) for custom_id in custom_ids}
        for entry in list(tracked.values()):
            if entry.record.batch_id is not None:
                continue
            # Recorded, then the process died before the provider gave the batch's id: did it create it?
            found = await self._call(self._api.find_batch, entry.record.submission)
            if found is None:
                del tracked[entry.record.submission]
                entry.record.final, entry.record.last_status = True, "never created"
                new.extend(entry.wanted)  # sent now, in a batch of this call
                for custom_id in entry.wanted:
                    attempts[custom_id] -= 1
            else:
                entry.record.batch_id = found
            await cache_io(self._cache, self._ledger.save, entry.record)
        return tracked, new, attempts

    async def _prepare(self, row_id: RowId, input: Dict[str, Any], lines: Dict[str, bytes]) -> "RowResult | _Row":
        """The row's cached result, its failure (a prompt that cannot be formatted or sent), or its requests
        (their encoded lines added to ``lines``)."""
        task, client = self._task, self._client
        try:
            formatted = task.format_input(input)
        except Exception as error:  # noqa: BLE001 — the row is kept with its error, nothing was sent
            return failed_row(task, input, None, describe_error(error, client), requests=0)
        kwargs = task.generation_kwargs(input)
        key = self._cache.key(client, formatted, task.num_generations, kwargs)
        cached = await cached_row(task, input, formatted, self._cache, key)
        if cached is not None:
            return cached
        prompt, call_kwargs = call_arguments(client, formatted, kwargs)
        digest = hashlib.sha256(json.dumps([list(row_id), key]).encode()).hexdigest()[:40]
        row = _Row(input, formatted, key)
        row_lines = {}
        for part, (num_generations, part_kwargs) in enumerate(request_parts(client, task.num_generations, call_kwargs)):
            request = BatchRequest(f"{digest}-{part}", prompt, num_generations, part_kwargs)
            try:
                line = self._api.encode_request(request)
            except (ValueError, TypeError) as error:
                return failed_row(task, input, formatted, describe_error(error, client), requests=0)
            if len(line) + 1 > self._api.max_bytes_per_batch:
                reason = (
                    f"the request is {len(line)} bytes, more than a {self._api.provider} batch takes"
                    f" ({self._api.max_bytes_per_batch} bytes)"
                )
                return failed_row(task, input, formatted, reason, requests=0)
            row_lines[request.custom_id] = line
            row.custom_ids.append(request.custom_id)
        lines.update(row_lines)  # only a row all of whose requests can be sent sends any
        return row

    def _may_resend(self, attempts: int) -> bool:
        return self._client.offline_batch_unanswered == "resend" and attempts <= self._client.offline_batch_max_resends

    async def _submit(
        self, custom_ids: List[str], lines: Dict[str, bytes], attempts: Dict[str, int],
        tracked: Dict[str, _Tracked], failed_requests: Dict[str, str], counts: BatchCounts,
    ) -> None:
        """Sends ``custom_ids`` in as few batches as the provider's limits allow, each recorded before it is
        created. A batch the provider refuses (a 4xx on create) fails its requests' rows, not the bundle."""
        ids = sorted(set(custom_ids))
        for chunk in split_within_limits(ids, [len(lines[c]) for c in ids], self._max_requests, self._api.max_bytes_per_batch):
            attempt = max(attempts[c] for c in chunk) + 1
            record = self._ledger.new_record(
                self._api.provider, self._client.model_name, self._task.name, chunk, attempt=attempt
            )
            await cache_io(self._cache, self._ledger.save, record)
            try:
                record.batch_id = await self._create(record.submission, [lines[c] for c in chunk])
            except Exception as error:  # noqa: BLE001 — a refused batch fails its rows, with the provider's reason
                if self._api.is_transient(error):
                    raise
                reason = f"the {self._api.provider} batch API refused the batch: {describe_error(error, self._client)}"
                record.final, record.last_status = True, "refused"
                await cache_io(self._cache, self._ledger.save, record)
                failed_requests.update({c: reason for c in chunk})
                continue
            await cache_io(self._cache, self._ledger.save, record)
            for custom_id in chunk:
                attempts[custom_id] = attempt
            tracked[record.submission] = _Tracked(record, set(chunk))
            counts.batches_submitted += 1
            counts.requests_submitted += len(chunk)
            self._report(batches_open=1)
            logger.info(
                "Task %r: %s batch %s created with %d requests%s.", self._task.name, self._api.provider,
                record.batch_id, len(chunk), f" (attempt {attempt})" if attempt > 1 else "",
            )

    async def _poll(self, entry: _Tracked) -> "tuple[BatchStatus, Dict[str, BatchAnswer]]":
        """The batch's status, and its answers once it has ended. A batch the provider no longer knows (deleted,
        another account) ends here as failed, its requests unanswered; an error worth retrying that outlasted
        its retries fails the bundle, and Beam's retry of it, or the next run, resumes from the ledger."""
        try:
            status = await self._status(entry)
            return status, (await self._call(self._api.answers, entry.record.batch_id) if status.is_final else {})
        except Exception as error:  # noqa: BLE001 — transient ones re-raised, the others make the batch lost
            if self._api.is_transient(error):
                raise
            reason = f"{self._api.provider} batch {entry.record.batch_id} cannot be read: {describe_error(error, self._client)}"
            entry.record.final, entry.record.last_status = True, "unreadable"
            await cache_io(self._cache, self._ledger.save, entry.record)
            return BatchStatus(state="failed", provider_status="unreadable", error=reason), {}

    async def _status(self, entry: _Tracked) -> BatchStatus:
        status = await self._call(self._api.status, entry.record.batch_id)
        seen = f"{status.provider_status} {status.completed}/{status.total}"
        if seen != entry.record.last_status or status.is_final != entry.record.final:
            logger.info(
                "Task %r: %s batch %s %s: %d of %d requests answered, %d failed%s.", self._task.name,
                self._api.provider, entry.record.batch_id, status.provider_status, status.completed, status.total,
                status.failed, f" ({status.error})" if status.error else "",
            )
            entry.record.last_status, entry.record.final = seen, status.is_final
            await cache_io(self._cache, self._ledger.save, entry.record)
        return status

    async def _finish_rows(
        self, rows: Dict[int, _Row], answered: Dict[str, BatchAnswer], failed_requests: Dict[str, str],
        results: List[Optional[RowResult]],
    ) -> None:
        """Every row whose requests all have an answer or a final failure gets its result (and, when its
        answer has text, its cache entry)."""
        for index, row in rows.items():
            if results[index] is not None:
                continue
            failure = next((failed_requests[c] for c in row.custom_ids if c in failed_requests), None)
            if failure is not None:
                results[index] = failed_row(self._task, row.input, row.formatted, failure, requests=len(row.custom_ids))
                continue
            if not all(c in answered for c in row.custom_ids):
                continue
            answer = answer_of_requests([answered[c] for c in row.custom_ids])
            if answer.output is None:
                reason = self._client.redact(f"{self._api.provider} batch answered with an error: {answer.error}")
                results[index] = failed_row(self._task, row.input, row.formatted, reason, requests=len(row.custom_ids))
                continue
            result = answered_row(
                self._task, row.input, row.formatted, answer.output, requests=len(row.custom_ids), paid_in_batch=True
            )
            if not result.failed:  # an answer without text is not cached: a re-run asks again
                await cache_io(self._cache, self._cache.put, row.key, answer.output)
            results[index] = result

    async def _create(self, submission: str, lines: List[bytes]) -> str:
        """Creates one batch, retried like any call; but before a retry, the provider's list of batches is asked
        whether the failed attempt created it after all (its answer lost on the way), so it is not paid twice."""
        return await self._call(
            self._api.submit, lines, submission, recover=lambda: self._call(self._api.find_batch, submission)
        )

    async def _call(
        self, method: Callable[..., Awaitable[Any]], *args: Any,
        recover: Optional[Callable[[], Awaitable[Any]]] = None,
    ) -> Any:
        """``method(*args)`` on the batch API, retried with backoff while its errors are worth it. Before each
        retry, ``recover()`` (if given) may find what the failed attempt did after all: a result other than
        ``None`` is returned instead of retrying."""
        retries = 0
        while True:
            try:
                return await method(*args)
            except Exception as error:  # noqa: BLE001 — retried or raised, never swallowed
                if not self._api.is_transient(error) or retries >= API_CALL_RETRIES:
                    raise self._client.redact_error(error)
                retry_after = getattr(error, "retry_after", None)
                base = getattr(self._client, "retry_base_delay", 1.0)
                await asyncio.sleep(backoff_seconds(retries, base, retry_after, self._rng))
                retries += 1
                if recover is not None:
                    recovered = await recover()
                    if recovered is not None:
                        return recovered


def _usable(answer: Optional[BatchAnswer]) -> bool:
    """Whether a request's answer has text in every generation (what the response cache keeps)."""
    return answer is not None and answer.output is not None and not missing_answers(answer.output)


def _why_unanswered(record: BatchRecord, status: BatchStatus) -> str:
    detail = f": {status.error}" if status.error else ""
    return (
        f"{record.provider} batch {record.batch_id} ended {status.provider_status} ({status.state}) without answering"
        f" this request{detail}"
    )


def batches_not_finished(
    pipeline_name: str, batch_tasks: Sequence[str], metrics: Dict[str, Dict[str, int]], cache_dir: str,
    distiset: Any,
) -> "Optional[DistilabelOfflineBatchGenerationNotFinishedException]":
    """The exception that ends a run whose rows still wait on provider batches, or ``None`` when none do."""
    from beam_distil.exceptions import DistilabelOfflineBatchGenerationNotFinishedException

    waiting = {task: metrics.get(task, {}).get("rows_waiting_on_batches", 0) for task in batch_tasks}
    waiting = {task: rows for task, rows in waiting.items() if rows}
    if not waiting:
        return None
    records = [r for r in BatchLedger(cache_dir).unfinished(list(waiting)) if r.batch_id is not None]
    described = "; ".join(
        f"{record.provider} batch {record.batch_id} of task {record.task!r} ({record.last_status or 'submitted'})"
        for record in records
    )
    rows = ", ".join(f"{count} rows of task {task!r}" for task, count in waiting.items())
    message = (
        f"Pipeline {pipeline_name!r}: {rows} wait on provider batches still running: {described}. Run the pipeline"
        " again (with the same cache) once they are done: it collects their answers and sends nothing twice. Or set"
        " the LLM's offline_batch_generation_block_until_done=<seconds> to wait for them within the run."
    )
    return DistilabelOfflineBatchGenerationNotFinishedException(
        [record.batch_id for record in records], message, distiset=distiset
    )
