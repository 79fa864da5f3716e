"""``EvolQuality``: rewrite a response to an instruction into a better one, several times (Deita).

Example::

    EvolQuality(llm=OpenAILLM(model="gpt-4o-mini"), num_evolutions=2)
    # rows with `instruction` and `response` get `evolved_response` and `model_name`

Each evolution sends the instruction and the current response inside a mutation prompt picked at random
from ``mutation_templates`` (``<PROMPT>`` stands for the instruction, ``<RESPONSE>`` for the response, as in
distilabel); the answer, as it is, becomes the new response. The picks come from a ``random.Random`` seeded
with ``seed`` and the row's content, so runs are reproducible. A failed call stops the row: its output
column is ``None`` and ``distilabel_metadata["error_<task name>"]`` says why. As in distilabel,
``distilabel_metadata`` holds ``statistics_<task name>``: ``{"input_tokens": [...], "output_tokens": [...]}``, one
entry per evolution call (no raw prompts or answers).

References:
    - `What Makes Good Data for Alignment? A Comprehensive Study of Automatic Data Selection in Instruction
      Tuning <https://arxiv.org/abs/2312.15685>`_
"""

from __future__ import annotations

import random
from typing import Any, Dict, Generator, List, Optional, Union

from pydantic import Field, PositiveInt, field_validator

from beam_distil.helpers import compile_template, seeded_random
from beam_distil.models.base import ChatType
from beam_distil.runtime_parameters import RuntimeParameter
from beam_distil.steps.base import StepColumns
from beam_distil.steps.tasks.evol_instruct import PROMPT_PLACEHOLDER, check_mutation_templates, fill_placeholders
from beam_distil.steps.tasks.input_checks import string_column
from beam_distil.steps.tasks.sequential import ConversationRecord, SequentialCallsTask, call_statistics

RESPONSE_PLACEHOLDER = "<RESPONSE>"

REWRITE_TEMPLATE = """\
You rewrite the response an AI assistant gave to a prompt, to make it better.
The rewritten response must make sense and be something a person can understand.
Keep every non-text part (tables, code) of the prompt and of the response.
How to improve it: {{ method }}
Add no more than 10 to 20 words; do not let the rewritten response become verbose.
Never write '#Given Response#', '#Rewritten Response#', 'given response' or 'rewritten response' in your answer.
#Given Prompt#:
<PROMPT>
#Given Response#:
<RESPONSE>
#Rewritten Response#:
"""

_METHODS = {
    "HELPFULNESS": "make the response more helpful to the user.",
    "RELEVANCE": "make the response more relevant to the prompt.",
    "DEEPENING": "make the response go more in depth.",
    "CREATIVITY": "make the response more creative.",
    "DETAILS": "make the response more detailed.",
}


MUTATION_TEMPLATES: Dict[str, str] = {
    name: compile_template(REWRITE_TEMPLATE).render(method=method) for name, method in _METHODS.items()
}
"""``EvolQuality``'s mutations (``<PROMPT>``: the instruction, ``<RESPONSE>``: the response)."""


class EvolQuality(SequentialCallsTask):
    """Evolves each ``response`` to its ``instruction`` ``num_evolutions`` times with random mutations.

    Attributes:
        num_evolutions: how many evolutions each response goes through.
        store_evolutions: keep every evolved response (``evolved_responses``) instead of the last one.
        include_original_response: with ``store_evolutions``, start the list with the original response.
        mutation_templates: name -> prompt with ``<PROMPT>`` and ``<RESPONSE>`` placeholders.
        seed: seeds the mutation picks, together with the row's instruction and response.

    Input columns:
        - instruction (``str``): the instruction the response answers.
        - response (``str``): the response to improve.

    Output columns:
        - evolved_response (``str``) or, with ``store_evolutions``, evolved_responses (``List[str]``).
        - model_name (``str``).
    """

    num_evolutions: PositiveInt
    store_evolutions: bool = False
    include_original_response: bool = False
    mutation_templates: Dict[str, str] = Field(default_factory=lambda: dict(MUTATION_TEMPLATES))
    seed: RuntimeParameter[int] = Field(default=42, description="Seeds the random choice of mutations.")

    @field_validator("mutation_templates")
    @classmethod
    def _check_mutation_templates(cls, templates: Dict[str, str]) -> Dict[str, str]:
        return check_mutation_templates(templates, [PROMPT_PLACEHOLDER, RESPONSE_PLACEHOLDER])

    @property
    def mutation_templates_names(self) -> List[str]:
        return list(self.mutation_templates)

    @property
    def inputs(self) -> StepColumns:
        return ["instruction", "response"]

    @property
    def outputs(self) -> StepColumns:
        return ["evolved_responses" if self.store_evolutions else "evolved_response", "model_name"]

    def _strings(self, input: Dict[str, Any]) -> tuple:
        values = []
        for column in ("instruction", "response"):
            values.append(string_column(input, column))
        return tuple(values)

    def _mutate(self, instruction: str, response: str, rng: random.Random) -> ChatType:
        mutation = rng.choice(self.mutation_templates_names)
        content = fill_placeholders(
            self.mutation_templates[mutation], {PROMPT_PLACEHOLDER: instruction, RESPONSE_PLACEHOLDER: response}
        )
        return [{"role": "user", "content": content}]

    def format_input(self, input: Union[str, Dict[str, Any]]) -> ChatType:  # type: ignore[override]
        """A string is sent as the user message (as distilabel); a row gives its first mutation prompt."""
        if isinstance(input, str):
            return [{"role": "user", "content": input}]
        instruction, response = self._strings(input)
        return self._mutate(instruction, response, seeded_random(self.seed, instruction, response))

    def format_output(  # type: ignore[override]
        self, responses: Union[str, List[Optional[str]], None], input: Optional[Dict[str, Any]] = None
    ) -> Dict[str, Any]:
        """The output column from the evolved responses, as in distilabel; ``None`` gives a ``None`` column."""
        if isinstance(responses, str):
            responses = [responses]
        if self.store_evolutions:
            return {"evolved_responses": list(responses) if responses else None}
        return {"evolved_response": responses[-1] if responses else None}

    def failed_output(self, input: Dict[str, Any]) -> Dict[str, Any]:
        return self.format_output(None)

    def conversation_metadata(self, record: ConversationRecord) -> Dict[str, Any]:
        """distilabel's layout: only ``statistics_<name>``, the tokens of each evolution call."""
        return {f"statistics_{self.name}": call_statistics(record)}

    def conversation(self, input: Dict[str, Any]) -> Generator[ChatType, str, Dict[str, Any]]:
        instruction, response = self._strings(input)
        rng = seeded_random(self.seed, instruction, response)
        responses = [response]
        for _ in range(self.num_evolutions):
            responses.append((yield self._mutate(instruction, responses[-1], rng)))
        if self.store_evolutions:
            return self.format_output(responses if self.include_original_response else responses[1:])
        return self.format_output(responses[-1:])
