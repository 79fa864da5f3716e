"""The `Distiset`: the output object of a beam_distil pipeline.

A `Distiset` is a `dict` mapping the name of each leaf step of the pipeline to a
`datasets.DatasetDict` (split ``"train"``). It mirrors the public API of
`distilabel.distiset.Distiset` so code written against distilabel keeps working:
`save_to_disk`, `load_from_disk`, `push_to_hub` and `train_test_split`.

When the pipeline has a single leaf step, its subset is called ``"default"`` (as in
distilabel), so ``load_dataset(repo_id)`` works without naming a configuration.

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

    distiset.push_to_hub("me/my-distiset")  # token from argument or HF_TOKEN
    ```

On-disk layout (the same as distilabel's, so either library can load it)::

    <path>/<subset>/                   one `DatasetDict.save_to_disk` per subset
    <path>/distiset_configs/README.md      dataset card
    <path>/distiset_configs/pipeline.yaml  when the Distiset has `pipeline_yaml`
    <path>/distiset_configs/subsets.json   subset/split names (see `save_to_disk`)
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Optional, Union

import datasets
import fsspec
import yaml
from datasets import Dataset, DatasetDict

from beam_distil.output_files import read_output_rows

logger = logging.getLogger(__name__)

#: Sub-folder holding the non-data files; the name is distilabel's, for compatibility.
DISTISET_CONFIG_FOLDER: Final[str] = "distiset_configs"
PIPELINE_CONFIG_FILENAME: Final[str] = "pipeline.yaml"
CARD_FILENAME: Final[str] = "README.md"
#: beam_distil-only manifest; distilabel ignores it (it skips the config folder).
SUBSETS_FILENAME: Final[str] = "subsets.json"
#: Subset name used when the pipeline has exactly one leaf step.
DEFAULT_SUBSET: Final[str] = "default"
HF_TOKEN_ENV_VAR: Final[str] = "HF_TOKEN"

PathLike = Union[str, "os.PathLike[str]"]

_FRONT_MATTER_RE: Final = re.compile(r"\A---\s*\n(.*?)\n---\s*(?:\n|\Z)", re.DOTALL)


class Distiset(dict):  # type: ignore[type-arg]
    """Mapping of leaf step name -> `datasets.DatasetDict` (split ``"train"``).

    Attributes:
        pipeline_yaml: Text of the serialized pipeline that produced the data, or None.
            Written as ``pipeline.yaml`` by `save_to_disk` and uploaded by `push_to_hub`.
        card_text: Optional user-supplied dataset card (markdown, may start with YAML
            front matter). When None a card is generated from the data.
        statistics: the run's counters per step (rows in/out, LLM requests, failures, input and output
            tokens), as ``{step name: {counter: value}}``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # The arguments are dict's (subsets); the attributes are set afterwards, each instance its own.
        super().__init__(*args, **kwargs)
        self.pipeline_yaml: Optional[str] = None
        self.card_text: Optional[str] = None
        self.statistics: dict[str, dict[str, int]] = {}

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

    # ------------------------------------------------------------------ splitting

    def train_test_split(
        self,
        train_size: float,
        shuffle: bool = True,
        seed: Optional[int] = None,
    ) -> "Distiset":
        """Split the ``"train"`` split of every subset into ``"train"`` and ``"test"``.

        As in distilabel, the Distiset is modified in place and returned.

        Args:
            train_size: Fraction of rows (strictly between 0 and 1) kept in ``"train"``.
            shuffle: Whether to shuffle before splitting.
            seed: Seed for the shuffle, for reproducible splits.

        Raises:
            ValueError: If `train_size` is out of range, or a subset already has
                splits other than ``"train"`` (splitting again would drop them).
        """
        if not 0 < train_size < 1:
            raise ValueError(f"train_size must be a float between 0 and 1, got {train_size!r}")
        for name, dataset_dict in self.items():
            extra = set(dataset_dict) - {"train"}
            if extra:
                raise ValueError(
                    f"Subset {name!r} already has splits {sorted(extra)}; "
                    "train_test_split only splits a Distiset with a single 'train' split."
                )
        for name in list(self):
            self[name] = self[name]["train"].train_test_split(
                train_size=train_size, shuffle=shuffle, seed=seed
            )
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
    ) -> None:
        """Save every subset, the dataset card and the pipeline config.

        Works on any fsspec filesystem (``gs://``, ``s3://``, ``memory://``, ...);
        `storage_options` is passed to the filesystem backend.

        Args:
            distiset_path: Local path or remote URI of the target folder.
            max_shard_size: Passed to `DatasetDict.save_to_disk`.
            num_shards: Shards per split: an int (same for every split, as distilabel
                accepts) or a ``{split: n}`` dict (as `datasets` accepts).
            num_proc: Passed to `DatasetDict.save_to_disk`.
            storage_options: fsspec options for remote filesystems.
            save_card: Write ``README.md``.
            save_pipeline_config: Write ``pipeline.yaml`` (when `pipeline_yaml` is set).
        """
        path = os.fspath(distiset_path)
        for name in self:
            _check_subset_name(name)

        for name, dataset_dict in self.items():
            # `datasets` cannot write a dataset without columns (it needs a schema), so such splits are only
            # recorded in the subsets manifest (written by `save_configs`) and recreated on load.
            storable = DatasetDict({s: ds for s, ds in dataset_dict.items() if ds.num_columns})
            if not storable:
                continue
            storable.save_to_disk(
                posixpath.join(path, name),
                max_shard_size=max_shard_size,
                num_shards=_shards_per_split(storable, num_shards),
                num_proc=num_proc,
                storage_options=storage_options,
            )

        self.save_configs(path, storage_options, save_card, save_pipeline_config)

    def save_configs(
        self,
        distiset_path: PathLike,
        storage_options: Optional[dict[str, Any]] = None,
        save_card: bool = True,
        save_pipeline_config: bool = True,
    ) -> None:
        """Write only ``distiset_configs/`` (subset list, card, pipeline config) into ``distiset_path``: for
        folders whose subsets were written by the pipeline itself (``Pipeline.run(output_dir=...)``)."""
        path = os.fspath(distiset_path)
        fs, _ = fsspec.core.url_to_fs(path, **(storage_options or {}))
        manifest = {name: list(dataset_dict) for name, dataset_dict in self.items()}
        config_dir = posixpath.join(path, DISTISET_CONFIG_FOLDER)
        fs.makedirs(config_dir, exist_ok=True)
        _write_text(fs, posixpath.join(config_dir, SUBSETS_FILENAME), json.dumps({"subsets": manifest}, indent=2))
        if save_card:
            name = posixpath.basename(path.rstrip("/")) or "distiset"
            card = self._card(name=name, repo_id=None, location=path)
            _write_text(fs, posixpath.join(config_dir, CARD_FILENAME), card)
        if save_pipeline_config and self.pipeline_yaml is not None:
            _write_text(fs, posixpath.join(config_dir, PIPELINE_CONFIG_FILENAME), self.pipeline_yaml)

    @classmethod
    def load_from_disk(
        cls,
        distiset_path: PathLike,
        keep_in_memory: Optional[bool] = None,
        storage_options: Optional[dict[str, Any]] = None,
    ) -> "Distiset":
        """Load a Distiset written by `save_to_disk` (ours or distilabel's).

        Args:
            distiset_path: Local path or remote URI of the folder.
            keep_in_memory: Passed to `datasets.load_from_disk`.
            storage_options: fsspec options for remote filesystems.

        Returns:
            The Distiset, with `pipeline_yaml` restored when ``pipeline.yaml`` exists.

        Raises:
            FileNotFoundError: If `distiset_path` is not a directory.
        """
        path = os.fspath(distiset_path)
        fs, fs_path = fsspec.core.url_to_fs(path, **(storage_options or {}))
        if not fs.isdir(fs_path):
            raise FileNotFoundError(f"{path!r} is not a directory written by Distiset.save_to_disk")
        config_dir = posixpath.join(path, DISTISET_CONFIG_FOLDER)

        manifest_file = posixpath.join(config_dir, SUBSETS_FILENAME)
        manifest: Optional[dict[str, list[str]]] = None
        if fs.isfile(manifest_file):
            manifest = json.loads(_read_text(fs, manifest_file))["subsets"]

        if manifest is not None:
            # The manifest keeps the original subset order and ignores stray folders.
            names = list(manifest)
        else:
            # Written by distilabel: every folder except the config one is a subset.
            names = sorted(
                posixpath.basename(entry["name"].rstrip("/"))
                for entry in fs.ls(fs_path, detail=True)
                if entry["type"] == "directory"
            )
            names = [n for n in names if n != DISTISET_CONFIG_FOLDER]

        distiset = cls()
        for name in names:
            subset_path = posixpath.join(path, name)
            loaded: Union[Dataset, DatasetDict, None] = None
            if fs.glob(posixpath.join(fs_path, name, "part-*.parquet")) or fs.glob(posixpath.join(fs_path, name, "part-*.jsonl")):
                # Rows written by the pipeline's own sink (`Pipeline.run(output_dir=...)`), in row-id order.
                loaded = _rows_to_dataset(name, [row for _, row in read_output_rows(subset_path)])
            elif fs.isdir(posixpath.join(fs_path, name)):
                loaded = datasets.load_from_disk(
                    subset_path, keep_in_memory=keep_in_memory, storage_options=storage_options
                )
            # distilabel may have saved bare `Dataset`s; normalise to DatasetDict.
            dataset_dict = loaded if isinstance(loaded, DatasetDict) else DatasetDict()
            if isinstance(loaded, Dataset):
                dataset_dict["train"] = loaded
            if manifest is not None:
                # Re-create the column-less splits that save_to_disk could not write,
                # in the original split order.
                dataset_dict = DatasetDict(
                    {s: dataset_dict[s] if s in dataset_dict else Dataset.from_list([]) for s in manifest[name]}
                )
            distiset[name] = dataset_dict

        pipeline_file = posixpath.join(config_dir, PIPELINE_CONFIG_FILENAME)
        if fs.isfile(pipeline_file):
            distiset.pipeline_yaml = _read_text(fs, pipeline_file)
        return distiset

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

        Subsets without columns (leaves that produced no rows) are skipped with a
        warning: the Hub cannot store a dataset without a schema.

        Args:
            repo_id: ``"<user or org>/<name>"``.
            private: Create the repository as private (no effect if it exists).
            token: Hugging Face token; defaults to the ``HF_TOKEN`` environment variable.
            generate_card: Upload a dataset card (`card_text` if set, else generated).
            include_script: Also upload the script that is running (``sys.argv[0]``).
            **kwargs: Passed to `datasets.DatasetDict.push_to_hub`.

        Raises:
            ValueError: If no token is given and ``HF_TOKEN`` is unset.
        """
        import huggingface_hub  # imported here so tests can patch module attributes

        token = token or os.environ.get(HF_TOKEN_ENV_VAR) or None
        if token is None:
            raise ValueError(
                "push_to_hub needs a Hugging Face token: pass `token=` or set the "
                f"{HF_TOKEN_ENV_VAR} environment variable."
            )

        for name in self:  # validate all before pushing any, to avoid a half-pushed repo
            _check_subset_name(name)
        for name, dataset_dict in self.items():
            if not all(ds.num_columns for ds in dataset_dict.values()):
                logger.warning("Not pushing subset %r: it has no columns (no rows were produced).", name)
                continue
            dataset_dict.push_to_hub(repo_id, config_name=name, private=private, token=token, **kwargs)

        api = huggingface_hub.HfApi()

        def upload(content: bytes, path_in_repo: str) -> None:
            api.upload_file(
                path_or_fileobj=content,
                path_in_repo=path_in_repo,
                repo_id=repo_id,
                repo_type="dataset",
                token=token,
            )

        if generate_card:
            # `DatasetDict.push_to_hub` wrote a README whose YAML front matter
            # (`configs`, `dataset_info`) is how the Hub maps folders to configurations;
            # overwriting it without that metadata would break `load_dataset(repo, name)`.
            remote_meta = _fetch_remote_card_metadata(repo_id, token)
            if remote_meta is None:
                logger.warning("Could not read the README pushed by `datasets`; keeping it instead of our card.")
            else:
                upload(self._card(name=repo_id, repo_id=repo_id, base_metadata=remote_meta).encode(), CARD_FILENAME)
        if self.pipeline_yaml is not None:
            upload(self.pipeline_yaml.encode(), PIPELINE_CONFIG_FILENAME)
        if include_script:
            script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
            if script is not None and script.is_file() and script.suffix == ".py":
                upload(script.read_bytes(), script.name)
            else:
                logger.warning("include_script=True but no Python script is running; nothing uploaded.")

    # ------------------------------------------------------------------ card / repr

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
            "size_categories": _size_category(max((_num_rows(dd) for dd in self.values()), default=0)),
            "tags": ["synthetic", "distilabel", "beam_distil"],
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
        for subset, dataset_dict in self.items():
            for split, ds in dataset_dict.items():
                columns = ", ".join(f"`{c}`" for c in ds.column_names) or "(none)"
                lines.append(f"| {subset} | {split} | {ds.num_rows} | {columns} |")
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
        return "\n".join(lines) + "\n"

    def __repr__(self) -> str:
        # Same shape as distilabel's (and `datasets.DatasetDict`'s) repr.
        body = "\n".join(f"{name}: {dataset_dict}" for name, dataset_dict in self.items())
        body = re.sub(r"^", " " * 4, body, flags=re.M)
        return f"Distiset({{\n{body}\n}})"


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


def _num_rows(dataset_dict: DatasetDict) -> int:
    return sum(ds.num_rows for ds in dataset_dict.values())


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


def _check_subset_name(name: str) -> None:
    # Subset names become folder names and Hub config names.
    if not name or name in {".", "..", DISTISET_CONFIG_FOLDER} or "/" in name or "\\" in name:
        raise ValueError(f"Invalid subset name {name!r}")


def _write_text(fs: fsspec.AbstractFileSystem, path: str, text: str) -> None:
    with fs.open(path, "w", encoding="utf-8") as f:
        f.write(text)


def _read_text(fs: fsspec.AbstractFileSystem, path: str) -> str:
    with fs.open(path, "r", encoding="utf-8") as f:
        return str(f.read())


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
