"""Scratch files that bring a leaf step's rows back to the launching process after a run without
``output_dir`` (the rows then reach the user only through the returned Distiset; the files are removed).

Each leaf writes ``(row_id, row)`` through Beam's text sink, which commits its files only when a bundle
succeeds (a retried bundle leaves no duplicates). Lines are pickled, base64-encoded, so every Python value a
step produces (bytes, datetimes, nested structures) comes back unchanged, whichever runner mode ran it.
"""

from __future__ import annotations

import base64
import pickle
from typing import List

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from beam_distil.rows import KeyedRow

_SUFFIX = ".rows"


def _encode(keyed: KeyedRow) -> str:
    return base64.b64encode(pickle.dumps(keyed, protocol=pickle.HIGHEST_PROTOCOL)).decode("ascii")


class WriteScratchRows(beam.PTransform):
    """Writes ``(row_id, row)`` elements into ``directory`` (a local path or any ``FileSystems`` URL)."""

    def __init__(self, directory: str) -> None:
        super().__init__()
        self._directory = directory

    def expand(self, pcoll: beam.PCollection) -> beam.pvalue.PDone:
        return (
            pcoll
            | "Encode" >> beam.Map(_encode)
            | "Write" >> beam.io.WriteToText(FileSystems.join(self._directory, "part"), file_name_suffix=_SUFFIX)
        )


def read_scratch_rows(directory: str) -> List[KeyedRow]:
    """Every ``(row_id, row)`` written by ``WriteScratchRows`` into ``directory``, ordered by row id."""
    keyed: List[KeyedRow] = []
    pattern = FileSystems.join(directory, f"*{_SUFFIX}")
    for metadata in sorted(FileSystems.match([pattern])[0].metadata_list, key=lambda m: m.path):
        with FileSystems.open(metadata.path) as file:
            keyed.extend(pickle.loads(base64.b64decode(line)) for line in file.read().splitlines() if line.strip())
    keyed.sort(key=lambda element: element[0])
    return keyed
