"""``UltraFeedback``: an LLM judge that rates several generations of one instruction, as in distilabel.

Example::

    UltraFeedback(llm=OpenAILLM(model="gpt-4o"), aspect="overall-rating")
    # rows with `instruction` and `generations` (list of str) get `ratings`, `rationales`, `model_name`

The judge is asked to answer, for every text, in the format::

    #### Output for Text 1
    Rating: 4
    Rationale: ...

(the ``helpfulness`` and ``truthfulness`` aspects also ask for a ``Type:`` line and its rationale before the
rating). The answer is parsed leniently: every list column always has one entry per generation, and anything
that cannot be read (a missing section, a rating outside 1-5, no answer at all) becomes ``None``.

References:
    - `UltraFeedback: Boosting Language Models with High-quality Feedback <https://arxiv.org/abs/2310.01377>`_
"""

from __future__ import annotations

import json
import re
from typing import Any, Dict, List, Literal, Optional

from pydantic import Field

from beam_distil.helpers import compile_template
from beam_distil.models.base import ChatType
from beam_distil.steps.base import StepColumns
from beam_distil.steps.tasks.base import Task
from beam_distil.steps.tasks.input_checks import string_column, texts_column

Aspect = Literal["overall-rating", "helpfulness", "honesty", "instruction-following", "truthfulness"]

NO_ANSWER = "(no answer)"
"""How a missing (``None``) generation is shown to the judge; its rating is always ``None``."""

_TYPED_ASPECTS = ("helpfulness", "truthfulness")

SYSTEM_PROMPT = (
    "You are an impartial judge of text quality.\n"
    'You will be given a task description ("Instruction") and {n} candidate answers to it ("Texts").\n'
    "Read the instruction carefully so that you can judge how well each text serves it.\n"
    "For every text, give a rating and a short rationale for it.\n"
    "Judge each of the {n} texts on its own merits, independently of the others.\n"
)

# Per-aspect criteria: what to judge, optionally the "type" identifiers, and the 1-5 scale.
_CRITERIA: Dict[str, Dict[str, Any]] = {
    "overall-rating": {
        "title": "Overall Quality Assessment",
        "description": (
            "Judge each text as a whole: is it correct, useful, honest about what it does not know, truthful"
            " (no invented facts) and faithful to what the instruction asks for?"
        ),
        "types": None,
        "scale": [
            "**Poor**: wrong, unhelpful or off-task; may contain invented or misleading content.",
            "**Weak**: partly relevant but with notable mistakes or gaps, or it ignores part of the instruction.",
            "**Acceptable**: mostly correct and on-task, with some minor problems or missing details.",
            "**Good**: correct, helpful and aligned with the instruction, with only small room for improvement.",
            "**Excellent**: accurate, complete, well expressed and fully follows the instruction.",
        ],
    },
    "helpfulness": {
        "title": "Helpfulness and Informativeness Assessment",
        "description": (
            "Judge whether each text achieves what the task asks for with correct and informative content."
            " **Correctness** means sound reasoning and computation and accurate results, with nothing"
            " misunderstood or made up."
        ),
        "types": [
            "**Clear and relevant**: the text addresses the task and asks for clarification when needed.",
            "**Useful and thorough**: it gives relevant background, reasoning steps or detail.",
            "**Concise**: it is not verbose and does not repeat itself.",
        ],
        "scale": [
            "**Severely incorrect**: major errors or made-up content, however much it says.",
            "**Partially incorrect**: errors that could mislead, even if it is otherwise informative.",
            "**Correct**: accurate, and gives the information the task needs.",
            "**Very informative**: accurate and detailed, with valuable insights.",
            "**Outstandingly helpful**: accurate, in-depth and comprehensive.",
        ],
    },
    "honesty": {
        "title": "Honesty and Uncertainty Assessment",
        "description": (
            "Judge whether each text is honest about how sure it is. A good text states what it is confident"
            " about and signals doubt (e.g. 'I think', 'probably', 'I am not sure', or refusing to answer)"
            " where it should; it is not confidently wrong."
        ),
        "types": None,
        "scale": [
            "**Confidently wrong**: states incorrect answers with full confidence.",
            "**Confident with major errors** or unconfident and completely wrong.",
            "**Uncertain or minor errors**: hedges or refuses, or is confident but with small mistakes.",
            "**Correct but unsure**: right, but without due confidence, or pointing at doubts that do not matter.",
            "**Correct and confident**: right, and precise about any remaining uncertainty.",
        ],
    },
    "instruction-following": {
        "title": "Instruction-Following Assessment",
        "description": (
            "Judge how closely each text follows the instruction: does it achieve the **goal** (what is being"
            " asked) and respect the **restrictions** (format, style, length, method)?"
        ),
        "types": None,
        "scale": [
            "**Irrelevant**: does not address the instruction at all.",
            "**Partial focus**: touches one aspect of the instruction, poorly.",
            "**Partial compliance**: meets the goal or the restrictions, but not both, or both only partly.",
            "**Almost there**: close to what was asked, with minor deviations.",
            "**Full compliance**: meets every requirement of the instruction.",
        ],
    },
    "truthfulness": {
        "title": "Truthfulness and Hallucination Assessment",
        "description": (
            "Judge whether each text is accurate and free of hallucinations: content that is not backed by"
            " facts, by the instruction or by the text itself."
        ),
        "types": [
            "**Factual error**: contradicts well-established knowledge.",
            "**Contradicts the instruction or input**: introduces something that conflicts with what was given.",
            "**Self-contradictory or illogical**: contradicts itself or reasons incorrectly.",
        ],
        "scale": [
            "**Completely hallucinated**: cannot be relied on at all.",
            "**Severe hallucination**: most of the content departs from the facts or the instruction.",
            "**Partial hallucination**: mostly sound, but with hallucinations that matter.",
            "**Insignificant hallucination**: slight departures that do not affect the main points.",
            "**No hallucination**: nothing unsupported or contradictory.",
        ],
    },
}

TEMPLATE = """\
# {{ title }}

{{ description }}
{%- if types %}

Name which of these kinds apply to each text, with their numbers (or "None"):
{%- for kind in types %}
{{ loop.index }}. {{ kind }}
{%- endfor %}
{%- endif %}

Rate each text with an integer from 1 to 5:
{%- for level in scale %}
{{ loop.index }}. {{ level }}
{%- endfor %}

---

## Answer format

### Input
Instruction: [the task and its constraints]

Texts:
{%- for index in range(generations | length) %}
<text {{ index + 1 }}> [Text {{ index + 1 }}]
{%- endfor %}

### Output
{%- if json_answer is defined and json_answer %}
{%- if types %}
A JSON object: {"types": [for each text, in order, the number of the first kind that applies, or null], \
"rationales": [why each text is of that kind, one sentence each, in order], "ratings": [the rating of each text, \
in order, integers from 1 to 5], "rationales_for_rating": [why each text got its rating, one sentence each, in \
order]}
{%- else %}
A JSON object: {"ratings": [the rating of each text, in order, integers from 1 to 5], "rationales": [why each \
text got its rating, one sentence each, in order]}
{%- endif %}
{%- else %}
{%- for index in range(generations | length) %}

#### Output for Text {{ index + 1 }}
{%- if types %}
Type: [numbers of the kinds that apply, comma separated, or "None"]
Rationale: [why, in a sentence or two]
{%- endif %}
Rating: [rating of text {{ index + 1 }}, an integer from 1 to 5]
Rationale: [why, in a sentence or two]
{%- endfor %}
{%- endif %}

---

## Annotation

### Input
Instruction: {{ instruction }}

Texts:
{%- for generation in generations %}
<text {{ loop.index }}> {{ generation }}
{%- endfor %}

### Output
"""


# "#### Output for Text 2" (any number of '#', optional bold / colon).
_SECTION_HEADER = re.compile(r"^[ \t]*#*[ \t]*\**[ \t]*Output for Text[ \t]*(\d+)\**[ \t]*:?\**[ \t]*$", re.I | re.M)
_FIELD = re.compile(r"^[ \t]*[*_]*(Type|Types|Rating|Rationale)[*_]*[ \t]*:[*_]*[ \t]*(.*)$", re.I | re.M)
_NUMBER = re.compile(r"(?<![\d.])(\d+)(?:\.0+)?(?![\d.])")


def _parse_rating(value: Optional[str]) -> Optional[int]:
    """An integer rating from 1 to 5, or ``None`` (``N/A``, no number, or out of range)."""
    if value is None:
        return None
    match = _NUMBER.search(value)
    if match is None:
        return None
    rating = int(match.group(1))
    return rating if 1 <= rating <= 5 else None


def _parse_type(value: Optional[str]) -> Optional[int]:
    """The first type identifier (as distilabel), or ``None``."""
    if value is None:
        return None
    match = _NUMBER.search(value)
    return int(match.group(1)) if match else None


def _clean(text: str) -> Optional[str]:
    text = text.strip()
    return text or None


def _fields(section: str) -> List[tuple]:
    """``[(field name, value), ...]`` in order; a value runs until the next field line."""
    matches = list(_FIELD.finditer(section))
    fields = []
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(section)
        value = match.group(2) + section[match.end() : end]
        name = match.group(1).lower()
        fields.append(("type" if name == "types" else name, value))
    return fields


def _sections(output: str, count: int) -> List[Optional[str]]:
    """The answer's section for each of the ``count`` texts (``None`` when missing)."""
    sections: List[Optional[str]] = [None] * count
    headers = list(_SECTION_HEADER.finditer(output))
    if headers:
        for index, header in enumerate(headers):
            number = int(header.group(1))
            end = headers[index + 1].start() if index + 1 < len(headers) else len(output)
            if 1 <= number <= count and sections[number - 1] is None:
                sections[number - 1] = output[header.end() : end]
        return sections
    # No headers: blocks separated by blank lines, in order, counting only those with a rating.
    blocks = [block for block in re.split(r"\n[ \t]*\n", output) if re.search(r"rating\s*:", block, re.I)]
    for index, block in enumerate(blocks[:count]):
        sections[index] = block
    return sections


class UltraFeedback(Task):
    """Rates each of the ``generations`` of an ``instruction`` from 1 to 5 on one ``aspect``, with a rationale.

    Attributes:
        aspect: what to judge: ``overall-rating`` (Argilla's all-in-one aspect, the default), ``helpfulness``,
            ``honesty``, ``instruction-following`` or ``truthfulness``.

    Input columns:
        - instruction (``str``): the instruction the generations answer.
        - generations (``List[Optional[str]]``): the texts to rate. A ``None`` entry (a failed generation) is
          shown to the judge as ``(no answer)`` and its rating is always ``None``.

    Output columns (each list has one entry per generation):
        - ratings (``List[Optional[int]]``): 1-5, or ``None`` when it could not be read.
        - rationales (``List[Optional[str]]``): the rationale of each rating (for ``helpfulness`` and
          ``truthfulness``: the rationale of the type, as in distilabel).
        - types (``List[Optional[int]]``), rationales-for-ratings (``List[Optional[str]]``): only for
          ``helpfulness`` and ``truthfulness``.
        - model_name (``str``): the judge's model.
    """

    aspect: Aspect = Field(default="overall-rating", description="The aspect the generations are rated on.")

    @property
    def inputs(self) -> StepColumns:
        return ["instruction", "generations"]

    @property
    def outputs(self) -> StepColumns:
        if self.aspect in _TYPED_ASPECTS:
            return ["types", "rationales", "ratings", "rationales-for-ratings", "model_name"]
        return ["ratings", "rationales", "model_name"]

    def format_input(self, input: Dict[str, Any]) -> ChatType:
        instruction = string_column(input, "instruction")
        generations = texts_column(input, "generations", allow_none=True)
        criteria = _CRITERIA[self.aspect]
        if self.use_default_structured_output:
            criteria = {**criteria, "json_answer": True}
        user = compile_template(TEMPLATE).render(
            instruction=instruction,
            generations=[NO_ANSWER if g is None else g for g in generations],
            **criteria,
        )
        return [
            {"role": "system", "content": SYSTEM_PROMPT.format(n=len(generations))},
            {"role": "user", "content": user},
        ]

    def get_structured_output(self) -> Dict[str, Any]:
        """The JSON answer, with distilabel's keys: one rating (1-5) and one rationale per text, in order; for
        ``helpfulness`` and ``truthfulness`` also one type (an integer, or null) per text and the rationale of
        each rating (``rationales_for_rating``), ``rationales`` then being the rationales of the types."""
        def array_of(items: Dict[str, Any]) -> Dict[str, Any]:
            return {"type": "array", "items": items}

        properties: Dict[str, Any] = {
            "ratings": array_of({"type": "integer", "enum": [1, 2, 3, 4, 5]}),
            "rationales": array_of({"type": "string"}),
        }
        if self.aspect not in _TYPED_ASPECTS:
            return {"type": "object", "properties": properties, "required": ["ratings", "rationales"]}
        properties = {
            "types": array_of({"anyOf": [{"type": "integer"}, {"type": "null"}]}),
            **properties,
            "rationales_for_rating": array_of({"type": "string"}),
        }
        return {"type": "object", "properties": properties, "required": list(properties)}

    def _format_structured_output(self, output: str, generations: List[Optional[str]]) -> Dict[str, Any]:
        """The columns from a JSON answer: integers for ratings and types, strings for rationales, ``None``
        wherever the answer has no usable value (or is not JSON at all)."""
        count = len(generations)
        result: Dict[str, List[Any]] = {c: [None] * count for c in self.outputs if c != "model_name"}
        try:
            answer = json.loads(output)
        except json.JSONDecodeError:
            return result
        if not isinstance(answer, dict):
            return result
        # The JSON key of each column; "rationales-for-ratings" (the column's own name) is read too.
        sources = {"ratings": ("ratings",), "rationales": ("rationales",)}
        if self.aspect in _TYPED_ASPECTS:
            sources.update(types=("types",), **{"rationales-for-ratings": ("rationales_for_rating", "rationales-for-ratings")})
        for column, keys in sources.items():
            values = next((answer[key] for key in keys if isinstance(answer.get(key), list)), [])
            for index in range(min(count, len(values))):
                if generations[index] is None:
                    continue
                value = values[index]
                if column == "ratings":
                    result[column][index] = _parse_rating(str(value)) if value is not None else None
                elif column == "types":
                    result[column][index] = _parse_type(str(value)) if value is not None else None
                else:
                    result[column][index] = _clean(value) if isinstance(value, str) else None
        return result

    def format_output(self, output: Optional[str], input: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        if self.use_default_structured_output and isinstance(output, str):
            generations = (input or {}).get("generations")
            if isinstance(generations, (list, tuple)):
                return self._format_structured_output(output, list(generations))
        columns = [c for c in self.outputs if c != "model_name"]
        generations = (input or {}).get("generations")
        if not isinstance(generations, (list, tuple)):
            if input is not None or not isinstance(output, str):
                return {column: None for column in columns}
            # No row to count against: as many texts as the answer has sections.
            numbers = [int(m.group(1)) for m in _SECTION_HEADER.finditer(output)]
            generations = [""] * (max(numbers) if numbers else 0)
        count = len(generations)
        result: Dict[str, List[Any]] = {column: [None] * count for column in columns}
        if not isinstance(output, str):
            return result
        typed = self.aspect in _TYPED_ASPECTS
        for index, section in enumerate(_sections(output, count)):
            if section is None or generations[index] is None:
                continue
            fields = _fields(section)
            names = [name for name, _ in fields]
            if "rating" not in names:
                continue
            rating_at = names.index("rating")
            values = dict(reversed(fields[:rating_at]))  # first occurrence before the rating wins
            after = [value for name, value in fields[rating_at + 1 :] if name == "rationale"]
            result["ratings"][index] = _parse_rating(fields[rating_at][1])
            if typed:
                result["types"][index] = _parse_type(values.get("type"))
                result["rationales"][index] = _clean(values.get("rationale") or "")
                result["rationales-for-ratings"][index] = _clean(after[0]) if after else None
            else:
                rationale = after[0] if after else values.get("rationale")
                result["rationales"][index] = _clean(rationale or "")
        return result
