"""The `Distiset`: the output object of a beam_distil pipeline.

A `Distiset` is a `dict` mapping the name of each leaf step of the pipeline to its data. `Pipeline.run` gives
each leaf a `datasets.DatasetDict` with one ``"train"`` split; as in distilabel, a subset may also be a plain
`datasets.Dataset` (``Distiset({"default": Dataset.from_dict(...)})``), and every method accepts both. It mirrors
the public API of `distilabel.distiset.Distiset` (1.5) so code written against distilabel keeps working:
`save_to_disk`, `load_from_disk`, `push_to_hub`, `train_test_split`, `transform_columns_to_image`, and the
`pipeline_path`, `log_filename_path`, `artifacts_path` and `citations` properties; `create_distiset` builds one
from a folder of run outputs (distilabel's ``steps_outputs/`` layout or ``Pipeline.run(output_dir=...)``'s).

When the pipeline has a single leaf step, its subset is called ``"default"`` (as in distilabel), so
``load_dataset(repo_id)`` works without naming a configuration.

Example:

    ```python
    from beam_distil.distiset import Distiset

    distiset = Distiset.from_rows(
        {"text_generation": [{"instruction": "Hi", "generation": "Hello!"}]},
        pipeline_yaml="pipeline:\\n  name: demo\\n",
    )
    distiset["default"]["train"][0]  # {'instruction': 'Hi', 'generation': 'Hello!'}

    distiset.save_to_disk("my-distiset")  # or "gs://bucket/my-distiset" + storage_options
    same = Distiset.load_from_disk("my-distiset")

    distiset.push_to_hub("me/my-distiset")  # token from the argument, HF_TOKEN or `hf auth login`
    ```

On-disk layout (the same as distilabel's, so either library can load it)::

    <path>/<subset>/                       `Dataset.save_to_disk` or `DatasetDict.save_to_disk`, per subset
    <path>/artifacts/                      a copy of `artifacts_path`, when set
    <path>/distiset_configs/README.md      dataset card
    <path>/distiset_configs/pipeline.yaml  the pipeline, when the Distiset has one
    <path>/distiset_configs/pipeline.log   the run's log (see `save_to_disk`)
    <path>/distiset_configs/subsets.json   subset and split names (beam_distil's; distilabel ignores it)
"""

from __future__ import annotations

import base64
import inspect
import json
import logging
import os
import posixpath
import re
import sys
import tempfile
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Optional, Union

import datasets
import fsspec
import yaml
from datasets import Dataset, DatasetDict
from datasets.filesystems import is_remote_filesystem
from datasets.fingerprint import get_temporary_cache_files_directory

from beam_distil.output_files import read_output_rows
from beam_distil.rows import DISTILABEL_METADATA_KEY
from beam_distil.run_summary import format_summary

if TYPE_CHECKING:
    from beam_distil.pipeline.dag import DAG

logger = logging.getLogger(__name__)

#: Sub-folder holding the non-data files; the name is distilabel's, for compatibility.
DISTISET_CONFIG_FOLDER: Final[str] = "distiset_configs"
#: Sub-folder holding a copy of the steps' artifacts (`Distiset.artifacts_path`); distilabel's name.
DISTISET_ARTIFACTS_FOLDER: Final[str] = "artifacts"
PIPELINE_CONFIG_FILENAME: Final[str] = "pipeline.yaml"
PIPELINE_LOG_FILENAME: Final[str] = "pipeline.log"
CARD_FILENAME: Final[str] = "README.md"
#: Folders of distilabel's run data that `create_distiset` reads: one sub-folder of parquet files per leaf step,
#: and the steps' artifacts.
STEPS_OUTPUTS_FOLDER: Final[str] = "steps_outputs"
STEPS_ARTIFACTS_FOLDER: Final[str] = "steps_artifacts"
#: beam_distil-only manifest; distilabel ignores it (it skips the config folder).
SUBSETS_FILENAME: Final[str] = "subsets.json"
#: Subset name used when the pipeline has exactly one leaf step.
DEFAULT_SUBSET: Final[str] = "default"
HF_TOKEN_ENV_VAR: Final[str] = "HF_TOKEN"
#: Hub tags of every card: distilabel's three, and where the data came from.
CARD_TAGS: Final[list[str]] = ["synthetic", "distilabel", "rlaif", "beam_distil"]

PathLike = Union[str, "os.PathLike[str]"]
#: What a Distiset maps each subset name to.
Subset = Union[Dataset, DatasetDict]

_FRONT_MATTER_RE: Final = re.compile(r"\A---\s*\n(.*?)\n---\s*(?:\n|\Z)", re.DOTALL)


class Distiset(dict):  # type: ignore[type-arg]
    """Mapping of subset name (a leaf step, or ``"default"``) -> `datasets.DatasetDict` or `datasets.Dataset`.

    Attributes:
        pipeline_yaml: Text of the serialized pipeline that produced the data, or None.
            Written as ``pipeline.yaml`` by `save_to_disk` and uploaded by `push_to_hub`.
            Setting `pipeline_path` reads a file into it.
        card_text: Optional user-supplied dataset card (markdown, may start with YAML
            front matter). When None a card is generated from the data.
        statistics: the run's counters per step (rows in/out, LLM requests, failures, input and output
            tokens), as ``{step name: {counter: value}}``. ``pipeline.log`` holds them as a table.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # The arguments are dict's (subsets); the attributes are set afterwards, each instance its own.
        super().__init__(*args, **kwargs)
        self.pipeline_yaml: Optional[str] = None
        self.card_text: Optional[str] = None
        self.statistics: dict[str, dict[str, int]] = {}
        self._pipeline_path: Optional[Path] = None
        self._log_filename_path: Optional[Path] = None
        self._artifacts_path: Optional[Path] = None
        self._citations: Optional[list[str]] = None

    # ------------------------------------------------------------------ building

    @classmethod
    def from_rows(
        cls,
        rows_by_leaf: Mapping[str, Sequence[Mapping[str, Any]]],
        pipeline_yaml: Optional[str] = None,
        card_text: Optional[str] = None,
    ) -> "Distiset":
        """Build a Distiset from the rows collected for each leaf step.

        Args:
            rows_by_leaf: Leaf step name -> rows (dicts) in output order.
            pipeline_yaml: Serialized pipeline, kept as `pipeline_yaml`.
            card_text: Optional dataset card text, kept as `card_text`.

        Returns:
            A Distiset keyed by ``"default"`` when there is one leaf, else by leaf name.
            A leaf without rows becomes an empty `Dataset` with no columns.

        Raises:
            ValueError: If a leaf's rows cannot be converted to Arrow (e.g. a column
                mixing ints and strings); the message names the leaf.
        """
        distiset = cls()
        names = subset_names(list(rows_by_leaf))
        for leaf, rows in rows_by_leaf.items():
            distiset[names[leaf]] = DatasetDict({"train": _rows_to_dataset(leaf, rows)})
        distiset.pipeline_yaml = pipeline_yaml
        distiset.card_text = card_text
        return distiset

    # ------------------------------------------------------------------ distilabel's path properties

    @property
    def pipeline_path(self) -> Optional[Path]:
        """The ``pipeline.yaml`` this Distiset was loaded with or given, or None.

        Setting it reads the file into `pipeline_yaml` at once (the text is what `save_to_disk` and
        `push_to_hub` write), so it raises `FileNotFoundError` for a file that does not exist.
        """
        return self._pipeline_path

    @pipeline_path.setter
    def pipeline_path(self, path: PathLike) -> None:
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(f"pipeline_path {str(file)!r} is not a file: pass the path of a pipeline.yaml")
        self.pipeline_yaml = file.read_text(encoding="utf-8")
        self._pipeline_path = file

    @property
    def log_filename_path(self) -> Optional[Path]:
        """A log file that `save_to_disk` and `push_to_hub` copy as ``pipeline.log``, or None.

        Read when saving (a log still being written is copied as it is then). `load_from_disk` sets it to the
        loaded ``pipeline.log``. Without it, ``pipeline.log`` is the run's summary (`statistics`).
        """
        return self._log_filename_path

    @log_filename_path.setter
    def log_filename_path(self, path: PathLike) -> None:
        self._log_filename_path = Path(path)

    @property
    def artifacts_path(self) -> Optional[Path]:
        """A local folder of step artifacts (``<step>/<artifact>/...``) that `save_to_disk` copies to
        ``<path>/artifacts`` and `push_to_hub` uploads to ``artifacts/``; None when there are none."""
        return self._artifacts_path

    @artifacts_path.setter
    def artifacts_path(self, path: PathLike) -> None:
        self._artifacts_path = Path(path)

    @property
    def citations(self) -> Optional[list[str]]:
        """BibTeX entries listed under "References" in the dataset card; set with a list (kept sorted, once each)."""
        return self._citations

    @citations.setter
    def citations(self, citations: Sequence[str]) -> None:
        self._citations = sorted(set(citations))

    # ------------------------------------------------------------------ splitting

    def train_test_split(
        self,
        train_size: float,
        shuffle: bool = True,
        seed: Optional[int] = None,
    ) -> "Distiset":
        """Split every subset into ``"train"`` and ``"test"``.

        A `Dataset` subset is split as a whole; a `DatasetDict` subset (what `Pipeline.run` returns) has its
        ``"train"`` split split. Each subset becomes a `DatasetDict` with the two splits. As in distilabel,
        the Distiset is modified in place and returned.

        Args:
            train_size: Fraction of rows (strictly between 0 and 1) kept in ``"train"``.
            shuffle: Whether to shuffle before splitting.
            seed: Seed for the shuffle, for reproducible splits.

        Raises:
            ValueError: If `train_size` is out of range, or a `DatasetDict` subset has splits
                other than ``"train"`` (splitting again would drop them).
            TypeError: If a subset is neither a `Dataset` nor a `DatasetDict`.
        """
        if not 0 < train_size < 1:
            raise ValueError(f"train_size must be a float between 0 and 1, got {train_size!r}")
        for name, subset in self.items():
            _check_subset_type(name, subset)
            if isinstance(subset, DatasetDict) and list(subset) != ["train"]:
                raise ValueError(
                    f"Subset {name!r} already has splits {sorted(subset)}; train_test_split splits a Dataset or a "
                    "DatasetDict with a single 'train' split."
                )
        for name in list(self):
            subset = self[name]
            dataset = subset["train"] if isinstance(subset, DatasetDict) else subset
            self[name] = dataset.train_test_split(train_size=train_size, shuffle=shuffle, seed=seed)
        return self

    # ------------------------------------------------------------------ disk I/O

    def save_to_disk(
        self,
        distiset_path: PathLike,
        max_shard_size: Optional[Union[str, int]] = None,
        num_shards: Optional[Union[int, dict[str, int]]] = None,
        num_proc: Optional[int] = None,
        storage_options: Optional[dict[str, Any]] = None,
        save_card: bool = True,
        save_pipeline_config: bool = True,
        save_pipeline_log: bool = True,
    ) -> None:
        """Save every subset, the dataset card, the pipeline config and log, and the artifacts.

        Works on any fsspec filesystem (``gs://``, ``s3://``, ``memory://``, ...); `storage_options` is passed
        to the filesystem backend. Each subset is saved as what it is (`Dataset` or `DatasetDict`), and
        `load_from_disk` gives it back as the same type.

        Args:
            distiset_path: Local path or remote URI of the target folder.
            max_shard_size: Passed to `datasets`' ``save_to_disk``.
            num_shards: Shards per split: an int (the same for every split), or a ``{split: n}`` dict for
                `DatasetDict` subsets (as `datasets` accepts).
            num_proc: Passed to `datasets`' ``save_to_disk``.
            storage_options: fsspec options for remote filesystems.
            save_card: Write ``distiset_configs/README.md``.
            save_pipeline_config: Write ``distiset_configs/pipeline.yaml`` (when `pipeline_yaml` is set).
            save_pipeline_log: Write ``distiset_configs/pipeline.log``: a copy of `log_filename_path` when
                set, else the run's summary table (`statistics`: rows, LLM requests, failures and tokens per
                step); nothing when the Distiset has neither.

        Raises:
            ValueError: If a subset name cannot be a folder name, or `num_shards` is a dict and a subset is a
                `Dataset` (which has no splits).
            TypeError: If a subset is neither a `Dataset` nor a `DatasetDict`.

        Example:
            ```python
            distiset.save_to_disk("my-distiset", save_pipeline_log=False)
            distiset.save_to_disk("gs://bucket/my-distiset", storage_options={"token": "google_default"})
            ```
        """
        path = _path_text(distiset_path)
        for name, subset in self.items():
            self._check_subset_name(name)
            _check_subset_type(name, subset)
            if isinstance(subset, Dataset) and isinstance(num_shards, dict):
                raise ValueError(
                    f"Subset {name!r} is a Dataset, which has no splits: pass num_shards as an int, not {num_shards!r}."
                )

        for name, subset in self.items():
            target = posixpath.join(path, name)
            if isinstance(subset, Dataset):
                # `datasets` cannot write a dataset without columns (it needs a schema), so such subsets are
                # only recorded in the subsets manifest and recreated on load.
                if subset.num_columns:
                    empty = subset.num_rows == 0
                    subset.save_to_disk(
                        target,
                        # `datasets` would write an empty dataset as 0 shards, which it cannot load; it takes
                        # either a shard count or a shard size, so the size goes when the count is forced.
                        max_shard_size=None if empty else max_shard_size,
                        num_shards=1 if empty else num_shards,
                        num_proc=num_proc,
                        storage_options=storage_options,
                    )
                continue
            storable = DatasetDict({s: ds for s, ds in subset.items() if ds.num_columns})
            if storable:
                has_empty_split = any(ds.num_rows == 0 for ds in storable.values())
                storable.save_to_disk(
                    target,
                    max_shard_size=None if has_empty_split else max_shard_size,  # as above, one or the other
                    num_shards=_shards_per_split(storable, num_shards),
                    num_proc=num_proc,
                    storage_options=storage_options,
                )

        self.save_configs(path, storage_options, save_card, save_pipeline_config, save_pipeline_log)
        self._copy_artifacts(path, storage_options)

    def save_configs(
        self,
        distiset_path: PathLike,
        storage_options: Optional[dict[str, Any]] = None,
        save_card: bool = True,
        save_pipeline_config: bool = True,
        save_pipeline_log: bool = True,
    ) -> None:
        """Write only ``distiset_configs/`` (subset list, card, pipeline config and log) into ``distiset_path``:
        for folders whose subsets were written by the pipeline itself (``Pipeline.run(output_dir=...)``)."""
        path = _path_text(distiset_path)
        fs, _ = fsspec.core.url_to_fs(path, **(storage_options or {}))
        # A list of split names for a DatasetDict subset, null for a Dataset subset.
        manifest = {
            name: list(subset) if isinstance(subset, DatasetDict) else None for name, subset in self.items()
        }
        config_dir = posixpath.join(path, DISTISET_CONFIG_FOLDER)
        fs.makedirs(config_dir, exist_ok=True)
        _write_text(fs, posixpath.join(config_dir, SUBSETS_FILENAME), json.dumps({"subsets": manifest}, indent=2))
        if save_card:
            name = posixpath.basename(path.rstrip("/")) or "distiset"
            card = self._card(name=name, repo_id=None, location=path)
            _write_text(fs, posixpath.join(config_dir, CARD_FILENAME), card)
        if save_pipeline_config and self.pipeline_yaml is not None:
            _write_text(fs, posixpath.join(config_dir, PIPELINE_CONFIG_FILENAME), self.pipeline_yaml)
        log = self._pipeline_log_text() if save_pipeline_log else None
        if log is not None:
            _write_text(fs, posixpath.join(config_dir, PIPELINE_LOG_FILENAME), log)

    def _pipeline_log_text(self) -> Optional[str]:
        """What ``pipeline.log`` holds: the `log_filename_path` file, else the run summary, else None.

        beam_distil writes no log file of its own (a run logs through Python's `logging`, and on Dataflow
        through the workers' logs); what it reports at the end of every run is the summary table of its
        counters, so that is the log a saved Distiset keeps.
        """
        if self.log_filename_path is not None:
            if self.log_filename_path.is_file():
                return self.log_filename_path.read_text(encoding="utf-8")
            logger.warning(
                "log_filename_path %s is not a file; pipeline.log gets the run summary.", self.log_filename_path
            )
        if self.statistics:
            return f"Run summary (Beam counters per step):\n{format_summary(self.statistics)}\n"
        return None

    def _copy_artifacts(self, distiset_path: str, storage_options: Optional[dict[str, Any]]) -> None:
        """Copy every file under `artifacts_path` to ``<distiset_path>/artifacts/``, keeping the tree."""
        if self.artifacts_path is None:
            return
        source = self.artifacts_path
        if not source.is_dir():
            logger.warning("artifacts_path %s is not a folder; no artifacts saved.", source)
            return
        fs, _ = fsspec.core.url_to_fs(distiset_path, **(storage_options or {}))
        target_root = posixpath.join(distiset_path, DISTISET_ARTIFACTS_FOLDER)
        for file in sorted(p for p in source.rglob("*") if p.is_file()):
            target = posixpath.join(target_root, *file.relative_to(source).parts)
            fs.makedirs(posixpath.dirname(target), exist_ok=True)
            fs.put_file(str(file), target)

    @classmethod
    def load_from_disk(
        cls,
        distiset_path: PathLike,
        keep_in_memory: Optional[bool] = None,
        storage_options: Optional[dict[str, Any]] = None,
        download_dir: Optional[PathLike] = None,
    ) -> "Distiset":
        """Load a Distiset written by `save_to_disk` (ours or distilabel's) or by ``Pipeline.run(output_dir=...)``.

        As in distilabel, a folder on a remote filesystem is first copied to `download_dir` (default: a
        temporary folder removed when the process exits) and read from there, so `pipeline_path`,
        `log_filename_path` and `artifacts_path` are local paths.

        Args:
            distiset_path: Local path or remote URI of the folder.
            keep_in_memory: Passed to `datasets.load_from_disk`.
            storage_options: fsspec options for remote filesystems.
            download_dir: Local folder a remote Distiset is copied into; ignored for a local one.

        Returns:
            The Distiset, each subset a `Dataset` or `DatasetDict` as it was saved, with `pipeline_yaml`,
            `pipeline_path` and `log_filename_path` set when ``distiset_configs/`` holds ``pipeline.yaml`` and
            ``pipeline.log``, and `artifacts_path` when there is an ``artifacts/`` folder.

        Raises:
            FileNotFoundError: If `distiset_path` is not a directory.
        """
        uri = _path_text(distiset_path)
        fs, fs_path = fsspec.core.url_to_fs(uri, **(storage_options or {}))
        if not fs.isdir(fs_path):
            raise FileNotFoundError(f"{uri!r} is not a directory written by Distiset.save_to_disk")
        if is_remote_filesystem(fs):
            local = Path(download_dir) if download_dir is not None else (
                Path(tempfile.mkdtemp(prefix="distiset-", dir=get_temporary_cache_files_directory())) / "distiset"
            )
            # The trailing slashes copy the folder's content into `local` (not a sub-folder of it).
            fs.get(fs_path.rstrip("/") + "/", str(local) + "/", recursive=True)
        else:
            local = Path(fs_path)

        config_dir = local / DISTISET_CONFIG_FOLDER
        manifest_file = config_dir / SUBSETS_FILENAME
        manifest: Optional[dict[str, Optional[list[str]]]] = None
        if manifest_file.is_file():
            manifest = json.loads(manifest_file.read_text(encoding="utf-8"))["subsets"]
        if manifest is not None:
            # The manifest keeps the original subset order and ignores stray folders.
            names = list(manifest)
        else:
            # Written by distilabel: every folder except the config and artifacts ones is a subset.
            reserved = {DISTISET_CONFIG_FOLDER, DISTISET_ARTIFACTS_FOLDER}
            names = sorted(entry.name for entry in local.iterdir() if entry.is_dir() and entry.name not in reserved)

        distiset = cls()
        for name in names:
            loaded = _read_subset(local / name, keep_in_memory)
            if manifest is None or isinstance(loaded, Dataset):
                distiset[name] = loaded
            elif manifest[name] is None:
                # A Dataset subset without columns, which `datasets` could not write, comes back empty.
                distiset[name] = Dataset.from_list([])
            else:
                # Likewise for splits without columns, re-created empty in the saved order.
                saved = loaded if loaded is not None else DatasetDict()
                empty = Dataset.from_list([])
                distiset[name] = DatasetDict({s: saved[s] if s in saved else empty for s in manifest[name]})

        if (config_dir / PIPELINE_CONFIG_FILENAME).is_file():
            distiset.pipeline_path = config_dir / PIPELINE_CONFIG_FILENAME
        if (config_dir / PIPELINE_LOG_FILENAME).is_file():
            distiset.log_filename_path = config_dir / PIPELINE_LOG_FILENAME
        if (local / DISTISET_ARTIFACTS_FOLDER).is_dir() and DISTISET_ARTIFACTS_FOLDER not in distiset:
            distiset.artifacts_path = local / DISTISET_ARTIFACTS_FOLDER
        return distiset

    # ------------------------------------------------------------------ images

    def transform_columns_to_image(self, columns: Union[str, Sequence[str]]) -> "Distiset":
        """Turn columns of base64-encoded images (what distilabel's image tasks write) into
        `datasets.Image` columns, in every subset and split that has them, so the Hub's viewer shows
        the images and reading a row gives a `PIL.Image.Image` (Pillow needed to read them).

        Modifies the Distiset in place and returns it, as distilabel does.

        Raises:
            ValueError: If no subset has one of `columns` (a misspelt name would otherwise do nothing).

        Example:
            ```python
            distiset.transform_columns_to_image("image").push_to_hub("me/images")
            ```
        """
        wanted = [columns] if isinstance(columns, str) else list(columns)
        seen: set[str] = set()
        for name in list(self):
            subset = self[name]
            _check_subset_type(name, subset)
            if isinstance(subset, Dataset):
                seen.update(c for c in wanted if c in subset.column_names)
                self[name] = _with_image_columns(subset, wanted)
            else:
                for split in list(subset):
                    seen.update(c for c in wanted if c in subset[split].column_names)
                    subset[split] = _with_image_columns(subset[split], wanted)
        absent = [c for c in wanted if c not in seen]
        if absent:
            raise ValueError(f"transform_columns_to_image: no subset has the column(s) {absent}; columns are: "
                             f"{sorted({c for _, ds in self._datasets() for c in ds.column_names})}")
        return self

    # ------------------------------------------------------------------ hub

    def push_to_hub(
        self,
        repo_id: str,
        private: bool = False,
        token: Optional[str] = None,
        generate_card: bool = True,
        include_script: bool = False,
        **kwargs: Any,
    ) -> None:
        """Push each subset as a configuration of the dataset repo `repo_id`.

        Then uploads the dataset card, ``pipeline.yaml`` and ``pipeline.log`` (what `save_to_disk` writes),
        the `artifacts_path` folder as ``artifacts/``, and with `include_script` the running script. Subsets
        without columns (leaves that produced no rows) are skipped with a warning: the Hub cannot store a
        dataset without a schema.

        Args:
            repo_id: ``"<user or org>/<name>"``.
            private: Create the repository as private (no effect if it exists).
            token: Hugging Face token; defaults to ``HF_TOKEN``, then the token saved by ``hf auth login``.
            generate_card: Upload a dataset card (`card_text` if set, else generated).
            include_script: Also upload the script that is running (``sys.argv[0]``).
            **kwargs: Passed to `datasets.Dataset.push_to_hub` / `datasets.DatasetDict.push_to_hub`.

        Raises:
            ValueError: If no token is given, ``HF_TOKEN`` is unset and no token was saved by a login.
            TypeError: If a subset is neither a `Dataset` nor a `DatasetDict`.
        """
        import huggingface_hub  # imported here so tests can patch module attributes

        token = token or os.environ.get(HF_TOKEN_ENV_VAR) or huggingface_hub.get_token()
        if not token:
            raise ValueError(
                "push_to_hub needs a Hugging Face token: pass `token=`, set the "
                f"{HF_TOKEN_ENV_VAR} environment variable or log in with `hf auth login`."
            )

        for name, subset in self.items():  # validate all before pushing any, to avoid a half-pushed repo
            self._check_subset_name(name)
            _check_subset_type(name, subset)
        for name, subset in self.items():
            if not all(ds.num_columns for ds in _splits(subset).values()):
                logger.warning("Not pushing subset %r: it has no columns (no rows were produced).", name)
                continue
            subset.push_to_hub(repo_id, config_name=name, private=private, token=token, **kwargs)

        api = huggingface_hub.HfApi()

        def upload(content: bytes, path_in_repo: str) -> None:
            api.upload_file(
                path_or_fileobj=content,
                path_in_repo=path_in_repo,
                repo_id=repo_id,
                repo_type="dataset",
                token=token,
            )

        if self.artifacts_path is not None and self.artifacts_path.is_dir():
            api.upload_folder(
                folder_path=str(self.artifacts_path),
                path_in_repo=DISTISET_ARTIFACTS_FOLDER,
                repo_id=repo_id,
                repo_type="dataset",
                token=token,
                commit_message="Include pipeline artifacts",
            )
        if generate_card:
            # `push_to_hub` of `datasets` wrote a README whose YAML front matter
            # (`configs`, `dataset_info`) is how the Hub maps folders to configurations;
            # overwriting it without that metadata would break `load_dataset(repo, name)`.
            remote_meta = _fetch_remote_card_metadata(repo_id, token)
            if remote_meta is None:
                logger.warning("Could not read the README pushed by `datasets`; keeping it instead of our card.")
            else:
                upload(self._card(name=repo_id, repo_id=repo_id, base_metadata=remote_meta).encode(), CARD_FILENAME)
        if self.pipeline_yaml is not None:
            upload(self.pipeline_yaml.encode(), PIPELINE_CONFIG_FILENAME)
        log = self._pipeline_log_text()
        if log is not None:
            upload(log.encode(), PIPELINE_LOG_FILENAME)
        if include_script:
            script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
            if script is not None and script.is_file() and script.suffix == ".py":
                upload(script.read_bytes(), script.name)
            else:
                logger.warning("include_script=True but no Python script is running; nothing uploaded.")

    # ------------------------------------------------------------------ card / repr

    def _datasets(self) -> list[tuple[str, Dataset]]:
        """Every (subset, Dataset) pair: each split of a DatasetDict subset, or the subset itself."""
        return [(name, ds) for name, subset in self.items() for ds in _splits(subset).values()]

    def _check_subset_name(self, name: str) -> None:
        # Subset names become folder names and Hub config names.
        reserved = {".", "..", DISTISET_CONFIG_FOLDER}
        if self.artifacts_path is not None:
            reserved.add(DISTISET_ARTIFACTS_FOLDER)
        if not isinstance(name, str) or not name or name in reserved or "/" in name or "\\" in name:
            raise ValueError(
                f"Invalid subset name {name!r}: it becomes a folder and a Hub configuration name, so it must be "
                f"non-empty, without '/' or '\\', and not one of {sorted(reserved)}."
            )

    def _card(
        self,
        name: str,
        repo_id: Optional[str],
        base_metadata: Optional[dict[str, Any]] = None,
        location: Optional[str] = None,
    ) -> str:
        """Render README.md: metadata (base, then ours, then the user's) + body."""
        user_meta, user_body = _split_front_matter(self.card_text) if self.card_text else ({}, None)
        metadata = {
            **(base_metadata or {}),
            "size_categories": _size_category(max((_num_rows(s) for s in self.values()), default=0)),
            "tags": list(CARD_TAGS),
            **user_meta,
        }
        body = user_body if user_body is not None else self._card_body(name, repo_id, location or name)
        return f"---\n{yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True)}---\n\n{body}"

    def _card_body(self, name: str, repo_id: Optional[str], location: str) -> str:
        lines = [
            f"# {name}",
            "",
            "Synthetic dataset generated with beam_distil (distilabel pipelines on Apache Beam).",
            "",
            "## Subsets",
            "",
            "| Subset | Split | Rows | Columns |",
            "|---|---|---|---|",
        ]
        for subset_name, subset in self.items():
            for split, ds in _splits(subset).items():
                columns = ", ".join(f"`{c}`" for c in ds.column_names) or "(none)"
                split_name = split if isinstance(subset, DatasetDict) else "-"  # a Dataset subset has no splits
                lines.append(f"| {subset_name} | {split_name} | {ds.num_rows} | {columns} |")
        lines += ["", "## Load it", ""]
        if repo_id is None:
            lines += [
                "```python",
                "from beam_distil.distiset import Distiset",
                "",
                f"distiset = Distiset.load_from_disk({location!r})",
                "```",
            ]
        else:
            lines += ["```python", "from datasets import load_dataset", ""]
            lines += [f'ds = load_dataset("{repo_id}", "{subset}")' for subset in self]
            lines += ["```"]
        if self.pipeline_yaml is not None:
            lines += [
                "",
                "## Pipeline",
                "",
                f"The pipeline that generated this dataset is in `{PIPELINE_CONFIG_FILENAME}`.",
            ]
        if self.citations:
            lines += ["", "## References", ""]
            for citation in self.citations:
                lines += ["```", citation.strip(), "```", ""]
            lines.pop()
        return "\n".join(lines) + "\n"

    def __repr__(self) -> str:
        # Same shape as distilabel's (and `datasets.DatasetDict`'s) repr.
        body = "\n".join(f"{name}: {subset}" for name, subset in self.items())
        body = re.sub(r"^", " " * 4, body, flags=re.M)
        return f"Distiset({{\n{body}\n}})"


# ---------------------------------------------------------------------- distilabel's builder


def create_distiset(
    data_dir: PathLike,
    pipeline_path: Optional[PathLike] = None,
    log_filename_path: Optional[PathLike] = None,
    enable_metadata: bool = False,
    dag: Optional["DAG"] = None,
) -> Distiset:
    """Build a `Distiset` from the folder a pipeline wrote its outputs to, as distilabel's `create_distiset` does.

    Two layouts are read:

    - distilabel's: ``<data_dir>/steps_outputs/<leaf step>/**/*.parquet`` (one subset per leaf folder), with
      ``<data_dir>/steps_artifacts/`` as the artifacts and ``<data_dir>/pipeline.yaml`` / ``pipeline.log``;
    - beam_distil's ``Pipeline.run(output_dir=...)`` folder (or a `Distiset.save_to_disk` one), read with
      `Distiset.load_from_disk`.

    Args:
        data_dir: The folder (local).
        pipeline_path: The ``pipeline.yaml`` to attach; by default ``<data_dir>/pipeline.yaml`` when it exists
            (else, for beam_distil's layout, the one in ``distiset_configs/``).
        log_filename_path: The log to attach as ``pipeline.log``; found the same way by default.
        enable_metadata: Keep the ``distilabel_metadata`` column; by default it is dropped, as distilabel does.
        dag: The pipeline's DAG; the ``Citations:`` sections of its steps' docstrings become `citations`.

    Returns:
        The Distiset: one ``"train"`` split per subset, the subset called ``"default"`` when there is one.
        A leaf folder without files is skipped with a warning, as in distilabel.

    Raises:
        FileNotFoundError: If `data_dir` is not a folder.

    Example:
        ```python
        from beam_distil.distiset import create_distiset

        distiset = create_distiset("outputs/my-run")  # what Pipeline.run(output_dir="outputs/my-run") wrote
        ```
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(
            f"create_distiset: {str(root)!r} is not a folder; pass the folder the pipeline wrote its outputs to."
        )
    outputs = root / STEPS_OUTPUTS_FOLDER
    if outputs.is_dir():
        distiset = Distiset()
        for folder in sorted(p for p in outputs.iterdir() if p.is_dir()):
            files = sorted(str(f) for f in folder.rglob("*") if f.is_file() and not f.name.startswith("."))
            if not files:
                logger.warning("Step %r wrote no output files; it has no subset. Did it produce any rows?",
                               folder.name)
                continue
            try:
                distiset[folder.name] = datasets.load_dataset(
                    "parquet", name=folder.name, data_files={"train": files}
                )
            except (ValueError, TypeError) as exc:  # pyarrow.ArrowInvalid subclasses ValueError
                logger.warning("Could not read the outputs of step %r in %s: %s", folder.name, folder, exc)
        if len(distiset) == 1:
            distiset[DEFAULT_SUBSET] = distiset.pop(next(iter(distiset)))
        artifacts = root / STEPS_ARTIFACTS_FOLDER
        if artifacts.is_dir() and any(p.is_file() for p in artifacts.rglob("*")):
            distiset.artifacts_path = artifacts
        default_config_dir = root
    else:
        distiset = Distiset.load_from_disk(root)
        default_config_dir = root / DISTISET_CONFIG_FOLDER

    if not enable_metadata:
        for name in list(distiset):
            subset = distiset[name]
            if isinstance(subset, Dataset):
                distiset[name] = _without_metadata(subset)
            else:
                distiset[name] = DatasetDict({split: _without_metadata(ds) for split, ds in subset.items()})

    pipeline_file = Path(pipeline_path) if pipeline_path is not None else default_config_dir / PIPELINE_CONFIG_FILENAME
    if pipeline_path is not None or pipeline_file.is_file():
        distiset.pipeline_path = pipeline_file
    log_file = Path(log_filename_path) if log_filename_path is not None else default_config_dir / PIPELINE_LOG_FILENAME
    if log_filename_path is not None or log_file.is_file():
        distiset.log_filename_path = log_file
    if dag is not None:
        distiset.citations = [c for step in dag.steps.values() for c in _docstring_citations(type(step).__doc__)]
    return distiset


def _without_metadata(dataset: Dataset) -> Dataset:
    if DISTILABEL_METADATA_KEY in dataset.column_names:
        return dataset.remove_columns(DISTILABEL_METADATA_KEY)
    return dataset


def _docstring_citations(docstring: Optional[str]) -> list[str]:
    """The fenced blocks (BibTeX) of a Google-style ``Citations:`` section, as distilabel's steps write them."""
    if not docstring:
        return []
    lines = inspect.cleandoc(docstring).splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Citations:")
    except StopIteration:
        return []
    citations: list[str] = []
    block: Optional[list[str]] = None
    for line in lines[start + 1 :]:
        stripped = line.strip()
        if stripped.startswith("```"):
            if block is None:
                block = []
            else:
                citations.append(textwrap.dedent("\n".join(block)).strip())
                block = None
        elif block is not None:
            block.append(line)
        elif stripped and not line.startswith((" ", "\t")):
            break  # the next section
    return citations


# ---------------------------------------------------------------------- helpers


def subset_names(leaves: Sequence[str]) -> dict[str, str]:
    """Leaf step name -> Distiset subset name: ``"default"`` when there is one leaf, else the leaf's name."""
    return {leaf: DEFAULT_SUBSET if len(leaves) == 1 else leaf for leaf in leaves}


def _rows_to_dataset(leaf: str, rows: Sequence[Mapping[str, Any]]) -> Dataset:
    """Rows -> Dataset, keeping row order and every column seen in any row."""
    if not rows:
        return Dataset.from_list([])
    # `Dataset.from_list` takes the columns of the first row only; steps may add
    # optional keys to some rows, so take the union (first-seen order) and fill with None.
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    normalised = [{c: row.get(c) for c in columns} for row in rows]
    try:
        return Dataset.from_list(normalised)
    except (ValueError, TypeError):  # pyarrow.ArrowInvalid subclasses ValueError
        pass
    # A column whose values have no common Arrow type (a bad input row kept next to good ones, a number
    # where other rows have text) must not cost the whole run: those columns are stored as JSON text.
    mixed = [column for column in columns if not _arrow_compatible([row[column] for row in normalised])]
    logger.warning(
        "Leaf %r: columns %s mix value types that one Arrow column cannot hold; they are stored as JSON"
        " strings (json.loads gives the values back).",
        leaf,
        mixed,
    )
    for row in normalised:
        for column in mixed:
            if row[column] is not None:
                row[column] = json.dumps(row[column], default=str, ensure_ascii=False)
    try:
        return Dataset.from_list(normalised)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"Cannot build the dataset of leaf {leaf!r}: {exc}") from exc


def _arrow_compatible(values: list) -> bool:
    try:
        Dataset.from_dict({"column": values})
    except (ValueError, TypeError):
        return False
    return True


def _num_rows(subset: Subset) -> int:
    return sum(ds.num_rows for ds in _splits(subset).values())


def _splits(subset: Subset) -> dict[str, Dataset]:
    """A subset's datasets by split; a `Dataset` subset is its own ``"train"`` split (as ``push_to_hub`` stores it)."""
    return dict(subset) if isinstance(subset, DatasetDict) else {"train": subset}


def _check_subset_type(name: str, subset: Any) -> None:
    if not isinstance(subset, (Dataset, DatasetDict)):
        raise TypeError(
            f"Subset {name!r} is a {type(subset).__name__}; a Distiset maps each subset name to a "
            "datasets.Dataset or a datasets.DatasetDict (e.g. Dataset.from_list(rows))."
        )


def _path_text(path: PathLike) -> str:
    # `str` rather than `os.fspath`: a `upath.UPath` of a remote location gives its URI (with the protocol).
    return str(path)


def _read_subset(folder: Path, keep_in_memory: Optional[bool]) -> Optional[Subset]:
    """One subset's folder as it was written: the pipeline's own part files (a ``"train"`` split in row-id
    order), or what `datasets` saved (a Dataset or a DatasetDict); None when there is no folder."""
    if any(folder.glob("part-*.parquet")) or any(folder.glob("part-*.jsonl")):
        rows = [row for _, row in read_output_rows(str(folder))]
        return DatasetDict({"train": _rows_to_dataset(folder.name, rows)})
    if folder.is_dir():
        return datasets.load_from_disk(str(folder), keep_in_memory=keep_in_memory)
    return None


def _with_image_columns(dataset: Dataset, columns: Sequence[str]) -> Dataset:
    """`dataset` with each of `columns` it has turned from base64 text into a `datasets.Image` column."""
    present = [c for c in columns if c in dataset.column_names]
    if not present:
        return dataset
    features = dataset.features.copy()
    for column in present:
        features[column] = datasets.Image(decode=True)

    def decode(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        return {
            column: [None if v is None else {"bytes": base64.b64decode(v), "path": None} for v in batch[column]]
            for column in present
        }

    return dataset.map(decode, batched=True, features=features)


def _size_category(n: int) -> str:
    """Hugging Face `size_categories` bucket for `n` rows."""
    bounds = [(10**3, "n<1K"), (10**4, "1K<n<10K"), (10**5, "10K<n<100K"), (10**6, "100K<n<1M"),
              (10**7, "1M<n<10M"), (10**8, "10M<n<100M"), (10**9, "100M<n<1B")]  # fmt: skip
    for bound, label in bounds:
        if n < bound:
            return label
    return "n>1B"


def _shards_per_split(
    dataset_dict: DatasetDict, num_shards: Optional[Union[int, dict[str, int]]]
) -> dict[str, Optional[int]]:
    """`datasets` wants ``{split: n}``; also force 1 shard for empty splits, which
    `datasets` would otherwise write with 0 shards and then fail to load."""
    shards: dict[str, Optional[int]] = {}
    for split, ds in dataset_dict.items():
        n = num_shards.get(split) if isinstance(num_shards, dict) else num_shards
        shards[split] = 1 if ds.num_rows == 0 else n
    return shards


def _write_text(fs: fsspec.AbstractFileSystem, path: str, text: str) -> None:
    with fs.open(path, "w", encoding="utf-8") as f:
        f.write(text)


def _split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """Split a markdown card into (YAML metadata, body)."""
    match = _FRONT_MATTER_RE.match(text)
    if not match:
        return {}, text
    metadata = yaml.safe_load(match.group(1)) or {}
    return (metadata if isinstance(metadata, dict) else {}), text[match.end() :].lstrip("\n")


def _fetch_remote_card_metadata(repo_id: str, token: str) -> Optional[dict[str, Any]]:
    """Front matter of the repo's README.md, or None if it cannot be read."""
    import huggingface_hub

    try:
        local = huggingface_hub.hf_hub_download(
            repo_id=repo_id, filename=CARD_FILENAME, repo_type="dataset", token=token
        )
    except Exception as exc:  # noqa: BLE001 - any failure means "keep the remote card"
        # Only the exception type: messages from HTTP layers may echo request details.
        logger.warning("Downloading %s from %s failed (%s).", CARD_FILENAME, repo_id, type(exc).__name__)
        return None
    return _split_front_matter(Path(local).read_text(encoding="utf-8"))[0]
