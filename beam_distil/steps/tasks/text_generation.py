"""``TextGeneration`` and ``ChatGeneration``: the general-purpose generation tasks, as in distilabel.

Example::

    TextGeneration(
        llm=OpenAILLM(model="gpt-4o-mini"),
        template="Answer in one word: {{ question }}",
        columns=["question"],
        system_prompt="You are terse.",
    )
    # rows with `question` get `generation` and `model_name`
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Union

from jinja2 import meta
from pydantic import Field, model_validator

from beam_distil.helpers import compile_template, template_environment
from beam_distil.models.base import ChatType
from beam_distil.steps.base import StepColumns
from beam_distil.steps.tasks.base import Task
from beam_distil.steps.tasks.input_checks import string_column

_ROLES = {"system", "user", "assistant", "tool", "developer"}


def is_chat(value: Any) -> bool:
    """Whether ``value`` is a conversation in OpenAI format (``[{"role": ..., "content": ...}]``)."""
    return (
        isinstance(value, list)
        and len(value) > 0
        and all(isinstance(m, dict) and m.get("role") in _ROLES and "content" in m for m in value)
    )


class TextGeneration(Task):
    """Renders ``template`` (Jinja2) with the row's ``columns`` and generates an answer.

    Input columns: ``columns`` (default ``instruction``) and, optionally, ``system_prompt`` (per row, wins over
    the ``system_prompt`` attribute). Output columns: ``generation``, ``model_name``.
    """

    system_prompt: Optional[str] = Field(default=None, description="System message sent with every prompt.")
    use_system_prompt: bool = Field(default=True, description="Send a system message at all.")
    template: str = Field(default="{{ instruction }}", description="Jinja2 template of the user message.")
    columns: Union[str, List[str]] = Field(default="instruction", description="Columns the template uses.")

    @model_validator(mode="after")
    def _check_template_uses_known_columns(self) -> "TextGeneration":
        variables = meta.find_undeclared_variables(template_environment().parse(self.template))
        unknown = sorted(variables - set(self._columns))
        if unknown:
            raise ValueError(
                f"TextGeneration {self.name or ''}: the template uses {unknown}, which are not in `columns`"
                f" {self._columns}; add them to `columns=` or fix the template."
            )
        return self

    @property
    def _columns(self) -> List[str]:
        return [self.columns] if isinstance(self.columns, str) else list(self.columns)

    @property
    def inputs(self) -> StepColumns:
        return {**{column: True for column in self._columns}, "system_prompt": False}

    @property
    def outputs(self) -> StepColumns:
        return ["generation", "model_name"]

    def format_input(self, input: Dict[str, Any]) -> ChatType:
        values = {}
        for column in self._columns:
            if column not in input:
                raise ValueError(f"row has no column {column!r} (columns: {sorted(input)})")
            value = input[column]
            if len(self._columns) == 1 and is_chat(value):
                # A conversation in the single input column is sent as it is, as distilabel does.
                return value
            values[column] = string_column(input, column)
        messages: ChatType = [{"role": "user", "content": compile_template(self.template, keep_trailing_newline=False).render(**values)}]
        system_prompt = input.get("system_prompt") or self.system_prompt
        if self.use_system_prompt and system_prompt:
            messages.insert(0, {"role": "system", "content": system_prompt})
        return messages

    def format_output(self, output: Optional[str], input: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        return {"generation": output}


class ChatGeneration(Task):
    """Continues the conversation in the ``messages`` column. Outputs ``generation`` and ``model_name``."""

    @property
    def inputs(self) -> StepColumns:
        return ["messages"]

    @property
    def outputs(self) -> StepColumns:
        return ["generation", "model_name"]

    def format_input(self, input: Dict[str, Any]) -> ChatType:
        messages = input.get("messages")
        if not is_chat(messages):
            raise ValueError(
                "column 'messages' must be a list of {'role': ..., 'content': ...} dicts (OpenAI format),"
                f" got {messages!r:.80}"
            )
        return messages

    def format_output(self, output: Optional[str], input: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        return {"generation": output}
