"""``Task``: a step that formats each row into a prompt, asks its LLM, and parses the answer back into columns.

Subclasses implement ``format_input`` (row -> chat) and ``format_output`` (text -> columns), as in distilabel::

    class Summarize(Task):
        @property
        def inputs(self): return ["text"]
        @property
        def outputs(self): return ["summary", "model_name"]
        def format_input(self, input): return [{"role": "user", "content": f"Summarize: {input['text']}"}]
        def format_output(self, output, input=None): return {"summary": output}

On Beam a Task runs as a batched DoFn that keeps many requests in flight across batches
(``beam_distil.beam.task_dofn``, which generates each row with ``beam_distil.beam.task_engine``: response cache,
LLM call, ``rows_from_output``). A call that still fails after the LLM's retries keeps its row: the output
columns are ``None`` and ``distilabel_metadata["error_<task name>"]`` says why.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Dict, List, Optional

from pydantic import Field, PositiveInt

from beam_distil.models.base import FormattedInput, GenerateOutput, LLM, has_text, why_no_text
from beam_distil.models.structured_output import (
    StructuredOutputSchema,
    call_arguments,
    json_schema_of,
    parse_structured,
    split_structured_input,
)
from beam_distil.runtime_parameters import RuntimeParameter
from beam_distil.rows import DISTILABEL_METADATA_KEY
from beam_distil.steps.base import GeneratorStep, Step, StepInput, StepOutput, columns_as_dict


class Task(Step, ABC):
    """A step backed by an ``LLM``."""

    llm: LLM
    group_generations: bool = Field(
        default=False, description="One row holding lists of the N generations instead of N rows."
    )
    add_raw_output: RuntimeParameter[bool] = Field(
        default=True, description="Keep the LLM's raw text in `distilabel_metadata`."
    )
    add_raw_input: RuntimeParameter[bool] = Field(
        default=True, description="Keep the formatted prompt in `distilabel_metadata`."
    )
    num_generations: RuntimeParameter[PositiveInt] = Field(default=1, description="Generations per input row.")
    use_cache: bool = Field(
        default=True, description="Reuse completions already paid for (the pipeline's response cache)."
    )
    use_default_structured_output: bool = Field(
        default=False,
        description="Constrain the LLM's answer to the task's JSON schema (`get_structured_output`), on backends that can.",
    )

    calls_in_sequence: ClassVar[bool] = False
    """``True`` for tasks whose rows need several calls one after another (``SequentialCallsTask``)."""

    @property
    def is_task(self) -> bool:
        return True

    @abstractmethod
    def format_input(self, input: Dict[str, Any]) -> FormattedInput:
        """The prompt for one row: a chat, a raw text, or distilabel's ``(chat, schema)``."""

    @abstractmethod
    def format_output(self, output: Optional[str], input: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """The columns parsed from one generation (``output`` is ``None`` when the call failed)."""

    def with_dead_letters(self, cache_dir: Optional[str] = None) -> Any:
        """This task as a PTransform giving ``(rows, dead_letters)``, for Beam jobs that route failures::

            rows, failed = pcoll | TextGeneration(llm=...).with_dead_letters()

        ``cache_dir`` (any ``FileSystems`` path): the response cache; an LLM with
        ``use_offline_batch_generation`` needs one, its batch ids are recorded there.
        """
        from beam_distil.beam.step_transforms import TaskWithDeadLetters

        return TaskWithDeadLetters(self, cache_dir=cache_dir)

    def model_post_init(self, __context: Any) -> None:
        super().model_post_init(__context)
        self._give_default_schema_to_llm()

    def _give_default_schema_to_llm(self) -> None:
        # distilabel's Task.load puts the task's default schema on its LLM when the LLM has none of its own. An
        # LLM written the distilabel way reads it there; this task gets its own copy, so that another task
        # sharing the LLM object keeps its own schema. The project's backends take the schema per call instead.
        schema = self.get_structured_output() if self.use_default_structured_output else None
        if schema is None or self.llm.structured_output is not None or self.llm.takes_schema_per_call():
            return
        self.llm = self.llm.model_copy(update={"structured_output": {"format": "json", "schema": schema}})

    def get_structured_output(self) -> Optional[Dict[str, Any]]:
        """The JSON schema of this task's answer, used when ``use_default_structured_output`` is set."""
        return None

    def structured_output_for(self, input: Dict[str, Any]) -> Optional[StructuredOutputSchema]:
        """The schema the answer for ``input`` must follow: the LLM's ``structured_output``, else the task's own
        (with ``use_default_structured_output``), else ``None``: as in distilabel, a schema given to the LLM
        wins over the task's default."""
        if self.llm.structured_output is not None:
            return self.llm.structured_output
        if self.use_default_structured_output:
            return self.get_structured_output()
        return None

    def generation_kwargs(self, input: Dict[str, Any]) -> Dict[str, Any]:
        """The keyword arguments of the generation call for ``input``: the LLM's ``generation_kwargs`` and schema."""
        kwargs = dict(self.llm.generation_kwargs or {})
        schema = self.structured_output_for(input)
        if schema is not None:
            kwargs["structured_output"] = json_schema_of(schema)
        return kwargs

    def load(self) -> None:
        super().load()
        self.llm.load()

    def unload(self) -> None:
        self.llm.unload()
        super().unload()

    def _empty_output(self) -> Dict[str, Any]:
        return {column: None for column in columns_as_dict(self.outputs) if column != "model_name"}

    def _generation_columns(
        self, generation: Optional[str], input: Dict[str, Any], schema: Optional[StructuredOutputSchema]
    ) -> Dict[str, Any]:
        if schema is not None:
            _, invalid = parse_structured(generation, schema)
            if invalid is not None:
                # The task's own "no answer" columns (lists of None for a judge), as for a failed call.
                columns = self._generation_columns(None, input, None)
                columns[DISTILABEL_METADATA_KEY] = {f"error_{self.name}": f"structured output: {invalid}"}
                return columns
        try:
            return self.format_output(generation, input)
        except Exception as error:  # a parser bug or an unexpected answer must not lose the row
            columns = self._empty_output()
            columns[DISTILABEL_METADATA_KEY] = {f"error_{self.name}": f"format_output failed: {error!r}"}
            return columns

    def rows_from_output(
        self,
        input: Dict[str, Any],
        formatted_input: Optional[FormattedInput],
        output: Optional[GenerateOutput],
        error: Optional[str] = None,
    ) -> List[Dict[str, Any]]:
        """The output rows of one input row, in distilabel's layout (one per generation, or one grouped)."""
        generations = output["generations"] if output else [None] * self.num_generations
        input_tokens = output["statistics"]["input_tokens"] if output else [0]
        output_tokens = output["statistics"]["output_tokens"] if output else [0]
        # Backends that can withhold an answer (safety filters) say why, one reason per generation.
        finish_reasons = (output or {}).get("finish_reasons") or []
        inherited_metadata = metadata_as_dict(input.get(DISTILABEL_METADATA_KEY))
        schema = self.structured_output_for(input) if output else None
        per_generation: List[Dict[str, Any]] = []
        for index, generation in enumerate(generations):
            answered = has_text(generation)
            columns = self._generation_columns(generation if answered else None, input, schema)
            metadata = {**inherited_metadata, **columns.pop(DISTILABEL_METADATA_KEY, {})}
            if self.add_raw_output:
                metadata[f"raw_output_{self.name}"] = generation
            if self.add_raw_input:
                # The chat alone: a (chat, schema) input's schema is in the row already, and one Arrow column
                # cannot hold a chat beside a schema.
                metadata[f"raw_input_{self.name}"] = split_structured_input(formatted_input)[0]
            metadata[f"statistics_{self.name}"] = {
                "input_tokens": input_tokens[min(index, len(input_tokens) - 1)],
                "output_tokens": output_tokens[min(index, len(output_tokens) - 1)],
            }
            if error is not None:
                metadata[f"error_{self.name}"] = error
            elif not answered:
                # No usable text: the row is a recorded failure, with the backend's reason when it gave one.
                reason = finish_reasons[index] if index < len(finish_reasons) else None
                metadata[f"error_{self.name}"] = f"no answer: {why_no_text(generation, reason)}"
            columns[DISTILABEL_METADATA_KEY] = metadata
            per_generation.append(columns)
        model_name = self.llm.model_name
        if self.group_generations:
            grouped = {key: [columns.get(key) for columns in per_generation] for key in per_generation[0]}
            return [{**input, **grouped, "model_name": model_name}]
        return [{**input, **columns, "model_name": model_name} for columns in per_generation]

    def process(self, inputs: StepInput) -> StepOutput:  # type: ignore[override]
        """Synchronous path (used outside Beam): one ``generate`` call for the whole batch."""
        rows = []
        for input in inputs:
            prompt = self.format_input(input)
            call_prompt, kwargs = call_arguments(self.llm, prompt, self.generation_kwargs(input))
            [output] = self.llm.generate([call_prompt], num_generations=self.num_generations, **kwargs)
            rows.extend(self.rows_from_output(input, prompt, output))
        yield rows


class GeneratorTask(GeneratorStep, ABC):
    """A generator whose rows its LLM writes (distilabel's ``GeneratorTask``): the LLM loads with the step."""

    llm: LLM

    def load(self) -> None:
        super().load()
        self.llm.load()

    def unload(self) -> None:
        self.llm.unload()
        super().unload()


def metadata_as_dict(metadata: Any) -> Dict[str, Any]:
    """``distilabel_metadata`` as one dict: grouped generations hold a list of dicts, merged key by key."""
    if not metadata:
        return {}
    if isinstance(metadata, dict):
        return metadata
    merged: Dict[str, Any] = {}
    for entry in metadata:
        for key, value in (entry or {}).items():
            merged.setdefault(key, []).append(value)
    return merged
