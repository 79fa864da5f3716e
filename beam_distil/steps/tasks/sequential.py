"""``SequentialCallsTask``: a task whose rows each need several LLM calls, one after another.

A subclass writes ``conversation(input)``: a generator that yields each prompt, receives the answer's text
(never ``None``) and returns the row's output columns; it raises ``NoAnswer`` to stop the row with a reason::

    class Rewrite(SequentialCallsTask):
        @property
        def inputs(self): return ["text"]
        @property
        def outputs(self): return ["rewritten", "model_name"]
        def format_input(self, input): return [{"role": "user", "content": input["text"]}]
        def format_output(self, output, input=None): return {"rewritten": output}
        def conversation(self, input):
            draft = yield [{"role": "user", "content": f"Rewrite: {input['text']}"}]
            final = yield [{"role": "user", "content": f"Shorten: {draft}"}]
            return {"rewritten": final}

On Beam the calls of many rows run at once on the process's event loop, each through the response cache
(``beam_distil.beam.sequential_calls``). By default ``distilabel_metadata`` lists every call of the row:
``raw_output_<name>`` (the answers), ``raw_input_<name>`` (the prompts) and ``statistics_<name>``
(``{"input_tokens": [...], "output_tokens": [...]}``, one entry per call); a task lays it out its own way by
overriding ``conversation_metadata`` (EvolInstruct, EvolQuality and Magpie follow distilabel's layout). Only
one generation is asked for per call (``num_generations`` is not used).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar, Dict, List

from beam_distil.beam.sequential_calls import Conversation, ConversationRecord, NoAnswer
from beam_distil.steps.base import StepInput, StepOutput
from beam_distil.steps.tasks.base import Task

__all__ = ["NoAnswer", "SequentialCallsTask", "call_statistics"]


class SequentialCallsTask(Task):
    """A task that needs several LLM calls, one after another, for each row (see the module docstring)."""

    calls_in_sequence: ClassVar[bool] = True

    @abstractmethod
    def conversation(self, input: Dict[str, Any]) -> Conversation:
        """Yields prompts, receives their answers, returns the output columns."""

    def failed_output(self, input: Dict[str, Any]) -> Dict[str, Any]:
        """The output columns of a row whose calls failed."""
        return self._empty_output()

    def raw_input_as_text(self, prompt: Any) -> Any:
        """A prompt as kept in ``raw_input_<name>`` (as it is, unless a subclass renders it)."""
        return prompt

    def conversation_metadata(self, record: ConversationRecord) -> Dict[str, Any]:
        """The row's ``distilabel_metadata`` entries from its calls (``record``): raw answers and prompts (as
        ``add_raw_output``/``add_raw_input`` say) and the tokens of each call."""
        metadata: Dict[str, Any] = {}
        if self.add_raw_output:
            metadata[f"raw_output_{self.name}"] = record.answers
        if self.add_raw_input:
            metadata[f"raw_input_{self.name}"] = [self.raw_input_as_text(prompt) for prompt in record.prompts]
        metadata[f"statistics_{self.name}"] = call_statistics(record)
        return metadata

    def process(self, inputs: StepInput) -> StepOutput:  # type: ignore[override]
        """Synchronous path (used outside Beam): the rows of the batch are run concurrently."""
        from beam_distil.beam.task_engine import generate_batch
        from beam_distil.models.event_loop import run_coroutine

        results = run_coroutine(generate_batch(self, list(inputs), self.llm))
        yield [row for result in results for row in result.rows]


def call_statistics(record: ConversationRecord, calls: slice = slice(None)) -> Dict[str, List[int]]:
    """``{"input_tokens": [...], "output_tokens": [...]}``, one entry per answered call of ``record`` (those in
    ``calls``), as distilabel lays out the statistics of a task that makes several calls."""
    return {"input_tokens": record.input_tokens[calls], "output_tokens": record.output_tokens[calls]}
