"""``ArgillaRecord``: one record a step pushes, as plain data, and how a row's values become record values.

Its ``external_id`` is drawn once, when the record is made: a request that is retried (a timeout after the server
stored the records, a 5xx) sends the same ids again, and Argilla's bulk upsert updates those records instead of
adding them twice.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import uuid
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from beam_distil.steps.argilla.settings import MetadataKind


@dataclass(frozen=True)
class ArgillaRecord:
    """Field values (text), metadata values and suggested answers (question name -> value) of one record."""

    fields: Dict[str, str]
    metadata: Dict[str, Any] = field(default_factory=dict)
    suggestions: Dict[str, Any] = field(default_factory=dict)
    external_id: str = field(default_factory=lambda: uuid.uuid4().hex)


def instruction_id(instruction: str) -> str:
    """The SHA-256 hex digest of an instruction: distilabel's ``id`` field, to find every record of a prompt."""
    return hashlib.sha256(instruction.encode("utf-8")).hexdigest()


def as_text(value: Any) -> Optional[str]:
    """A column value as the text of a field: strings as they are, ``None`` as ``None``, anything else as JSON."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def metadata_value(value: Any, kind: MetadataKind) -> Any:
    """``value`` as Argilla takes it for a metadata property of ``kind``, or ``None`` when it cannot be one
    (a missing value, a number that is not finite, text for a number)."""
    if value is None:
        return None
    if kind == "terms":
        if isinstance(value, (list, tuple)):
            return [term if isinstance(term, str) else json.dumps(term, default=str) for term in value]
        return value if isinstance(value, str) else json.dumps(value, default=str)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    if kind == "integer":
        return int(value) if float(value).is_integer() else None
    return float(value) if math.isfinite(value) else None
