"""Generator steps reading with ``datasets``: from the Hub (or a local dataset), from files, and from a dataset or
a Distiset saved to disk.

The dataset is loaded in ``load()``, i.e. on the Beam worker, never when the step is built; a dataset loaded in
the launching process (by a user's ``load()``) is left out when the step is pickled, so the job carries the
step's configuration, not its data.
"""

from __future__ import annotations

import csv
import glob
import itertools
import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

from pydantic import Field, PrivateAttr

from beam_distil.helpers import is_url
from beam_distil.runtime_parameters import RuntimeParameter
from beam_distil.steps.base import GeneratorStep, GeneratorStepOutput

_logger = logging.getLogger(__name__)

_FILETYPES = ("jsonl", "json", "parquet", "csv")
_BUILDERS = {"jsonl": "json", "json": "json", "parquet": "parquet", "csv": "csv"}


class LoadDataFromHub(GeneratorStep):
    """Yields the rows of a Hugging Face Hub dataset (or a local dataset directory) with ``load_dataset``.

    Its outputs are the dataset's columns, known once loaded. Example::

        load = LoadDataFromHub(repo_id="distilabel-internal-testing/instruction-dataset-mini", split="test")
    """

    repo_id: RuntimeParameter[str] = Field(
        default=None, description="The Hub repository id of the dataset, or a local dataset directory."
    )
    split: RuntimeParameter[str] = Field(default="train", description="The split to load.")
    config: Optional[RuntimeParameter[str]] = Field(
        default=None, description="The dataset configuration (subset) to load, if it has several."
    )
    revision: Optional[RuntimeParameter[str]] = Field(
        default=None, description="The revision (branch, tag or commit) of the dataset; the default branch if None."
    )
    streaming: RuntimeParameter[bool] = Field(default=False, description="Stream the dataset instead of downloading it.")
    num_examples: Optional[RuntimeParameter[int]] = Field(
        default=None, description="How many rows to yield at most; all of them if None."
    )
    storage_options: Optional[Dict[str, Any]] = Field(
        default=None, description="fsspec storage options for remote file systems."
    )

    _dataset: Any = PrivateAttr(default=None)

    # -- loading -------------------------------------------------------------------------------------------

    def _load_dataset(self) -> Any:
        from datasets import load_dataset

        return load_dataset(
            self.repo_id,  # type: ignore[arg-type]
            self.config,
            split=self.split,
            revision=self.revision,
            streaming=bool(self.streaming),
            storage_options=self.storage_options,
        )

    def load(self) -> None:
        super().load()
        if self._dataset is None:
            self._dataset = self._load_dataset()

    def unload(self) -> None:
        self._dataset = None
        super().unload()

    def __getstate__(self) -> Dict[str, Any]:
        # The worker loads the data itself (`load()` in DoFn.setup): a dataset loaded here must not travel with
        # the job, where an in-memory one would be pickled row by row.
        state = super().__getstate__()
        private = state.get("__pydantic_private__")
        if private and private.get("_dataset") is not None:
            state["__pydantic_private__"] = {**private, "_dataset": None}
        return state

    def _dataset_columns(self) -> Optional[List[str]]:
        if self._dataset is None:
            return None
        names = getattr(self._dataset, "column_names", None)
        return list(names) if names is not None else None

    def _cheap_columns(self) -> Optional[List[str]]:
        """Columns known without loading and without network, or None."""
        return None

    @property
    def outputs(self) -> List[str]:  # type: ignore[override]
        columns = self._dataset_columns()
        if columns is None:
            try:
                columns = self._cheap_columns()
            except ValueError:
                columns = None
        if columns is None:
            # Unknown before loading: accept the mapped names so validation of output_mappings does not fail.
            return list(self.output_mappings)
        return columns

    def known_output_columns(self) -> Optional[List[str]]:
        columns = self._dataset_columns()
        if columns is None:
            columns = self._cheap_columns()
        if columns is None:
            return None
        return [self.output_mappings.get(c, c) for c in columns]

    # -- rows ----------------------------------------------------------------------------------------------

    def process(self, offset: int = 0) -> GeneratorStepOutput:  # type: ignore[override]
        """Yields ``(rows, is_last_batch)`` of at most ``batch_size`` plain-dict rows, starting at ``offset``."""
        if self._dataset is None:
            self.load()
        from datasets import Dataset

        dataset = self._dataset
        batch_size = self.batch_size or 50
        offset = max(offset, 0)
        if isinstance(dataset, Dataset):
            total = len(dataset)
            if self.num_examples is not None:
                total = min(total, self.num_examples)
            for start in range(offset, total, batch_size):
                end = min(start + batch_size, total)
                columns = dataset[start:end]
                yield _columns_to_rows(columns, end - start), end >= total
            return
        rows = iter(dataset)
        yield from _batches(itertools.islice(rows, offset, self.num_examples), batch_size)


def _columns_to_rows(columns: Dict[str, List[Any]], length: int) -> List[Dict[str, Any]]:
    names = list(columns)
    return [{name: columns[name][i] for name in names} for i in range(length)]


def _batches(rows: Iterable[Dict[str, Any]], batch_size: int) -> GeneratorStepOutput:
    """Batches an iterator, flagging the final batch by looking one row ahead."""
    iterator = iter(rows)
    batch = [dict(row) for row in itertools.islice(iterator, batch_size)]
    while batch:
        following = [dict(row) for row in itertools.islice(iterator, batch_size)]
        yield batch, not following
        batch = following


class LoadHubDataset(LoadDataFromHub):
    """``LoadDataFromHub`` under the name distilabel gave it before 1.2 (still used by distilabel's write-ups):
    the same fields and rows; building one warns that the name is deprecated.

    Example::

        load = LoadHubDataset(repo_id="distilabel-internal-testing/instruction-dataset-mini", split="test")
    """

    def __init__(self, **data: Any) -> None:
        warnings.warn(
            "LoadHubDataset is distilabel's old name of LoadDataFromHub; use LoadDataFromHub, which takes the same"
            " arguments.",
            DeprecationWarning,
            stacklevel=2,
        )
        super().__init__(**data)


class LoadDataFromFileSystem(LoadDataFromHub):
    """Yields the rows of JSON lines, JSON, Parquet or CSV files: one file, a directory or a glob.

    The file type is inferred from the extension unless ``filetype`` is given. The columns are read from the
    first file's schema (Parquet), first record (JSON) or header (CSV) so the pipeline can check them before
    it is launched. Example::

        load = LoadDataFromFileSystem(data_files="data/*.jsonl")
    """

    data_files: RuntimeParameter[Union[str, Path, List[Union[str, Path]]]] = Field(
        default=None, description="A file, a directory or a glob pattern (or a list of files) to read."
    )
    filetype: Optional[RuntimeParameter[str]] = Field(
        default=None, description="One of jsonl, json, parquet or csv; inferred from the extension if None."
    )
    # Not used when reading files (distilabel excludes them too).
    repo_id: Optional[str] = Field(default=None, exclude=True)
    config: Optional[str] = Field(default=None, exclude=True)
    revision: Optional[str] = Field(default=None, exclude=True)

    _schema_cache: Optional[Tuple[Any, List[str]]] = PrivateAttr(default=None)
    _malformed_lines: List[str] = PrivateAttr(default_factory=list)
    _clean_copies: Optional[str] = PrivateAttr(default=None)

    @property
    def malformed_input_lines(self) -> int:
        """How many lines of the JSON lines files could not be read (and were skipped) when the step loaded."""
        return len(self._malformed_lines)

    def _where(self) -> str:
        return f"Step {self.name!r} ({type(self).__name__})"

    def _is_remote(self) -> bool:
        specs = self.data_files if isinstance(self.data_files, list) else [self.data_files]
        return any(is_url(str(spec)) for spec in specs)

    def _check_filetype(self) -> Optional[str]:
        if self.filetype is None:
            return None
        filetype = self.filetype.lower().lstrip(".")
        if filetype not in _FILETYPES:
            raise ValueError(f"{self._where()}: filetype {self.filetype!r} is not supported; use one of {list(_FILETYPES)}.")
        return filetype

    def _resolve_files(self) -> Tuple[List[str], str]:
        """The local files to read, and the ``datasets`` builder for them."""
        filetype = self._check_filetype()
        specs = self.data_files if isinstance(self.data_files, list) else [self.data_files]
        files: List[str] = []
        for spec in specs:
            path = str(spec)
            if os.path.isdir(path):
                found = sorted(
                    os.path.join(path, name)
                    for name in os.listdir(path)
                    if not name.startswith(".")
                    and os.path.isfile(os.path.join(path, name))
                    and _extension(name) in ((filetype,) if filetype else _FILETYPES)
                )
                if not found:
                    wanted = f"*.{filetype}" if filetype else "/".join(f"*.{t}" for t in _FILETYPES)
                    raise ValueError(
                        f"{self._where()}: directory {path!r} has no data files ({wanted}). Put the files there,"
                        " point `data_files` at a file or a glob, or set `filetype`."
                    )
                files.extend(found)
            elif os.path.isfile(path):
                files.append(path)
            elif glob.has_magic(path):
                found = sorted(p for p in glob.glob(path, recursive=True) if os.path.isfile(p))
                if not found:
                    raise ValueError(
                        f"{self._where()}: the glob {path!r} matches no file. Check the pattern and that the"
                        " files exist on this machine and on the Beam workers."
                    )
                files.extend(found)
            else:
                raise ValueError(
                    f"{self._where()}: cannot read data_files {path!r}: no such file or directory. Check the path"
                    " (relative paths are relative to the working directory, and the workers must see it too), or"
                    " set `data_files` to an existing file, directory or glob, e.g. with"
                    f" run(parameters={{{self.name!r}: {{'data_files': ...}}}})."
                )
        if filetype is None:
            extensions = sorted({_extension(f) for f in files})
            unknown = [e for e in extensions if e not in _FILETYPES]
            if unknown:
                raise ValueError(
                    f"{self._where()}: cannot infer the file type of {files[:3]} from extension(s) {unknown};"
                    f" set `filetype` to one of {list(_FILETYPES)}."
                )
            builders = {_BUILDERS[e] for e in extensions}
            if len(builders) > 1:
                raise ValueError(
                    f"{self._where()}: data_files mixes file types {extensions}; read one type per step or set"
                    " `filetype`."
                )
            filetype = extensions[0]
        return files, filetype

    def _cheap_columns(self) -> Optional[List[str]]:
        if self.data_files is None or self._is_remote():
            return None
        key = (repr(self.data_files), self.filetype)
        if self._schema_cache is not None and self._schema_cache[0] == key:
            return list(self._schema_cache[1])
        files, filetype = self._resolve_files()
        columns = _read_columns(files[0], filetype, self._where())
        self._schema_cache = (key, columns)
        return list(columns)

    def _load_dataset(self) -> Any:
        from datasets import load_dataset

        if self._is_remote():
            specs = self.data_files if isinstance(self.data_files, list) else [self.data_files]
            files = [str(s) for s in specs]
            filetype = self._check_filetype() or _extension(files[0])
            if filetype not in _FILETYPES:
                raise ValueError(f"{self._where()}: set `filetype` to one of {list(_FILETYPES)} for {files[0]!r}.")
        else:
            files, filetype = self._resolve_files()
            if filetype == "jsonl":
                files = [self._without_malformed_lines(path) for path in files]
        return load_dataset(
            _BUILDERS[filetype],
            data_files=files,
            split=self.split,
            streaming=bool(self.streaming),
            storage_options=self.storage_options,
        )


    def _without_malformed_lines(self, path: str) -> str:
        """``path``, or a copy of it without the lines that are not a JSON object: one bad line must not fail the
        job. Each skipped line is logged with its file and number, and counted (``malformed_input_lines``)."""
        good: List[str] = []
        bad: List[str] = []
        with open(path, encoding="utf-8", errors="surrogateescape") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    line.encode("utf-8")  # a line with bytes that are not UTF-8 (kept as lone surrogates)
                except (ValueError, UnicodeEncodeError) as error:
                    bad.append(f"{path}:{number}: {type(error).__name__}: {error}")
                    continue
                if not isinstance(record, dict):
                    bad.append(f"{path}:{number}: a JSON {type(record).__name__}, not an object")
                    continue
                good.append(line if line.endswith("\n") else line + "\n")
        if not bad:
            return path
        self._malformed_lines.extend(bad)
        _logger.warning(
            "%s: skipped %d malformed line(s) of %r, the rest is read: %s", self._where(), len(bad), path,
            "; ".join(bad[:5]) + (" ..." if len(bad) > 5 else ""),
        )
        if self._clean_copies is None:
            self._clean_copies = tempfile.mkdtemp(prefix="beam-distil-clean-input-")
        copy = os.path.join(self._clean_copies, f"{len(os.listdir(self._clean_copies))}-{os.path.basename(path)}")
        with open(copy, "w", encoding="utf-8") as handle:
            handle.writelines(good)
        return copy

    def unload(self) -> None:
        if self._clean_copies is not None:
            shutil.rmtree(self._clean_copies, ignore_errors=True)
            self._clean_copies = None
        super().unload()


class LoadDataFromDisk(LoadDataFromHub):
    """Yields the rows of a dataset saved with ``datasets``' ``save_to_disk``, or of a ``Distiset`` saved with
    ``Distiset.save_to_disk`` or written by ``Pipeline.run(output_dir=...)`` (``is_distiset=True``), as distilabel's
    ``LoadDataFromDisk``. Each row's id is its position in the dataset, as for every generator.

    The dataset is read on the Beam worker, from a local path or any fsspec URL (``gs://``, ``s3://``...) with
    ``storage_options``; ``datasets`` copies a remote dataset to the worker's disk and memory-maps it. On a remote
    runner the path must be one the workers can read (``gs://`` on Dataflow).

    Attributes:
        dataset_path: the folder ``save_to_disk`` wrote.
        config: with ``is_distiset``, the Distiset configuration (leaf step) to read; ``"default"`` for a
            pipeline with one leaf.
        is_distiset: read a Distiset rather than a dataset.
        keep_in_memory: copy the dataset into memory rather than memory-mapping it (``datasets.load_from_disk``).
        split: the split of a ``DatasetDict`` (a Distiset configuration is one); may be left unset when there is
            only one.
        storage_options, num_examples, batch_size: as for ``LoadDataFromHub``.

    Output columns:
        - dynamic: the dataset's columns.

    Example::

        LoadDataFromDisk(dataset_path="data/my-dataset")                       # Dataset.save_to_disk(...)
        LoadDataFromDisk(dataset_path="gs://bucket/run-1", is_distiset=True, config="leaf_a")
    """

    dataset_path: RuntimeParameter[Union[str, Path]] = Field(
        default=None, description="Path or URL of the dataset or Distiset folder."
    )
    config: Optional[RuntimeParameter[str]] = Field(
        default="default", description="With is_distiset: the configuration of the Distiset to load."
    )
    is_distiset: Optional[RuntimeParameter[bool]] = Field(
        default=False, description="Whether the folder holds a Distiset rather than a dataset."
    )
    keep_in_memory: Optional[RuntimeParameter[bool]] = Field(
        default=None, description="Copy the dataset into memory (see datasets.load_from_disk)."
    )
    split: Optional[RuntimeParameter[str]] = Field(
        default=None, description="The split to load; may be omitted when there is only one."
    )
    # Not used when reading from disk (distilabel excludes repo_id too).
    repo_id: Optional[str] = Field(default=None, exclude=True)
    revision: Optional[str] = Field(default=None, exclude=True)
    streaming: bool = Field(default=False, exclude=True)

    def _where(self) -> str:
        return f"Step {self.name!r} (LoadDataFromDisk)"

    def _is_local(self) -> bool:
        return self.dataset_path is not None and not is_url(str(self.dataset_path))

    def check_ready(self) -> List[str]:
        """A local folder that is missing, or whose configuration or split cannot be chosen, found before launch."""
        if not self._is_local():
            return []
        folder = Path(str(self.dataset_path))
        if not folder.is_dir():
            return [
                f"dataset_path {str(folder)!r} is not a folder on this machine. Point it at the folder `save_to_disk`"
                " wrote (the workers must be able to read it too: on Dataflow, a gs:// URL)."
            ]
        if self.is_distiset:
            configurations = sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name != "distiset_configs")
            if self.config not in configurations:
                return [
                    f"configuration {self.config!r} is not in the Distiset at {str(folder)!r}; its configurations are"
                    f" {configurations}. Set `config` to one of them."
                ]
            folder = folder / str(self.config)
        splits = _saved_splits(folder)
        if splits is not None and (self.split not in splits if self.split is not None else len(splits) > 1):
            return [f"{str(folder)!r} has the splits {splits}: set `split` to the one to load."]
        return []

    def _load_dataset(self) -> Any:
        from datasets import load_from_disk

        from beam_distil.distiset import Distiset

        path = str(self.dataset_path)
        if self.is_distiset:
            distiset = Distiset.load_from_disk(
                path, keep_in_memory=self.keep_in_memory, storage_options=self.storage_options
            )
            if self.config not in distiset:
                raise ValueError(
                    f"{self._where()}: configuration {self.config!r} is not in the Distiset at {path!r}; its"
                    f" configurations are {list(distiset)}. Set `config` to one of them."
                )
            return self._one_split(distiset[self.config])
        dataset = load_from_disk(path, keep_in_memory=self.keep_in_memory, storage_options=self.storage_options)
        return self._one_split(dataset)

    def _one_split(self, dataset: Any) -> Any:
        """The split to read: ``split`` of a ``DatasetDict``, or its only one; a ``Dataset`` as it is."""
        from datasets import DatasetDict

        if not isinstance(dataset, DatasetDict):
            if self.split is not None and self.split != str(getattr(dataset, "split", None)):
                raise ValueError(
                    f"{self._where()}: {str(self.dataset_path)!r} holds one dataset, not splits; leave `split` unset."
                )
            return dataset
        splits = list(dataset)
        if self.split is None and len(splits) == 1:
            return dataset[splits[0]]
        if self.split is None:
            raise ValueError(
                f"{self._where()}: {str(self.dataset_path)!r} has the splits {splits}: set `split` to the one to load."
            )
        if self.split not in dataset:
            raise ValueError(
                f"{self._where()}: {str(self.dataset_path)!r} has no split {self.split!r}: set `split` to one of {splits}."
            )
        return dataset[self.split]

    def _cheap_columns(self) -> Optional[List[str]]:
        """The columns from the ``dataset_info.json`` that ``save_to_disk`` wrote, for a local folder."""
        if not self._is_local():
            return None
        folder = Path(str(self.dataset_path))
        if self.is_distiset:
            folder = folder / str(self.config)
        return _saved_columns(folder, self.split)


def _saved_splits(folder: Path) -> Optional[List[str]]:
    """The splits of a ``DatasetDict`` saved in ``folder`` (its ``dataset_dict.json``), or ``None`` for another
    layout (a single ``Dataset``, a pipeline's output files)."""
    try:
        return [str(split) for split in json.loads((folder / "dataset_dict.json").read_text(encoding="utf-8"))["splits"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _saved_columns(folder: Path, split: Optional[str]) -> Optional[List[str]]:
    """The columns of a dataset (or of one split of a ``DatasetDict``) saved in ``folder``, read from its
    ``dataset_info.json``; ``None`` when the folder does not say (another layout, or several splits and none named)."""
    try:
        splits = _saved_splits(folder)
        if splits is not None:
            chosen = split if split is not None else (splits[0] if len(splits) == 1 else None)
            if chosen not in splits:
                return None
            folder = folder / chosen
        info = folder / "dataset_info.json"
        if not info.is_file():
            return None
        return list(json.loads(info.read_text(encoding="utf-8"))["features"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _extension(name: str) -> str:
    return os.path.splitext(name)[1].lower().lstrip(".")


def _read_columns(path: str, filetype: str, where: str) -> List[str]:
    """Column names from the first file only: Parquet schema, first JSON record or CSV header."""
    try:
        if filetype == "parquet":
            import pyarrow.parquet as pq

            return list(pq.read_schema(path).names)
        if filetype == "csv":
            with open(path, newline="", encoding="utf-8") as handle:
                header = next(csv.reader(handle), None)
            if not header:
                raise ValueError("the file is empty (no CSV header)")
            return header
        if filetype == "jsonl":
            return list(_first_json_line_record(path).keys())
        return list(_first_json_record(path).keys())
    except ValueError as error:
        if str(error).startswith(where):
            raise
        raise ValueError(
            f"{where}: cannot read the columns of {path!r} as {filetype}: {error}. Check that the file is valid"
            " or set `filetype` to its real type."
        ) from error
    except OSError as error:
        raise ValueError(
            f"{where}: cannot read {path!r}: {error}. Check that the file exists and is readable."
        ) from error


def _first_json_line_record(path: str) -> Dict[str, Any]:
    """The first line of a JSON lines file that is a JSON object (malformed lines are skipped at load too)."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                return record
    raise ValueError("no line is a JSON object")


def _first_json_record(path: str) -> Dict[str, Any]:
    """The first object of a JSON lines file or of a JSON array, reading only as much as needed."""
    decoder = json.JSONDecoder()
    text = ""
    with open(path, encoding="utf-8") as handle:
        while True:
            chunk = handle.read(1 << 16)
            text += chunk
            stripped = text.lstrip()
            if stripped.startswith("["):
                stripped = stripped[1:].lstrip()
            try:
                record, _ = decoder.raw_decode(stripped)
            except json.JSONDecodeError:
                if not chunk:
                    raise ValueError("no JSON record found") from None
                continue
            if not isinstance(record, dict):
                raise ValueError(f"the first JSON record is a {type(record).__name__}, not an object")
            return record


__all__ = ["LoadDataFromDisk", "LoadDataFromFileSystem", "LoadDataFromHub", "LoadHubDataset"]
