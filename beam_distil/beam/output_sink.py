"""The sink that writes a run's results for the user: each leaf step's rows as Parquet or JSON Lines files in
the output directory, written by the Beam job itself (``Pipeline.run(output_dir=...)``; see
``beam_distil.output_files`` for the layout and how it is read back).

Every leaf step gets ``<output_dir>/<leaf>/part-SSSSS-of-NNNNN.parquet`` (or ``.jsonl``), through Beam's
file-based sink, so files are committed only when their bundle succeeds and any ``FileSystems`` path works
(``gs://`` on Dataflow). Each row carries its ``_row_id`` (a list of ints) so readers can restore the order.

Parquet needs one schema for every file; rows are dicts whose types are only known from the data, so a first
pass infers and unifies the schema of all rows (``CombineGlobally``), and the rows wait for it as a side input.
A column whose values no Arrow type can hold together (a number in some rows, a list in others) is stored as
JSON text.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Iterable, List, Optional, Tuple

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io import filebasedsink
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from beam_distil.output_files import ROW_ID_COLUMN
from beam_distil.rows import KeyedRow

_BATCH = 512


def _record(keyed: KeyedRow) -> Dict[str, Any]:
    row_id, row = keyed
    return {ROW_ID_COLUMN: list(row_id), **row}


def _unify(first: pa.Schema, second: pa.Schema) -> pa.Schema:
    try:
        return pa.unify_schemas([first, second], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    fields = {field.name: field for field in first}
    for field in second:
        if field.name not in fields:
            fields[field.name] = field
            continue
        try:
            fields[field.name] = pa.unify_schemas(
                [pa.schema([fields[field.name]]), pa.schema([field])], promote_options="permissive"
            ).field(0)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            fields[field.name] = pa.field(field.name, pa.string())  # stored as JSON text
    return pa.schema(list(fields.values()))


def _schema_of(records: List[Dict[str, Any]]) -> pa.Schema:
    try:
        return pa.Table.from_pylist(records).schema
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed types inside the batch: one row at a time
        schema = pa.Table.from_pylist(records[:1]).schema
        for record in records[1:]:
            schema = _unify(schema, pa.Table.from_pylist([record]).schema)
        return schema


class _SchemaOfAllRows(beam.CombineFn):
    """Accumulator: (unified schema or None, rows not yet looked at)."""

    def create_accumulator(self) -> Tuple[Optional[pa.Schema], List[Dict[str, Any]]]:
        return None, []

    def _fold(self, schema: Optional[pa.Schema], pending: List[Dict[str, Any]]) -> Optional[pa.Schema]:
        if not pending:
            return schema
        found = _schema_of(pending)
        return found if schema is None else _unify(schema, found)

    def add_input(self, accumulator, record):
        schema, pending = accumulator
        pending.append(record)
        if len(pending) >= _BATCH:
            return self._fold(schema, pending), []
        return schema, pending

    def merge_accumulators(self, accumulators):
        schema: Optional[pa.Schema] = None
        for partial, pending in accumulators:
            partial = self._fold(partial, pending)
            if partial is not None:
                schema = partial if schema is None else _unify(schema, partial)
        return schema, []

    def extract_output(self, accumulator) -> Optional[bytes]:
        schema = self._fold(*accumulator)
        return None if schema is None else schema.serialize().to_pybytes()


def _conform(record: Dict[str, Any], text_columns: Iterable[str]) -> Dict[str, Any]:
    for column in text_columns:
        value = record.get(column)
        if value is not None and not isinstance(value, str):
            record = {**record, column: json.dumps(value, ensure_ascii=False, default=str)}
    return record


class _ShardWriter:
    """One Parquet file being written: rows are buffered and written in row groups."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.writer: Optional[pq.ParquetWriter] = None
        self.schema: Optional[pa.Schema] = None
        self.text_columns: List[str] = []
        self.buffer: List[Dict[str, Any]] = []

    def add(self, schema_bytes: bytes, record: Dict[str, Any]) -> None:
        if self.writer is None:
            self.schema = pa.ipc.read_schema(pa.py_buffer(schema_bytes))
            self.text_columns = [f.name for f in self.schema if pa.types.is_string(f.type)]
            self.writer = pq.ParquetWriter(self.handle, self.schema)
        self.buffer.append(_conform(record, self.text_columns))
        if len(self.buffer) >= _BATCH:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            self.writer.write_table(pa.Table.from_pylist(self.buffer, schema=self.schema))
            self.buffer = []

    def close(self) -> None:
        if self.writer is not None:
            self.flush()
            self.writer.close()
        self.handle.close()


class _ParquetRowsSink(filebasedsink.FileBasedSink):
    """Beam's file-based sink (temporary files, committed on success) writing ``(schema, record)`` elements."""

    def __init__(self, file_path_prefix: str) -> None:
        super().__init__(
            file_path_prefix,
            coder=None,
            file_name_suffix=".parquet",
            mime_type="application/x-parquet",
            compression_type=CompressionTypes.UNCOMPRESSED,
        )

    def open(self, temp_path: str) -> _ShardWriter:
        return _ShardWriter(super().open(temp_path))

    def write_record(self, shard: _ShardWriter, value: Tuple[bytes, Dict[str, Any]]) -> None:
        shard.add(*value)

    def close(self, shard: _ShardWriter) -> None:
        shard.close()


class WriteOutputFiles(beam.PTransform):
    """Writes ``(row_id, row)`` elements to ``directory`` as ``"parquet"`` or ``"jsonl"`` files named
    ``<file_prefix>-SSSSS-of-NNNNN``."""

    def __init__(self, directory: str, output_format: str = "parquet", file_prefix: str = "part") -> None:
        super().__init__()
        if output_format not in ("parquet", "jsonl"):
            raise ValueError(f"output_format must be 'parquet' or 'jsonl', got {output_format!r}")
        self._prefix = FileSystems.join(directory, file_prefix)
        self._format = output_format

    def expand(self, keyed: beam.PCollection) -> beam.pvalue.PDone:
        records = keyed | "Record" >> beam.Map(_record)
        if self._format == "jsonl":
            return (
                records
                | "Json" >> beam.Map(lambda record: json.dumps(record, ensure_ascii=False, default=str))
                | "Write" >> beam.io.WriteToText(self._prefix, file_name_suffix=".jsonl")
            )
        schema = records | "Schema" >> beam.CombineGlobally(_SchemaOfAllRows()).without_defaults()
        return (
            records
            | "WithSchema" >> beam.Map(lambda record, schema: (schema, record), beam.pvalue.AsSingleton(schema))
            | "Write" >> beam.io.Write(_ParquetRowsSink(self._prefix))
        )
