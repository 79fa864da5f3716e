"""``TextClassification``: an LLM assigns one label (or ``n`` labels) to a text, as in distilabel.

Example::

    TextClassification(
        llm=OpenAILLM(model="gpt-4o-mini"),
        context="You label the sentiment of movie reviews.",
        available_labels=["positive", "negative"],
    )
    # rows with `text` get `labels` ("positive") and `model_name`; with n=3, `labels` is a list of 3 strings

The LLM is asked for JSON ``{"labels": "label"}`` (``{"labels": ["label_0", ...]}`` when ``n > 1``) and, as in
distilabel, ``use_default_structured_output`` is on by default, so backends that can constrain their answer
to that schema do (an answer that does not fit the schema keeps its row, with ``None`` labels and the reason
in ``distilabel_metadata``). Without it the answer is parsed leniently: a JSON object inside code fences or
surrounded by text is found, a single label given as a one-item list (or several labels given as one string)
is adapted to ``n``. An unreadable answer gives ``None`` (``[None] * n`` when ``n > 1``).

References:
    - `Let Me Speak Freely? A Study on the Impact of Format Restrictions on Performance of Large Language
      Models <https://arxiv.org/abs/2408.02442>`_
"""

from __future__ import annotations

import json
import re
import warnings
from textwrap import indent
from typing import Any, Dict, List, Optional, Union

import apache_beam as beam
from pydantic import Field, PositiveInt

from beam_distil.helpers import compile_template
from beam_distil.models.base import ChatType
from beam_distil.steps.base import StepColumns
from beam_distil.steps.tasks.base import Task
from beam_distil.steps.tasks.input_checks import string_column

DEFAULT_SYSTEM_PROMPT = (
    "You are an AI system that labels pieces of text. Your only job is to read the text you are given and"
    " return the classification labels that fit it."
)
DEFAULT_CONTEXT = "Produce short, relevant labels that capture the main themes, topics or categories of the text."

TEMPLATE = """\
# Instruction
Classify the {{ query_title | lower }} below by giving it the labels that fit it best.
Do not explain your choice and do not add any comment.
If the text is ambiguous or does not contain enough information to classify it, answer "{{ default_label }}".
{{ labels_message }}
{{ context }}
{{ available_labels }}
{{ examples }}

## {{ query_title }}
```
{{ text }}
```

## Output Format
Give the labels as JSON, with no other text in your answer:
```
{
    "labels": {{ labels_format }}
}
```"""


_FENCED = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)


def _json_object(output: str) -> Optional[Dict[str, Any]]:
    """The first JSON object in ``output``: the whole text, inside code fences, or between the outer braces."""
    candidates = [output.strip()]
    candidates += [match.group(1).strip() for match in _FENCED.finditer(output)]
    start, end = output.find("{"), output.rfind("}")
    if 0 <= start < end:
        candidates.append(output[start : end + 1])
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None


# distilabel names a field `default_label`, which shadows Beam's `PTransform.default_label()` (see `label`).
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message='Field name "default_label"', category=UserWarning)

    class TextClassification(Task):
        """Labels the ``text`` of each row.

        Attributes:
            system_prompt: system message sent with every prompt (``None`` for none).
            n: how many labels to give: 1 (``labels`` is a string) or more (``labels`` is a list of ``n`` strings).
            context: extra instructions about the classification (``None`` for none).
            examples: a few example texts shown to the LLM.
            available_labels: the labels to choose from, a list or a ``{label: description}`` dict; ``None`` lets the
                LLM choose its own.
            default_label: the answer for ambiguous texts (a list when ``n > 1``).
            query_title: what the text is called in the prompt (``User Query``).

        Input columns:
            - text (``str``): the text to classify.

        Output columns:
            - labels (``Optional[str]`` when ``n == 1``, ``List[Optional[str]]`` when ``n > 1``).
            - model_name (``str``): the classifier's model.
        """

        system_prompt: Optional[str] = Field(default=DEFAULT_SYSTEM_PROMPT, description="System message, if any.")
        n: PositiveInt = Field(default=1, description="Number of labels to give.")
        context: Optional[str] = Field(default=DEFAULT_CONTEXT, description="Extra instructions about the labels.")
        examples: Optional[List[str]] = Field(default=None, description="Example texts shown to the LLM (few shot).")
        available_labels: Optional[Union[List[str], Dict[str, str]]] = Field(
            default=None, description="Labels to choose from, or label -> description."
        )
        default_label: Optional[Union[str, List[str]]] = Field(
            default="Unclassified", description="The answer for ambiguous texts."
        )
        query_title: str = Field(default="User Query", description="What the text is called in the prompt.")
        use_default_structured_output: bool = True

        @property
        def label(self) -> str:
            # Beam's ``PTransform.label`` calls ``self.default_label()``, which the ``default_label`` field (kept for
            # distilabel's API) shadows with a string: give the step's label without it.
            return getattr(self, "_user_label", None) or self.name or type(self).__name__

        @label.setter
        def label(self, value: Optional[str]) -> None:
            beam.PTransform.label.fset(self, value)  # type: ignore[attr-defined]

        @property
        def inputs(self) -> StepColumns:
            return ["text"]

        @property
        def outputs(self) -> StepColumns:
            return ["labels", "model_name"]

        # -- prompt ------------------------------------------------------------------------------------------

        def _labels_format(self) -> str:
            if self.n == 1:
                return '"label"'
            return "[" + ", ".join(f'"label_{i}"' for i in range(self.n)) + "]"

        def _labels_message(self) -> str:
            if self.n == 1:
                return "Give the single label that describes the text best."
            return f"Give a list of {self.n} labels that describe the text best."

        def _available_labels_message(self) -> str:
            if self.available_labels is None:
                return "Use clear, commonly understood terms as labels; avoid very specific or obscure ones unless the text calls for them."
            if isinstance(self.available_labels, dict):
                lines = "".join(f'"{label}",  # {description}\n' for label, description in self.available_labels.items())
                intro = "Choose the labels for the text among these, paying attention to what each label means"
            else:
                lines = "".join(f'"{label}",\n' for label in self.available_labels)
                intro = "Choose the labels for the text among these"
            return f"## Labels\n{intro}:\navailable_labels = [\n{indent(lines, ' ' * 4)}]"

        def _examples_message(self) -> str:
            if not self.examples:
                return ""
            listed = "\n".join(f"- {example}" for example in self.examples)
            return f"## Examples\nSome examples of the kind of text to classify:\n{listed}"

        def format_input(self, input: Dict[str, Any]) -> ChatType:
            text = string_column(input, "text")
            content = compile_template(TEMPLATE, keep_trailing_newline=False).render(
                query_title=self.query_title,
                default_label=self.default_label,
                labels_message=self._labels_message(),
                context=self.context or "",
                available_labels=self._available_labels_message(),
                examples=self._examples_message(),
                text=text,
                labels_format=self._labels_format(),
            )
            content = re.sub(r"\n{3,}", "\n\n", content)  # empty optional sections leave no gaps
            messages: ChatType = [{"role": "user", "content": content}]
            if self.system_prompt:
                messages.insert(0, {"role": "system", "content": self.system_prompt})
            return messages

        # -- answer ------------------------------------------------------------------------------------------

        def get_structured_output(self) -> Dict[str, Any]:
            """JSON answer: ``{"labels": str}``, or ``{"labels": [str, ...]}`` when ``n > 1``."""
            if self.n > 1:
                labels: Dict[str, Any] = {"type": "array", "items": {"type": "string"}, "title": "Labels"}
            else:
                labels = {"type": "string", "title": "Labels"}
            return {"type": "object", "properties": {"labels": labels}, "required": ["labels"], "title": "LabelsSchema"}

        def _empty_output(self) -> Dict[str, Any]:
            # Also used by the base Task when the answer does not fit the schema: same shape as distilabel.
            return {"labels": [None] * self.n if self.n > 1 else None}

        def format_output(self, output: Optional[str], input: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
            if not isinstance(output, str):
                return self._empty_output()
            answer = _json_object(output)
            labels = answer.get("labels") if answer is not None else None
            if self.n == 1:
                if isinstance(labels, list) and len(labels) == 1:
                    labels = labels[0]
                return {"labels": labels.strip() or None} if isinstance(labels, str) else self._empty_output()
            if isinstance(labels, str):
                labels = [labels]
            if not isinstance(labels, list):
                return self._empty_output()
            return {"labels": [label.strip() or None if isinstance(label, str) else None for label in labels]}
