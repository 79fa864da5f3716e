"""``PreferenceToArgilla``: an instruction and its generations as an Argilla dataset to rate, as in distilabel.

The dataset has the text fields ``id`` (the SHA-256 of the instruction), ``instruction`` and
``generations-0`` ... ``generations-{num_generations - 1}`` (only the first one required), and for each generation
a rating question ``generations-{i}-rating`` (1 to 5) and a text question ``generations-{i}-rationale``. A row's
``ratings`` (integers from 1 to 5) and ``rationales`` (text), e.g. from ``UltraFeedback``, become suggested
answers that annotators confirm or change; other values are left out::

    load >> generate >> group >> UltraFeedback(llm=judge) >> PreferenceToArgilla(
        dataset_name="preferences", dataset_workspace="team", num_generations=3
    )
"""

from __future__ import annotations

import logging
import numbers
from typing import Any, Dict, List, Tuple

from pydantic import PositiveInt, PrivateAttr

from beam_distil.steps.argilla.base import ArgillaBase
from beam_distil.steps.argilla.records import ArgillaRecord, as_text, instruction_id
from beam_distil.steps.argilla.settings import QuestionSpec, TextFieldSpec
from beam_distil.steps.base import StepColumns

logger = logging.getLogger("beam_distil")

RATING_VALUES = (1, 2, 3, 4, 5)


class PreferenceToArgilla(ArgillaBase):
    """Pushes each instruction with its generations (and suggested ratings and rationales) to Argilla.

    Attributes:
        num_generations: how many generations a record shows (the dataset has a field and two questions for each).
        and those of ``ArgillaBase`` (``dataset_name``, ``dataset_workspace``, ``api_url``, ``api_key``,
        ``metadata_properties``).

    Input columns:
        - instruction (``str``), generations (``List[str]``).
        - ratings (``List[int]``, optional), rationales (``List[str]``, optional): one per generation.
        - the ``metadata_properties`` columns.

    Output columns: none.

    A row whose first generation is missing gives no record (``generations-0`` is required); generations past
    ``num_generations`` are left out, with a warning.
    """

    num_generations: PositiveInt

    _warned_extra_generations: bool = PrivateAttr(default=False)

    @property
    def inputs(self) -> StepColumns:
        return {
            "instruction": True,
            "generations": True,
            "ratings": False,
            "rationales": False,
            **self._metadata_inputs(),
        }

    def _generation_name(self, index: int) -> str:
        return f"{self._column('generations')}-{index}"

    def argilla_fields(self) -> Tuple[TextFieldSpec, ...]:
        generations = [TextFieldSpec(self._generation_name(i), required=i == 0) for i in range(self.num_generations)]
        return (TextFieldSpec("id"), TextFieldSpec(self._column("instruction")), *generations)

    def argilla_questions(self) -> Tuple[QuestionSpec, ...]:
        instruction = self._column("instruction")
        questions: List[QuestionSpec] = []
        for i in range(self.num_generations):
            name = self._generation_name(i)
            description = (
                None if i == 0 else f"Ignore this question if the corresponding `{name}` field is not available."
            )
            questions.append(
                QuestionSpec(
                    name=f"{name}-rating",
                    kind="rating",
                    title=f"Rate {name} given {instruction}.",
                    description=description,
                    required=i == 0,
                    options=tuple((value, None) for value in RATING_VALUES),
                )
            )
            questions.append(
                QuestionSpec(
                    name=f"{name}-rationale",
                    kind="text",
                    title=f"Specify the rationale for {name}'s rating.",
                    description=description,
                    required=False,
                )
            )
        return tuple(questions)

    def records_for(self, row: Dict[str, Any]) -> List[ArgillaRecord]:
        instruction = as_text(row.get("instruction"))
        generations = row.get("generations")
        if not isinstance(generations, (list, tuple)):
            generations = [generations]
        if instruction is None or not generations or generations[0] is None:
            return []
        if len(generations) > self.num_generations and not self._warned_extra_generations:
            self._warned_extra_generations = True
            logger.warning(
                "Step %r: a row has %d generations but num_generations=%d; the ones past it are not pushed"
                " (further rows are not reported).", self.name, len(generations), self.num_generations,
            )
        fields = {"id": instruction_id(instruction), self._column("instruction"): instruction}
        shown = []
        for i, generation in enumerate(generations[: self.num_generations]):
            text = as_text(generation)
            if text is not None:
                fields[self._generation_name(i)] = text
                shown.append(i)
        suggestions: Dict[str, Any] = {}
        ratings = row.get("ratings")
        if isinstance(ratings, (list, tuple)):
            for i in shown:
                rating = ratings[i] if i < len(ratings) else None
                if isinstance(rating, numbers.Integral) and not isinstance(rating, bool) and rating in RATING_VALUES:
                    suggestions[f"{self._generation_name(i)}-rating"] = int(rating)
        rationales = row.get("rationales")
        if isinstance(rationales, (list, tuple)):
            for i in shown:
                rationale = rationales[i] if i < len(rationales) else None
                if isinstance(rationale, str):
                    suggestions[f"{self._generation_name(i)}-rationale"] = rationale
        return [ArgillaRecord(fields=fields, metadata=self._metadata_of(row), suggestions=suggestions)]
