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
from beam_distil.steps.tasks.input_checks import required_column, string_column

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

    A column may hold any value the template can use, a list included::

        TextGeneration(llm=llm, columns=["question", "options"],
                       template="{{ question }}\n{% for option in options %}- {{ option }}\n{% endfor %}")
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
        """The rendered template as the user message, after the system prompt (the row's, else the task's).

        The template gets each column's value as it is, so a list column can be looped over (``{% for item in
        items %}``). With the default ``columns=["instruction"]`` the instruction must be a string; a
        conversation there is refused, as distilabel does: ``ChatGeneration`` takes conversations.
        """
        if self._columns == ["instruction"]:
            instruction = required_column(input, "instruction")
            if is_chat(instruction):
                raise ValueError(
                    f"{self.name}: column 'instruction' holds a conversation; TextGeneration renders a template"
                    " from text. Use ChatGeneration with the conversation in a `messages` column"
                    " (input_mappings={'messages': 'instruction'})."
                )
            string_column(input, "instruction")
        values = {column: required_column(input, column) for column in self._columns}
        content = compile_template(self.template, keep_trailing_newline=False).render(**values)
        messages: ChatType = [{"role": "user", "content": content}]
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
        """The conversation as it is. It must be in OpenAI format and end with a user message (there is
        nothing to answer after an assistant's turn), else ``ValueError``, as in distilabel; in a pipeline the
        row is kept with ``None`` outputs and the reason in ``error_<name>``, and counted as failed."""
        messages = required_column(input, "messages")
        if not is_chat(messages):
            raise ValueError(
                "column 'messages' must be a list of {'role': ..., 'content': ...} dicts (OpenAI format),"
                f" got {messages!r:.80}"
            )
        if messages[-1]["role"] != "user":
            raise ValueError(
                f"{self.name}: the last message must be from the user (it is from {messages[-1]['role']!r});"
                " drop the trailing turns, or add the user's next message."
            )
        return messages

    def format_output(self, output: Optional[str], input: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        return {"generation": output}
