"""What an Argilla dataset made by a step holds: its text fields, questions and metadata properties, as plain data.

Kept apart from the Argilla SDK so that a step's layout can be read, compared with a dataset that already exists
and tested without the SDK; ``client.py`` turns it into the SDK's ``Settings``. Names and types are Argilla's
(``settings.type`` of its HTTP API: ``"text"`` fields, ``"label_selection"``/``"rating"``/``"text"`` questions,
``"terms"``/``"integer"``/``"float"`` metadata)::

    quality = QuestionSpec("quality", "label_selection", "Quality?", options=(("bad", "👎"), ("good", "👍")))
    layout = DatasetLayout(fields=(TextFieldSpec("instruction"), TextFieldSpec("generation")), questions=(quality,))
    layout.differences(existing_dataset.settings.serialize())   # [] when the dataset can take this layout's records
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Literal, Mapping, Optional, Tuple

MetadataKind = Literal["terms", "integer", "float"]
"""The kinds of Argilla metadata properties a step can declare (``metadata_properties={"column": kind}``)."""


@dataclass(frozen=True)
class TextFieldSpec:
    """A text field; its title is its name, as distilabel names them."""

    name: str
    required: bool = True


@dataclass(frozen=True)
class QuestionSpec:
    """A question for annotators. ``options``: ``(value, text)`` pairs (``text`` ``None`` for rating values)."""

    name: str
    kind: Literal["label_selection", "rating", "text"]
    title: str
    description: Optional[str] = None
    required: bool = True
    options: Tuple[Tuple[Any, Optional[str]], ...] = ()

    @property
    def option_values(self) -> List[Any]:
        return [value for value, _ in self.options]


@dataclass(frozen=True)
class MetadataSpec:
    """A metadata property filled from the row column of the same name."""

    name: str
    kind: MetadataKind


@dataclass(frozen=True)
class DatasetLayout:
    """Fields, questions and metadata properties of the dataset a step pushes to."""

    fields: Tuple[TextFieldSpec, ...]
    questions: Tuple[QuestionSpec, ...]
    metadata: Tuple[MetadataSpec, ...] = ()

    def differences(self, existing: Mapping[str, Any]) -> List[str]:
        """Why a dataset with ``existing`` settings (the SDK's ``Settings.serialize()``) cannot take this layout's
        records, one sentence each; empty when it can. Extra optional fields, extra questions and extra metadata
        properties are fine: records leave them empty."""
        problems: List[str] = []
        fields = {field["name"]: field for field in existing.get("fields") or []}
        for field in self.fields:
            found = fields.get(field.name)
            if found is None:
                problems.append(f"it has no field {field.name!r}")
            elif _type_of(found) != "text":
                problems.append(f"its field {field.name!r} is a {_type_of(found)!r} field, not a 'text' field")
            elif found.get("required") and not field.required:
                problems.append(f"its field {field.name!r} is required, but this step may leave it empty")
        ours = {field.name for field in self.fields}
        for name, found in fields.items():
            if found.get("required") and name not in ours:
                problems.append(f"it has a required field {name!r} that this step does not fill")
        questions = {question["name"]: question for question in existing.get("questions") or []}
        for question in self.questions:
            found = questions.get(question.name)
            if found is None:
                problems.append(f"it has no question {question.name!r}")
                continue
            if _type_of(found) != question.kind:
                problems.append(
                    f"its question {question.name!r} is a {_type_of(found)!r} question, not {question.kind!r}"
                )
                continue
            accepted = [option.get("value") for option in (found.get("settings") or {}).get("options") or []]
            missing = [value for value in question.option_values if value not in accepted]
            if missing:
                problems.append(f"its question {question.name!r} does not offer {missing} (it offers {accepted})")
        metadata = {prop["name"]: prop for prop in existing.get("metadata") or []}
        for prop in self.metadata:
            found = metadata.get(prop.name)
            if found is None:
                problems.append(f"it has no metadata property {prop.name!r}")
            elif _type_of(found) != prop.kind:
                problems.append(f"its metadata property {prop.name!r} is {_type_of(found)!r}, not {prop.kind!r}")
        return problems


def _type_of(serialized: Dict[str, Any]) -> Optional[str]:
    return (serialized.get("settings") or {}).get("type") or serialized.get("type")
