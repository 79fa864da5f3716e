"""``InstructionBacktranslation``: an LLM rates (1-5) how well a text answers an instruction, as in distilabel.

This is the self-curation step of instruction backtranslation: the LLM judges whether ``generation`` is a good
example of how an AI assistant should answer ``instruction``. Example::

    InstructionBacktranslation(llm=OpenAILLM(model="gpt-4o-mini"))
    # rows with `instruction` and `generation` get `score` (1-5), `reason` and `model_name`

The LLM is asked to reason first and end with a ``Score: <rating>`` line. The answer is parsed leniently: the
last ``Score: n`` (bold, ``4/5`` and similar are read) gives ``score``, the text before it gives ``reason`` (a
leading ``Reasoning:`` label is dropped). An answer without a score from 1 to 5 gives ``None`` for both.

References:
    - `Self-Alignment with Instruction Backtranslation <https://arxiv.org/abs/2308.06259>`_
"""

from __future__ import annotations

import re
from typing import Any, Dict, Optional


from beam_distil.helpers import compile_template
from beam_distil.models.base import ChatType
from beam_distil.steps.base import StepColumns
from beam_distil.steps.tasks.base import Task
from beam_distil.steps.tasks.input_checks import string_column

TEMPLATE = """\
Below are a user's instruction and a candidate answer to it. Judge whether the answer is a good example of \
how an AI assistant should reply to that instruction, and rate it on this 5-point scale:

1: The answer is incomplete, vague, off-topic, controversial or not what was asked. It may miss content, \
contain only an outline, be a numbered list where prose was expected, or read like a personal blog post or \
web page (with promotional text, navigation, or links to other material).
2: The answer addresses most of what the user asked but not the request itself. It gives a general approach \
instead of the solution the user wanted.
3: The answer is helpful and covers the user's basic request, but it does not sound like an AI assistant: it \
reads as if taken from a blog, a web page or a search result, written in the first person or with personal \
experiences or opinions.
4: The answer is written from an AI assistant's point of view and focuses on the instruction. It is complete, \
clear and comprehensive, well organized and helpful, with only small room for improvement, e.g. in \
conciseness or focus.
5: The answer is a perfect AI assistant reply: clearly focused on answering the instruction, with no \
irrelevant sentences, and insightful, expert, engaging and of high quality.

First explain briefly how you arrived at your rating, then write "Score: <rating>" on the last line.

<instruction>
{{ instruction }}
</instruction>

<answer>
{{ generation }}
</answer>
"""


# "Score: 4", "**Score:** 4", "Score: 4/5", "score = [4]"; the digit must stand alone (not "Score: 10").
_SCORE = re.compile(r"[*_]*\bscore\b[*_]*[ \t]*[:=][ \t*_\[(]*([1-5])(?!\d|\.\d)(?:[ \t]*/[ \t]*5)?", re.IGNORECASE)
_REASON_LABEL = re.compile(r"^[#\s*_]*(?:reasoning|reason|explanation|rationale)[\s*_]*:[\s*_]*", re.IGNORECASE)


class InstructionBacktranslation(Task):
    """Rates how good an example ``generation`` is of an AI assistant's answer to ``instruction``.

    Input columns:
        - instruction (``str``): the instruction.
        - generation (``str``): the text to rate as an answer to it.

    Output columns:
        - score (``Optional[int]``): 1-5, ``None`` when the answer has no readable score.
        - reason (``Optional[str]``): the LLM's reasoning for the score.
        - model_name (``str``): the rater's model.
    """

    @property
    def inputs(self) -> StepColumns:
        return ["instruction", "generation"]

    @property
    def outputs(self) -> StepColumns:
        return ["score", "reason", "model_name"]

    def format_input(self, input: Dict[str, Any]) -> ChatType:
        content = compile_template(TEMPLATE).render(
            instruction=string_column(input, "instruction"), generation=string_column(input, "generation")
        )
        return [{"role": "user", "content": content}]

    def format_output(self, output: Optional[str], input: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        if not isinstance(output, str):
            return {"score": None, "reason": None}
        matches = list(_SCORE.finditer(output))
        if not matches:
            return {"score": None, "reason": None}
        last = matches[-1]
        reason = _REASON_LABEL.sub("", output[: last.start()].strip(), count=1).strip()
        return {"score": int(last.group(1)), "reason": reason or None}
