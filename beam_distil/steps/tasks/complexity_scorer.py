"""``ComplexityScorer``: an LLM ranks a list of instructions by how complex they are, as in distilabel.

Example::

    ComplexityScorer(llm=OpenAILLM(model="gpt-4o-mini"))
    # rows with `instructions` (list of str) get `scores` (one float per instruction) and `model_name`

The LLM is asked to answer one line per instruction::

    [1] Score: 2
    [2] Score: 1

The answer is parsed leniently: ``scores`` always has one entry per instruction, matched by the bracketed
number (not by the line position, so blank lines or a preamble do not shift the scores), and an instruction
whose line is missing or unreadable gets ``None``.

References:
    - `What Makes Good Data for Alignment? A Comprehensive Study of Automatic Data Selection in Instruction
      Tuning <https://arxiv.org/abs/2312.15685>`_
"""

from __future__ import annotations

import json
import re
from typing import Any, Dict, List, Optional


from beam_distil.helpers import compile_template
from beam_distil.models.base import ChatType
from beam_distil.steps.base import StepColumns
from beam_distil.steps.tasks.base import Task
from beam_distil.steps.tasks.input_checks import texts_column

TEMPLATE = """\
Sort the questions below by how difficult and complex they are, giving each one a score from 1 to \
{{ instructions | length }}.
A question that is too complex for you to answer may get a score of {{ (instructions | length) + 1 }}.
Reply with one line per question and nothing else, in this format:
[1] Score: <score>
[2] Score: <score>
...
{% for instruction in instructions %}
[{{ loop.index }}] {{ instruction }}
{%- endfor %}
"""


# "[2] Score: 3", also "**[2] Score:** 3", "[2] score = 3", "- [2] Score: 3.5".
_SCORE_LINE = re.compile(
    r"^[ \t>*_\-]*\[[ \t]*(\d+)[ \t]*\][ \t*_]*score[ \t*_]*[:=][ \t*_]*(\d+(?:\.\d+)?)(?![\d.])",
    re.IGNORECASE | re.MULTILINE,
)


def parse_score_lines(output: str, count: int) -> List[Optional[float]]:
    """One score per item, read from ``[k] Score: x`` lines (the first line for each ``k`` wins)."""
    scores: List[Optional[float]] = [None] * count
    seen = set()
    for match in _SCORE_LINE.finditer(output):
        number = int(match.group(1))
        if 1 <= number <= count and number not in seen:
            seen.add(number)
            scores[number - 1] = float(match.group(2))
    return scores


def parse_score_json(output: str, count: int) -> List[Optional[float]]:
    """One score per item from a JSON answer ``{"scores": [...]}`` (padded or cut to ``count``)."""
    scores: List[Optional[float]] = [None] * count
    try:
        answer = json.loads(output)
    except json.JSONDecodeError:
        return scores
    values = answer.get("scores") if isinstance(answer, dict) else None
    if not isinstance(values, list):
        return scores
    for index, value in enumerate(values[:count]):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            scores[index] = float(value)
    return scores


SCORES_SCHEMA: Dict[str, Any] = {
    "type": "object",
    "properties": {"scores": {"type": "array", "items": {"type": "integer"}, "title": "Scores"}},
    "required": ["scores"],
    "title": "Scores",
}


class ComplexityScorer(Task):
    """Scores each of a row's ``instructions`` by complexity, relative to the others.

    Input columns:
        - instructions (``List[str]``): the instructions to score.

    Output columns:
        - scores (``List[Optional[float]]``): one score per instruction (1 = simplest, ``len + 1`` = too complex
          to answer), ``None`` where the answer could not be read.
        - model_name (``str``): the scorer's model.

    With ``use_default_structured_output=True`` the LLM is asked for JSON ``{"scores": [int, ...]}`` instead.
    """

    @property
    def inputs(self) -> StepColumns:
        return ["instructions"]

    @property
    def outputs(self) -> StepColumns:
        return ["scores", "model_name"]

    def format_input(self, input: Dict[str, Any]) -> ChatType:
        instructions = texts_column(input, "instructions")
        return [{"role": "user", "content": compile_template(TEMPLATE).render(instructions=instructions)}]

    def get_structured_output(self) -> Dict[str, Any]:
        """JSON answer: ``{"scores": [one integer per instruction, in order]}``."""
        return SCORES_SCHEMA

    def format_output(self, output: Optional[str], input: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        instructions = (input or {}).get("instructions")
        if not isinstance(instructions, (list, tuple)):
            return {"scores": None}
        if not isinstance(output, str):
            return {"scores": [None] * len(instructions)}
        if self.use_default_structured_output:
            return {"scores": parse_score_json(output, len(instructions))}
        return {"scores": parse_score_lines(output, len(instructions))}
