"""A run's output directory (``Pipeline.run(output_dir=...)``, the Flex Template's ``output_dir``): one folder of
``part-*.parquet`` or ``part-*.jsonl`` files per Distiset subset, written by the job
(``beam_distil.beam.output_sink``), and ``distiset_configs/``. Each row carries its row id in ``_row_id`` (a list
of ints), so a reader restores the run's order::

    rows = [row for _, row in read_output_rows("gs://bucket/run-1/default")]
"""

from __future__ import annotations

import json
from typing import Dict, List, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from beam_distil.rows import KeyedRow

ROW_ID_COLUMN = "_row_id"


def read_output_table(directory: str) -> Optional[pa.Table]:
    """The Parquet files ``WriteOutputFiles`` wrote into ``directory`` as one Arrow table ordered by row id, without
    the ``_row_id`` column; ``None`` when there are none, or when the files' schemas cannot be joined (then, as
    for JSON Lines, ``read_output_rows``).

    The rows stay in Arrow's columns, a fraction of what the same rows take as Python dicts, so that a run of a
    million rows can be read back."""
    matches = FileSystems.match([FileSystems.join(directory, "*.parquet")])[0].metadata_list
    # A job (or a run's last slice) that got no rows leaves an empty file: nothing to read in it.
    matches = [metadata for metadata in matches if metadata.size_in_bytes > 0]
    if not matches:
        return None
    tables = []
    for metadata in sorted(matches, key=lambda m: m.path):
        with FileSystems.open(metadata.path) as file:
            tables.append(pq.read_table(file))
    try:
        table = pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # The slices of one run infer their schemas apart: a column may hold numbers in one and text in another.
        # Such a column becomes JSON text, as the sink stores a column that no one Arrow type can hold.
        types: Dict[str, set] = {}
        for part in tables:
            for field in part.schema:
                if not pa.types.is_null(field.type):
                    types.setdefault(field.name, set()).add(field.type)
        mixed = [name for name, seen in types.items() if len(seen) > 1]
        tables = [_columns_as_json_text(part, mixed) for part in tables]
        try:
            table = pa.concat_tables(tables, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return None
    return table.take(_row_id_order(table.column(ROW_ID_COLUMN))).drop_columns([ROW_ID_COLUMN])


def _columns_as_json_text(table: pa.Table, columns: List[str]) -> pa.Table:
    for name in columns:
        if name not in table.column_names or pa.types.is_string(table.schema.field(name).type):
            continue
        values = [
            value if value is None or isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
            for value in table.column(name).to_pylist()
        ]
        index = table.schema.get_field_index(name)
        table = table.set_column(index, pa.field(name, pa.string()), pa.array(values, pa.string()))
    return table


def _row_id_order(row_ids: pa.ChunkedArray) -> np.ndarray:
    """The indices that sort ``row_ids`` (lists of ints) as tuples: element by element, a prefix first."""
    row_ids = row_ids.combine_chunks()
    lengths = pc.list_value_length(row_ids).to_numpy(zero_copy_only=False)
    depth = int(lengths.max()) if len(lengths) else 0
    # Padded with -1 (ids are never negative), so that (3,) sorts before (3, 0) as a tuple does.
    padded = np.full((len(row_ids), depth), -1, dtype=np.int64)
    rows = np.repeat(np.arange(len(row_ids)), lengths)
    columns = np.arange(len(rows)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    padded[rows, columns] = pc.list_flatten(row_ids).to_numpy(zero_copy_only=False)
    return np.lexsort(padded.T[::-1]) if depth else np.arange(len(row_ids))


def read_output_rows(directory: str) -> List[KeyedRow]:
    """The rows ``WriteOutputFiles`` wrote into ``directory`` (either format), ordered by row id."""
    keyed: List[KeyedRow] = []
    for suffix in (".parquet", ".jsonl"):
        matches = FileSystems.match([FileSystems.join(directory, f"*{suffix}")])[0].metadata_list
        for metadata in sorted(matches, key=lambda m: m.path):
            if metadata.size_in_bytes == 0:  # a job that got no rows
                continue
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
