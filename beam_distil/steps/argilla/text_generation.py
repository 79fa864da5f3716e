"""``TextGenerationToArgilla``: instructions and their generations as an Argilla dataset to rate, as in distilabel.

The dataset has three text fields, ``id`` (the SHA-256 of the instruction, to find every record of a prompt),
``instruction`` and ``generation`` (named after the dataset columns when ``input_mappings`` renames them), and
one label question, ``quality``: 👎 (``bad``) or 👍 (``good``). Each row gives one record per distinct
generation (``generation`` may be a list, e.g. after ``GroupColumns``)::

    load >> TextGeneration(llm=llm) >> TextGenerationToArgilla(dataset_name="review", dataset_workspace="team")

    rows | "review" >> TextGenerationToArgilla(dataset_name="review", api_url="http://localhost:6900")
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

from beam_distil.steps.argilla.base import ArgillaBase
from beam_distil.steps.argilla.records import ArgillaRecord, as_text, instruction_id
from beam_distil.steps.argilla.settings import QuestionSpec, TextFieldSpec
from beam_distil.steps.base import StepColumns


class TextGenerationToArgilla(ArgillaBase):
    """Pushes ``instruction``/``generation`` pairs to Argilla for a 👎/👍 quality review; rows go on unchanged.

    Attributes: those of ``ArgillaBase`` (``dataset_name``, ``dataset_workspace``, ``api_url``, ``api_key``,
    ``metadata_properties``).

    Input columns:
        - instruction (``str``): the instruction the generation answers.
        - generation (``str`` or ``List[str]``): the generation(s); ``None`` ones are left out.
        - the ``metadata_properties`` columns.

    Output columns: none.
    """

    @property
    def inputs(self) -> StepColumns:
        return {"instruction": True, "generation": True, **self._metadata_inputs()}

    def argilla_fields(self) -> Tuple[TextFieldSpec, ...]:
        instruction, generation = self._column("instruction"), self._column("generation")
        return (TextFieldSpec("id"), TextFieldSpec(instruction), TextFieldSpec(generation))

    def argilla_questions(self) -> Tuple[QuestionSpec, ...]:
        instruction, generation = self._column("instruction"), self._column("generation")
        return (
            QuestionSpec(
                name="quality",
                kind="label_selection",
                title=f"What's the quality of the {generation} for the given {instruction}?",
                options=(("bad", "👎"), ("good", "👍")),
            ),
        )

    def records_for(self, row: Dict[str, Any]) -> List[ArgillaRecord]:
        instruction = as_text(row.get("instruction"))
        if instruction is None:
            return []
        generations = row.get("generation")
        if not isinstance(generations, (list, tuple)):
            generations = [generations]
        metadata = self._metadata_of(row)
        records: List[ArgillaRecord] = []
        seen = set()
        for generation in generations:
            text = as_text(generation)
            if text is None or text in seen:
                continue
            seen.add(text)
            fields = {
                "id": instruction_id(instruction),
                self._column("instruction"): instruction,
                self._column("generation"): text,
            }
            records.append(ArgillaRecord(fields=fields, metadata=metadata))
        return records
