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
(``beam_distil.beam.sequential_calls``). Raw output, raw input and statistics in ``distilabel_metadata`` cover
every call of the row (lists of the raw outputs and prompts, summed tokens). Only one generation is asked for
per call (``num_generations`` is not used).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar, Dict

from beam_distil.beam.sequential_calls import Conversation, NoAnswer
from beam_distil.steps.base import StepInput, StepOutput
from beam_distil.steps.tasks.base import Task

__all__ = ["NoAnswer", "SequentialCallsTask"]


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

    def process(self, inputs: StepInput) -> StepOutput:  # type: ignore[override]
        """Synchronous path (used outside Beam): the rows of the batch are run concurrently."""
        from beam_distil.beam.task_engine import generate_batch
        from beam_distil.models.event_loop import run_coroutine

        results = run_coroutine(generate_batch(self, list(inputs), self.llm))
        yield [row for result in results for row in result.rows]
