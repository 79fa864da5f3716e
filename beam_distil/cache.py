"""Response cache: every completion is stored as it arrives, so a re-run of a killed or failed job pays only
for what was never answered.

The key is a SHA-256 of everything that decides a completion: the backend class, the model's configuration
(without secrets or operational settings such as concurrency, retries and timeouts), the formatted input, the
generation kwargs (structured-output schema included) and the number of generations. One small JSON file per
completion, under ``<cache_dir>/<key[:2]>/<key>.json``::

    Pipeline("name", cache_dir="gs://my-bucket/beam-distil-cache")   # any path Beam's FileSystems can write
    # default: $BEAM_DISTIL_CACHE_DIR, else ~/.cache/beam_distil

Writes are atomic (a local file is written aside and renamed; an object store publishes an object whole on
close), so concurrent writers (threads, processes, workers) and a kill mid-write never leave a torn entry that
is read back; an unreadable entry counts as a miss and is written again.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from typing import TYPE_CHECKING, Any, Dict, Optional, Set, Tuple

from apache_beam.io.filesystems import FileSystems

from beam_distil.helpers import is_url

if TYPE_CHECKING:
    from beam_distil.models.base import FormattedInput, GenerateOutput, LLM

CACHE_DIR_ENV_VAR = "BEAM_DISTIL_CACHE_DIR"


def default_cache_dir() -> str:
    return os.environ.get(CACHE_DIR_ENV_VAR) or os.path.join(os.path.expanduser("~"), ".cache", "beam_distil")


class ResponseCache:
    """Completions by key in ``directory`` (a local path or any ``FileSystems`` URL)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.is_local = not is_url(directory)
        self._made_directories: Set[str] = set()
        # id -> (the client, its identity): holding the client keeps its id from being reused by another.
        self._identities: Dict[int, Tuple[LLM, str]] = {}

    def key(self, llm: LLM, input: FormattedInput, num_generations: int, generation_kwargs: Dict[str, Any]) -> str:
        # The model's part of the key is the same for every call of a client: computed once per client.
        known = self._identities.get(id(llm))
        if known is None:
            identity = json.dumps(
                {"backend": f"{type(llm).__module__}.{type(llm).__qualname__}", "llm": llm.cache_identity()},
                sort_keys=True,
                default=str,
            )
            self._identities[id(llm)] = (llm, identity)
        else:
            identity = known[1]
        call = json.dumps(
            {"input": input, "num_generations": num_generations, "generation_kwargs": generation_kwargs},
            sort_keys=True,
            ensure_ascii=False,
            default=str,
        )
        return hashlib.sha256(f"{identity}\n{call}".encode("utf-8")).hexdigest()

    def _path(self, key: str) -> str:
        return FileSystems.join(self.directory, key[:2], f"{key}.json")

    def get(self, key: str) -> Optional[GenerateOutput]:
        path = self._path(key)
        try:
            if not is_url(path):
                with open(path, "rb") as file:
                    data = file.read()
            else:
                with FileSystems.open(path) as file:
                    data = file.read()
            return json.loads(data)
        except (OSError, ValueError):  # missing, or unreadable: a miss, rewritten on the next answer
            return None

    def put(self, key: str, output: GenerateOutput) -> None:
        path = self._path(key)
        data = json.dumps(output, ensure_ascii=False).encode("utf-8")
        if is_url(path):
            with FileSystems.create(path) as file:
                file.write(data)
            return
        directory = os.path.dirname(path)
        if directory not in self._made_directories:
            os.makedirs(directory, exist_ok=True)
            self._made_directories.add(directory)
        # Unique per process and thread, so concurrent writers never share a temporary file.
        temporary = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            with open(temporary, "wb") as file:
                file.write(data)
            os.replace(temporary, path)
        except BaseException:
            if os.path.exists(temporary):
                os.unlink(temporary)
            raise
