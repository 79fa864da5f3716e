"""A run's output directory (``Pipeline.run(output_dir=...)``, the Flex Template's ``output_dir``): one folder of
``part-*.parquet`` or ``part-*.jsonl`` files per Distiset subset, written by the job
(``beam_distil.beam.output_sink``), and ``distiset_configs/``. Each row carries its row id in ``_row_id`` (a list
of ints), so a reader restores the run's order::

    rows = [row for _, row in read_output_rows("gs://bucket/run-1/default")]
"""

from __future__ import annotations

import json
from typing import List

import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from beam_distil.rows import KeyedRow

ROW_ID_COLUMN = "_row_id"


def read_output_rows(directory: str) -> List[KeyedRow]:
    """The rows ``WriteOutputFiles`` wrote into ``directory`` (either format), ordered by row id."""
    keyed: List[KeyedRow] = []
    for suffix in (".parquet", ".jsonl"):
        matches = FileSystems.match([FileSystems.join(directory, f"*{suffix}")])[0].metadata_list
        for metadata in sorted(matches, key=lambda m: m.path):
            with FileSystems.open(metadata.path) as file:
                if suffix == ".parquet":
                    records = pq.read_table(file).to_pylist()
                else:
                    records = [json.loads(line) for line in file.read().decode("utf-8").splitlines() if line.strip()]
            for record in records:
                row_id = tuple(record.pop(ROW_ID_COLUMN))
                keyed.append((row_id, record))
    keyed.sort(key=lambda element: element[0])
    return keyed
