"""Rows that need several LLM calls, one after another (``EvolInstruct``, ``EvolQuality``, ``Magpie``...).

A task describes the calls of one row as a *conversation*: a generator that yields a prompt, receives the
answer's text (never ``None``), yields the next prompt, and finally returns the row's output columns. It may
raise ``NoAnswer`` to stop the row with a reason (an empty evolution, say). This module drives it::

    def conversation(self, input):
        answer = yield [{"role": "user", "content": f"Rewrite: {input['instruction']}"}]
        if not answer.strip():
            raise NoAnswer("empty rewrite")
        return {"rewritten": answer}

Every call goes through the response cache on its own, so a killed or re-run job pays only for the calls that
were never answered: the prompts of a row are deterministic (seeded from the row), so a re-run asks the same
ones and finds the answers already paid for. A call that fails, or an answer without text, stops the row: it is
kept with the task's ``failed_output`` columns (or what the conversation kept, see ``NoAnswer``) and
``distilabel_metadata["error_<task>"]``, and counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, Generator, List, Optional, Tuple

from beam_distil.beam.llm_calls import RowResult, cache_io, call_llm, describe_error
from beam_distil.models.base import LLM, missing_answers
from beam_distil.rows import DISTILABEL_METADATA_KEY

if TYPE_CHECKING:
    from beam_distil.cache import ResponseCache

Conversation = Generator[Any, str, Dict[str, Any]]
"""Yields prompts, receives each answer's text, returns the output columns."""


class NoAnswer(Exception):
    """Raised by a conversation (or here, for an answer without text) to stop the row; the message says why.

    A conversation that keeps what it had before the failure (Magpie keeps the turns that succeeded) raises it
    with ``columns``; the row then has those columns, the error, and still counts as failed. The driver throws a
    ``NoAnswer`` into the conversation when a call fails, so the conversation can answer with its columns::

        try:
            answer = yield prompt
        except NoAnswer as failure:
            raise NoAnswer(str(failure), columns={"conversation": turns_so_far}) from failure
    """

    def __init__(self, reason: str, columns: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(reason)
        self.columns = columns


@dataclass
class ConversationRecord:
    """What one row's calls asked, answered and cost."""

    prompts: List[Any] = field(default_factory=list)
    answers: List[Optional[str]] = field(default_factory=list)
    columns: Optional[Dict[str, Any]] = None
    error: Optional[str] = None
    requests: int = 0
    retries: int = 0
    cache_hits: int = 0
    paid_input_tokens: int = 0
    paid_output_tokens: int = 0
    input_tokens: List[int] = field(default_factory=list)
    """Each answered call's tokens, paid now or earlier (cache hits): the row's statistics, the same either way."""
    output_tokens: List[int] = field(default_factory=list)


async def run_conversation(
    conversation: Conversation,
    client: LLM,
    kwargs: Dict[str, Any],
    cache: Optional["ResponseCache"] = None,
) -> ConversationRecord:
    """Drives ``conversation`` to its end with one generation per call. Never raises.

    A new answer is stored in ``cache`` once the conversation has accepted it (taken it without raising), so
    an answer the task found unusable (an empty evolution) is asked again on a re-run rather than served.
    """
    record = ConversationRecord()
    try:
        prompt = next(conversation)
        while True:
            record.prompts.append(prompt)
            key = cache.key(client, prompt, 1, kwargs) if cache is not None else None
            try:
                output, paid = await _answer(prompt, client, kwargs, cache, key, record)
            except Exception as failure:  # noqa: BLE001 — told to the conversation, kept as the row's error
                raise NoAnswer(describe_error(failure, client)) from failure
            record.input_tokens.append(sum(output["statistics"]["input_tokens"]))
            record.output_tokens.append(sum(output["statistics"]["output_tokens"]))
            text = output["generations"][0] if output["generations"] else None
            record.answers.append(text)
            missing = missing_answers(output)
            if missing:
                raise NoAnswer(f"no answer: {missing[0]}")
            try:
                prompt = conversation.send(text)
            except StopIteration:
                await _keep(cache, key, output, paid)  # the last answer, accepted: the conversation ended
                raise
            await _keep(cache, key, output, paid)
    except StopIteration as stop:
        record.columns = dict(stop.value)
    except NoAnswer as no_answer:
        record.error = f"call {len(record.prompts)}: {no_answer}"
        record.columns = no_answer.columns if no_answer.columns is not None else _columns_kept(conversation, no_answer)
    except Exception as failure:  # noqa: BLE001 — kept as the row's error, never dropped
        record.error = f"call {len(record.prompts)}: {describe_error(failure, client)}"
    return record


def _columns_kept(conversation: Conversation, failure: NoAnswer) -> Optional[Dict[str, Any]]:
    """The columns a conversation keeps when told of ``failure`` (a failed call, an answer without text), or
    ``None`` when it keeps nothing (the usual case). A conversation that raised the failure itself is over."""
    try:
        conversation.throw(failure)
    except NoAnswer as kept:
        return kept.columns
    except StopIteration:
        return None
    except Exception:  # noqa: BLE001 — a conversation over, or one that fails on the news: nothing kept
        return None
    conversation.close()  # it asked for another call after a failure: the row stops here all the same
    return None


async def _answer(
    prompt: Any,
    client: LLM,
    kwargs: Dict[str, Any],
    cache: Optional["ResponseCache"],
    key: Optional[str],
    record: ConversationRecord,
) -> Tuple[Dict[str, Any], bool]:
    """The answer to one call, and whether it was paid now: from the cache, else from the LLM."""
    if key is not None:
        cached = await cache_io(cache, cache.get, key)
        if cached is not None and not missing_answers(cached):
            record.cache_hits += 1
            return cached, False
    record.requests += 1
    outcome = await call_llm(client, prompt, 1, kwargs)
    record.retries += outcome.retries
    if outcome.error is not None:
        raise outcome.error
    output = outcome.output
    record.paid_input_tokens += sum(output["statistics"]["input_tokens"])
    record.paid_output_tokens += sum(output["statistics"]["output_tokens"])
    return output, True


async def _keep(cache: Optional["ResponseCache"], key: Optional[str], output: Dict[str, Any], paid: bool) -> None:
    """Stores an answer the conversation accepted, if it was paid now (a cached one is there already)."""
    if paid and cache is not None and key is not None:
        await cache_io(cache, cache.put, key, output)


def row_result(task: Any, input: Dict[str, Any], record: ConversationRecord) -> RowResult:
    """The output row of a conversation for ``input``, in distilabel's layout, with what it cost.

    ``task`` gives the row's shape: ``name``, ``llm.model_name``, ``conversation_metadata(record)`` (its
    ``distilabel_metadata`` entries: raw outputs, raw inputs, statistics, laid out as the task does in
    distilabel) and ``failed_output(input)`` (the columns of a row that failed, under any columns the
    conversation kept).
    """
    metadata = dict(input.get(DISTILABEL_METADATA_KEY) or {})
    metadata.update(task.conversation_metadata(record))
    if record.error is not None:
        metadata[f"error_{task.name}"] = record.error
    columns = record.columns if record.error is None else {**task.failed_output(input), **(record.columns or {})}
    row = {**input, **columns, "model_name": task.llm.model_name, DISTILABEL_METADATA_KEY: metadata}
    return RowResult(
        rows=[row],
        requests=record.requests,
        failed=record.error is not None,
        input_tokens=record.paid_input_tokens,
        output_tokens=record.paid_output_tokens,
        retries=record.retries,
        cache_hits=record.cache_hits,
        error=record.error,
    )


async def generate_conversation_row(
    task: Any, input: Dict[str, Any], client: LLM, cache: Optional["ResponseCache"] = None
) -> RowResult:
    """The output row of a task whose rows are conversations (``task.conversation(input)``)."""
    try:
        kwargs = task.generation_kwargs(input)
    except Exception as error:  # noqa: BLE001 — the row is kept with its error, nothing was sent
        return row_result(task, input, ConversationRecord(error=f"call 0: {describe_error(error, client)}"))
    record = await run_conversation(task.conversation(input), client, kwargs, cache)
    return row_result(task, input, record)
