"""Scratch files that bring a leaf step's rows back to the launching process after a run without
``output_dir`` (the rows then reach the user only through the returned Distiset; the files are removed).

Only local runs write them (a remote runner needs ``output_dir``), and the local runner fails a run whose bundle
fails instead of retrying it, so a plain DoFn writes them: one file per bundle, written under a temporary name
and renamed when the bundle finishes. Beam's text sink would add a finalizing stage after the last row, paid at
the end of every run. Rows are pickled, so every Python value a step produces (bytes, datetimes, nested
structures) comes back unchanged, whichever runner mode ran it.
"""

from __future__ import annotations

import io
import pickle
import uuid
from typing import IO, List, Optional

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from beam_distil.rows import KeyedRow

_SUFFIX = ".rows"


class _WriteBundleFile(beam.DoFn):
    def __init__(self, directory: str, file_prefix: str) -> None:
        self._directory = directory
        self._file_prefix = file_prefix

    def start_bundle(self) -> None:
        self._file: Optional[IO[bytes]] = None
        self._name = ""

    def process(self, keyed: KeyedRow) -> None:
        if self._file is None:
            self._name = f"{self._file_prefix}-{uuid.uuid4().hex}"
            self._file = FileSystems.create(FileSystems.join(self._directory, f".{self._name}.tmp"))
        pickle.dump(keyed, self._file, protocol=pickle.HIGHEST_PROTOCOL)

    def finish_bundle(self) -> None:
        if self._file is None:
            return
        self._file.close()
        FileSystems.rename(
            [FileSystems.join(self._directory, f".{self._name}.tmp")],
            [FileSystems.join(self._directory, f"{self._name}{_SUFFIX}")],
        )


class WriteScratchRows(beam.PTransform):
    """Writes ``(row_id, row)`` elements into ``directory`` (a local path or any ``FileSystems`` URL), as files
    named ``<file_prefix>-<id>.rows``."""

    def __init__(self, directory: str, file_prefix: str = "part") -> None:
        super().__init__()
        self._directory = directory
        self._file_prefix = file_prefix

    def expand(self, pcoll: beam.PCollection) -> beam.pvalue.PDone:
        pcoll | "Write" >> beam.ParDo(_WriteBundleFile(self._directory, self._file_prefix))
        return beam.pvalue.PDone(pcoll.pipeline)


def read_scratch_rows(directory: str) -> List[KeyedRow]:
    """Every ``(row_id, row)`` written by ``WriteScratchRows`` into ``directory``, ordered by row id."""
    keyed: List[KeyedRow] = []
    pattern = FileSystems.join(directory, f"*{_SUFFIX}")
    for metadata in FileSystems.match([pattern])[0].metadata_list:
        with FileSystems.open(metadata.path) as file:
            stream = io.BytesIO(file.read())
        while stream.tell() < len(stream.getbuffer()):
            keyed.append(pickle.load(stream))
    keyed.sort(key=lambda element: element[0])
    return keyed
