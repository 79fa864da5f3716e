"""``SelfInstruct``: write several user queries for an AI application from a seed text, as in distilabel.

Example::

    SelfInstruct(llm=OpenAILLM(model="gpt-4o-mini"), num_instructions=3, application_description="A cooking assistant")
    # rows with `input` get `instructions` (a list of str) and `model_name`

The LLM is asked for one query per line; every non-blank line of its answer is one instruction (no answer
gives ``None``).

References:
    - `Self-Instruct: Aligning Language Models with Self-Generated Instructions <https://arxiv.org/abs/2212.10560>`_
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from pydantic import Field, PositiveInt

from beam_distil.helpers import compile_template
from beam_distil.models.base import ChatType
from beam_distil.steps.base import StepColumns
from beam_distil.steps.tasks.base import Task
from beam_distil.steps.tasks.input_checks import string_column

DEFAULT_CRITERIA = (
    "Use a wide variety of verbs; do not repeat them.\n"
    "Keep each query to one or two sentences that an AI text generator can answer.\n"
    "Make each query self-contained: it must make sense on its own.\n"
    'Mix questions (e.g. "Why does x matter?") with requests (e.g. "Explain how x works.").'
)

TEMPLATE = """\
# Task
Write {{ num_instructions }} user queries that the AI application described below could receive, each \
related to the given context. Vary the verbs and the sentence structures, within what a text model can do.

# Criteria for the queries
{{ criteria_for_query_generation }}

# AI application
{{ application_description }}

# Context
{{ input }}

# Answer format
Write only the queries, one per line, with no numbering and nothing else.
"""


class SelfInstruct(Task):
    """Generates ``num_instructions`` instructions related to the ``input`` seed text.

    Attributes:
        num_instructions: how many instructions to ask for (default 5).
        criteria_for_query_generation: what the queries must be like (default: the paper's criteria).
        application_description: the AI application the instructions are for (default ``AI assistant``).

    Input columns:
        - input (``str``): the seed text.

    Output columns:
        - instructions (``List[str]``): the non-blank lines of the answer (``None`` when there is no answer).
        - model_name (``str``).
    """

    num_instructions: PositiveInt = Field(default=5, description="How many instructions to ask for.")
    criteria_for_query_generation: str = Field(default=DEFAULT_CRITERIA, description="What the queries must be like.")
    application_description: str = Field(default="AI assistant", description="The AI application the queries are for.")

    @property
    def inputs(self) -> StepColumns:
        return ["input"]

    @property
    def outputs(self) -> StepColumns:
        return ["instructions", "model_name"]

    def format_input(self, input: Dict[str, Any]) -> ChatType:
        seed = string_column(input, "input")
        content = compile_template(TEMPLATE).render(
            input=seed,
            application_description=self.application_description,
            criteria_for_query_generation=self.criteria_for_query_generation,
            num_instructions=self.num_instructions,
        )
        return [{"role": "user", "content": content}]

    def format_output(self, output: Optional[str], input: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        if output is None:
            return {"instructions": None}
        return {"instructions": [line for line in output.split("\n") if line.strip() != ""]}
