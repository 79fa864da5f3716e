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
is read back. An entry that cannot be read, or is not a completion, is a miss (with a warning) and is written
again; a write that fails is a warning and a count (``cache_write_failures``), never a failed row: the run keeps
the completion it paid for. Only answers with text are stored.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import os
import threading
from typing import TYPE_CHECKING, Any, Dict, Optional, Set, Tuple

from apache_beam.io.filesystems import FileSystems

from beam_distil.helpers import is_url

if TYPE_CHECKING:
    from beam_distil.models.base import FormattedInput, GenerateOutput, LLM

CACHE_DIR_ENV_VAR = "BEAM_DISTIL_CACHE_DIR"

logger = logging.getLogger("beam_distil")


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
        self._lock = threading.Lock()
        self._counts: "collections.Counter[str]" = collections.Counter()

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
        # surrogatepass: a lone surrogate in a prompt (text decoded with surrogateescape) still gets a key.
        return hashlib.sha256(f"{identity}\n{call}".encode("utf-8", "surrogatepass")).hexdigest()

    def _path(self, key: str) -> str:
        return FileSystems.join(self.directory, key[:2], f"{key}.json")

    def get(self, key: str) -> Optional[GenerateOutput]:
        """The stored completion, or ``None``: missing, unreadable or not a completion (a miss, with a warning
        for a corrupt entry, which the next answer overwrites)."""
        path = self._path(key)
        try:
            if not is_url(path):
                with open(path, "rb") as file:
                    data = file.read()
            else:
                with FileSystems.open(path) as file:
                    data = file.read()
        except OSError:  # missing: the usual miss
            return None
        try:
            output = json.loads(data)
        except ValueError as error:
            return self._corrupt(path, f"not JSON ({error})")
        problem = _shape_problem(output)
        if problem is not None:
            return self._corrupt(path, problem)
        return output

    def put(self, key: str, output: GenerateOutput) -> bool:
        """Stores ``output``; ``False`` (with a warning, and counted) when the write failed: the completion is
        still used by the run, it just would be paid again by a later one."""
        path = self._path(key)
        try:
            self._write(path, json.dumps(output, ensure_ascii=False).encode("utf-8", "surrogatepass"))
        except (OSError, ValueError) as error:  # Beam's BeamIOError is an OSError
            with self._lock:
                self._counts["cache_write_failures"] += 1
                first = self._counts["cache_write_failures"] == 1
            if first:
                logger.warning(
                    "The response cache %r cannot be written (%s: %s): this run keeps its completions, but a re-run"
                    " would pay for them again. Further write failures are only counted (cache_write_failures).",
                    self.directory, type(error).__name__, error,
                )
            return False
        return True

    def take_counts(self) -> Dict[str, int]:
        """Problems met since the last call (``cache_write_failures``, ``cache_corrupt_entries``), then reset."""
        with self._lock:
            counts, self._counts = dict(self._counts), collections.Counter()
        return counts

    def _corrupt(self, path: str, problem: str) -> None:
        with self._lock:
            self._counts["cache_corrupt_entries"] += 1
        logger.warning("Response cache entry %r is %s: treated as a miss and written again.", path, problem)
        return None

    def _write(self, path: str, data: bytes) -> None:
        directory = os.path.dirname(path)
        if not is_url(path) and directory not in self._made_directories:
            os.makedirs(directory, exist_ok=True)
            self._made_directories.add(directory)
        write_whole(path, data)


def write_whole(path: str, data: bytes) -> None:
    """Writes ``data`` to ``path`` (a local path, whose folder exists, or any ``FileSystems`` URL) so that a reader
    sees the old content or the new, never a torn file: an object store publishes an object whole on close, and a
    local file is written aside and renamed over."""
    if is_url(path):
        with FileSystems.create(path) as file:
            file.write(data)
        return
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


def _shape_problem(output: Any) -> Optional[str]:
    """Why ``output`` is not a ``GenerateOutput`` as the cache stores it, or ``None``."""
    if not isinstance(output, dict):
        return f"a {type(output).__name__}, not a completion"
    generations = output.get("generations")
    if not isinstance(generations, list) or not all(g is None or isinstance(g, str) for g in generations):
        return "a completion without a list of generations"
    statistics = output.get("statistics")
    if not isinstance(statistics, dict) or not all(
        isinstance(statistics.get(name), list) and all(isinstance(n, int) for n in statistics[name])
        for name in ("input_tokens", "output_tokens")
    ):
        return "a completion without token statistics"
    return None
