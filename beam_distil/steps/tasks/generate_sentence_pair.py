"""``GenerateSentencePair``: a positive (and optionally a negative) sentence for an anchor, for training
embedding models, as in distilabel.

Example::

    GenerateSentencePair(llm=OpenAILLM(model="gpt-4o-mini"), action="paraphrase", triplet=True)
    # rows with `anchor` get `positive`, `negative` and `model_name`

The LLM answers in sections::

    ## Positive
    <the positive sentence>
    ## Negative
    <the negative sentence>

An answer without a ``## Positive`` section gives ``None`` columns; a missing ``## Negative`` gives
``negative=None``. With ``use_default_structured_output`` the answer is a JSON object instead.
"""

from __future__ import annotations

import json
import re
from typing import Any, Dict, Final, Literal, Optional

from pydantic import Field

from beam_distil.helpers import compile_template
from beam_distil.models.base import ChatType
from beam_distil.steps.base import StepColumns
from beam_distil.steps.tasks.base import Task
from beam_distil.steps.tasks.input_checks import string_column

GenerationAction = Literal["paraphrase", "semantically-similar", "query", "answer"]

POSITIVE_NEGATIVE_PAIR_REGEX = re.compile(r"## Positive\s+(.*?)(?:\s+## Negative\s+(.*?))?\s*$", re.DOTALL)

GENERATION_ACTION_SENTENCES: Final[Dict[str, str]] = {
    "paraphrase": "paraphrase",
    "semantically-similar": "be semantically similar to",
    "query": "be a query for",
    "answer": "be an answer for",
}

NEGATIVE_STYLE: Final[Dict[str, str]] = {
    "negative": "may share words with the anchor sentence but must not be related to it",
    "hard-negative": (
        "must be a 'hard negative':\n"
        "- it reuses keywords or phrases of the anchor sentence\n"
        "- its grammar and structure look like the anchor's\n"
        "- it is not related to the anchor sentence, yet could be taken for a match\n"
        "Make it as hard as you can for a model to tell apart from the positive sentence"
    ),
}

# System prompts, ``str.format`` templates with ``{context}`` (``CONTEXT_INTRO`` or ``""``), ``{action_sentence}``
# (a ``GENERATION_ACTION_SENTENCES`` value) and, for triplets, ``{negative_style}`` (a ``NEGATIVE_STYLE`` value).
# They have distilabel's names, so expected prompts can be built the same way, e.g.
# ``POSITIVE_SYSTEM_PROMPT.format(action_sentence="paraphrase", context=CONTEXT_INTRO)``.
POSITIVE_SYSTEM_PROMPT: Final[str] = (
    "You write training pairs for sentence embedding models. Given an anchor sentence, write a positive "
    "sentence.{context} The positive sentence must {action_sentence} the anchor sentence. Answer with exactly one "
    "section: `## Positive`."
)

POSITIVE_NEGATIVE_SYSTEM_PROMPT: Final[str] = (
    "You write training pairs for sentence embedding models. Given an anchor sentence, write a positive "
    "sentence and a negative sentence.{context} The positive sentence must {action_sentence} the anchor sentence, "
    "and the negative sentence {negative_style}. Answer with exactly two sections: `## Positive` and "
    "`## Negative`."
)

CONTEXT_INTRO: Final[str] = " Take the given context into account."

TEMPLATE = """\
{% if context -%}
## Context

{{ context }}

{% endif -%}
## Anchor

{{ anchor }}
"""


class GenerateSentencePair(Task):
    """Generates a ``positive`` sentence for each ``anchor`` and, with ``triplet``, a ``negative`` one.

    Attributes:
        triplet: also generate a negative sentence (default ``False``).
        action: how the positive relates to the anchor: ``paraphrase``, ``semantically-similar``, ``query``
            or ``answer``.
        hard_negative: make the negative close to the anchor in form (only with ``triplet``).
        context: text that guides the generation (not used when empty).

    Input columns:
        - anchor (``str``).

    Output columns:
        - positive (``str``), negative (``str``, with ``triplet``), model_name (``str``).
    """

    triplet: bool = False
    action: GenerationAction
    hard_negative: bool = False
    context: str = Field(default="", description="Text that guides the generation; not used when empty.")

    @property
    def inputs(self) -> StepColumns:
        return ["anchor"]

    @property
    def outputs(self) -> StepColumns:
        return (["positive", "negative"] if self.triplet else ["positive"]) + ["model_name"]

    def format_input(self, input: Dict[str, Any]) -> ChatType:
        anchor = string_column(input, "anchor")
        context = CONTEXT_INTRO if self.context else ""
        action_sentence = GENERATION_ACTION_SENTENCES[self.action]
        if self.triplet:
            system = POSITIVE_NEGATIVE_SYSTEM_PROMPT.format(
                context=context,
                action_sentence=action_sentence,
                negative_style=NEGATIVE_STYLE["hard-negative" if self.hard_negative else "negative"],
            )
        else:
            system = POSITIVE_SYSTEM_PROMPT.format(context=context, action_sentence=action_sentence)
        user = compile_template(TEMPLATE).render(anchor=anchor, context=self.context or None)
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    def _empty(self) -> Dict[str, Any]:
        return {"positive": None, "negative": None} if self.triplet else {"positive": None}

    def format_output(self, output: Optional[str], input: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        if output is None:
            return self._empty()
        if self.use_default_structured_output:
            return self._format_structured_output(output)
        match = POSITIVE_NEGATIVE_PAIR_REGEX.search(output)
        if match is None:
            return self._empty()
        positive, negative = match.groups()
        result: Dict[str, Any] = {"positive": positive.strip() or None}
        if self.triplet:
            result["negative"] = (negative.strip() or None) if negative is not None else None
        return result

    def get_structured_output(self) -> Dict[str, Any]:
        properties = {"positive": {"title": "Positive", "type": "string"}}
        if self.triplet:
            properties["negative"] = {"title": "Negative", "type": "string"}
        return {"title": "Schema", "type": "object", "properties": properties, "required": list(properties)}

    def _format_structured_output(self, output: str) -> Dict[str, Any]:
        try:
            answer = json.loads(output)
        except json.JSONDecodeError:
            return self._empty()
        if not isinstance(answer, dict):
            return self._empty()
        return {
            column: answer.get(column) if isinstance(answer.get(column), str) else None for column in self._empty()
        }
