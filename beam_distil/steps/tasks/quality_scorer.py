"""``QualityScorer``: an LLM scores several responses to one instruction by quality, as in distilabel.

Example::

    QualityScorer(llm=OpenAILLM(model="gpt-4o-mini"))
    # rows with `instruction` and `responses` (list of str) get `scores` (one float per response), `model_name`

The LLM answers one ``[k] Score: x`` line per response, parsed as in ``ComplexityScorer``: ``scores`` always has
one entry per response, matched by the bracketed number, ``None`` where the answer could not be read. A
``None`` response (a failed generation) is shown as ``(no answer)`` and its score is always ``None``.

References:
    - `What Makes Good Data for Alignment? A Comprehensive Study of Automatic Data Selection in Instruction
      Tuning <https://arxiv.org/abs/2312.15685>`_
"""

from __future__ import annotations

from typing import Any, Dict, Optional


from beam_distil.helpers import compile_template
from beam_distil.models.base import ChatType
from beam_distil.steps.base import StepColumns
from beam_distil.steps.tasks.base import Task
from beam_distil.steps.tasks.complexity_scorer import SCORES_SCHEMA, parse_score_json, parse_score_lines
from beam_distil.steps.tasks.input_checks import string_column, texts_column

NO_ANSWER = "(no answer)"

TEMPLATE = """\
Score the responses below to the question by their quality, taking into account how helpful, relevant, \
accurate, deep, creative and detailed each one is.
Give each response a score from 1 to {{ responses | length }}; keep {{ (responses | length) + 1 }} for a \
response so well written that it cannot be improved.
Reply with one line per response and nothing else, in this format:
[1] Score: <score>
[2] Score: <score>
...
#Question#: {{ instruction }}
#Response List#:
{% for response in responses %}
[{{ loop.index }}] {{ response }}
{%- endfor %}
"""


class QualityScorer(Task):
    """Scores each of the ``responses`` to an ``instruction`` by quality.

    Input columns:
        - instruction (``str``): the instruction the responses answer.
        - responses (``List[Optional[str]]``): the responses to score.

    Output columns:
        - scores (``List[Optional[float]]``): one score per response, ``None`` where unreadable.
        - model_name (``str``): the scorer's model.

    With ``use_default_structured_output=True`` the LLM is asked for JSON ``{"scores": [int, ...]}`` instead.
    """

    @property
    def inputs(self) -> StepColumns:
        return ["instruction", "responses"]

    @property
    def outputs(self) -> StepColumns:
        return ["scores", "model_name"]

    def format_input(self, input: Dict[str, Any]) -> ChatType:
        instruction = string_column(input, "instruction")
        responses = texts_column(input, "responses", allow_none=True)
        content = compile_template(TEMPLATE).render(
            instruction=instruction, responses=[NO_ANSWER if r is None else r for r in responses]
        )
        return [{"role": "user", "content": content}]

    def get_structured_output(self) -> Dict[str, Any]:
        """JSON answer: ``{"scores": [one integer per response, in order]}``."""
        return SCORES_SCHEMA

    def format_output(self, output: Optional[str], input: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        responses = (input or {}).get("responses")
        if not isinstance(responses, (list, tuple)):
            return {"scores": None}
        if not isinstance(output, str):
            return {"scores": [None] * len(responses)}
        if self.use_default_structured_output:
            scores = parse_score_json(output, len(responses))
        else:
            scores = parse_score_lines(output, len(responses))
        return {"scores": [None if response is None else score for response, score in zip(responses, scores)]}
