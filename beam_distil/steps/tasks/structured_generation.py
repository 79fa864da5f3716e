"""``StructuredGeneration``: generates an answer that follows a JSON schema given per row, as in distilabel.

Example::

    rows = [{"instruction": "Create a fantasy character.",
             "structured_output": {"format": "json", "schema": Character.model_json_schema()}}]
    StructuredGeneration(llm=OpenAILLM(model="gpt-4o-mini"))
    # `generation` holds the JSON text; an answer that does not follow the schema gives None and the
    # validation error in distilabel_metadata["error_<step>"]

``format_input`` returns distilabel's ``(chat, schema)``. The project's backends take that schema per call, so
one LLM serves rows with different schemas; an LLM written the distilabel way receives the tuple as it is (see
``beam_distil.models.structured_output.call_arguments``). ``raw_input_<name>`` keeps the chat alone.
"""

from __future__ import annotations

import warnings
from typing import Any, Dict, Optional, Tuple

from pydantic import Field

from beam_distil.models.base import ChatType
from beam_distil.models.structured_output import StructuredOutputSchema
from beam_distil.steps.base import StepColumns
from beam_distil.steps.tasks.base import Task
from beam_distil.steps.tasks.input_checks import string_column


class StructuredGeneration(Task):
    """Answers each row's ``instruction`` following the row's ``structured_output`` schema.

    Attributes:
        use_system_prompt: send the row's ``system_prompt`` column as a system message (then an input column);
            a row without one is sent without it, with a warning, as in distilabel.
        system_prompt: beam_distil's addition: a system message for every row (a row's ``system_prompt``
            wins when ``use_system_prompt`` is on).

    Input columns:
        - system_prompt (``str``): only with ``use_system_prompt=True``.
        - instruction (``str``).
        - structured_output (``Dict``): a JSON schema, or distilabel's ``{"format": "json", "schema": ...}``;
          ``None`` in a row means the LLM's own ``structured_output``.

    Output columns: ``generation`` (the JSON text), ``model_name``.
    """

    use_system_prompt: bool = Field(default=False, description="Send the row's `system_prompt` column.")
    system_prompt: Optional[str] = Field(default=None, description="System message sent with every prompt.")

    @property
    def inputs(self) -> StepColumns:
        columns = ["instruction", "structured_output"]
        return ["system_prompt", *columns] if self.use_system_prompt else columns

    @property
    def outputs(self) -> StepColumns:
        return ["generation", "model_name"]

    def structured_output_for(self, input: Dict[str, Any]) -> Optional[StructuredOutputSchema]:
        return input.get("structured_output") or super().structured_output_for(input)

    def format_input(self, input: Dict[str, Any]) -> Tuple[ChatType, Optional[StructuredOutputSchema]]:  # type: ignore[override]
        """``(chat, schema)``: the instruction (after the system prompt, if any) and the row's schema."""
        messages: ChatType = [{"role": "user", "content": string_column(input, "instruction")}]
        system_prompt = self.system_prompt
        if self.use_system_prompt:
            if "system_prompt" in input:
                system_prompt = string_column(input, "system_prompt")
            else:
                warnings.warn(
                    f"{self.name}: use_system_prompt=True but the row has no `system_prompt` column;"
                    " it is sent without one.",
                    UserWarning,
                    stacklevel=2,
                )
        if system_prompt:
            messages.insert(0, {"role": "system", "content": system_prompt})
        return messages, input.get("structured_output")

    def format_output(self, output: Optional[str], input: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        return {"generation": output}
