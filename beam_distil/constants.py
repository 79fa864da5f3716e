"""distilabel's public constants (``distilabel.constants``), at the same path and with the same values.

Code ported from distilabel by renaming the import keeps working::

    from beam_distil.constants import DISTILABEL_METADATA_KEY, DISTISET_CONFIG_FOLDER

    row[DISTILABEL_METADATA_KEY]["raw_output_text_generation_0"]   # what the task's LLM answered
    Path(distiset_dir) / DISTISET_CONFIG_FOLDER / "pipeline.yaml"   # the pipeline that made a saved Distiset

Each constant is imported from the module that uses it, so there is one source for each value. The names of
distilabel's multiprocessing machinery (step input queues, the last-batch flag, the environment variables and
pipeline cache of its worker processes) have nothing to name here: Beam moves the rows. Importing one of them
raises an ``ImportError`` that says what to use instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Final

from beam_distil.distiset import (
    DISTISET_ARTIFACTS_FOLDER,
    DISTISET_CONFIG_FOLDER,
    PIPELINE_CONFIG_FILENAME,
    PIPELINE_LOG_FILENAME,
    STEPS_ARTIFACTS_FOLDER,
    STEPS_OUTPUTS_FOLDER,
)
from beam_distil.errors import DISTILABEL_DOCS_URL
from beam_distil.rows import DISTILABEL_METADATA_KEY

BASE_CACHE_DIR: Final[Path] = Path.home() / ".cache" / "beam_distil"
"""Where the response cache lives when neither ``Pipeline(cache_dir=...)`` nor ``$BEAM_DISTIL_CACHE_DIR`` says
otherwise (distilabel's is ``~/.cache/distilabel``)."""

# The names distilabel gives the properties of each step in its DAG. "step" is also the key of a step in the
# entries of a saved pipeline's ``steps`` and ``routing_batch_functions`` lists, which beam_distil writes and reads.
STEP_ATTR_NAME: Final[str] = "step"
ROUTING_BATCH_FUNCTION_ATTR_NAME: Final[str] = "routing_batch_function"
RECEIVES_ROUTED_BATCHES_ATTR_NAME: Final[str] = "receives_routed_batches"
CONVERGENCE_STEP_ATTR_NAME: Final[str] = "convergence_step"

# Folders of a distilabel run's data directory, which ``Distiset`` reads (``create_distiset``).
STEPS_OUTPUTS_PATH: Final[str] = STEPS_OUTPUTS_FOLDER
STEPS_ARTIFACTS_PATH: Final[str] = STEPS_ARTIFACTS_FOLDER

_NO_COUNTERPART: Dict[str, str] = {
    "INPUT_QUEUE_ATTR_NAME": "beam_distil has no per-step input queues: Beam moves the rows between steps",
    "LAST_BATCH_SENT_FLAG": "beam_distil has no batch manager: a step's batches end when its PCollection ends",
    "PIPELINE_NAME_ENV_NAME": (
        "no environment variable carries the pipeline's name to the workers: give it to the step that needs it "
        "as a field or runtime parameter"
    ),
    "PIPELINE_CACHE_ID_ENV_NAME": (
        "beam_distil keeps no per-pipeline cache id: its response cache is keyed by each request "
        "(`Pipeline(cache_dir=...)`, default BASE_CACHE_DIR)"
    ),
    "PIPELINES_CACHE_DIR": (
        "beam_distil caches LLM responses, not pipeline batches: use BASE_CACHE_DIR or `Pipeline(cache_dir=...)`"
    ),
    "SIGINT_HANDLER_CALLED_ENV_NAME": "Ctrl+C is handled by the Beam runner, not through an environment variable",
}


def __getattr__(name: str) -> object:
    # An ImportError (not the AttributeError a module raises by default) keeps the explanation: `from ... import`
    # replaces an AttributeError's message with its own.
    if name in _NO_COUNTERPART:
        raise ImportError(
            f"distilabel's constants.{name} has no counterpart in beam_distil ({_NO_COUNTERPART[name]}). "
            "Remove the import.",
            name=__name__,
        )
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BASE_CACHE_DIR",
    "CONVERGENCE_STEP_ATTR_NAME",
    "DISTILABEL_DOCS_URL",
    "DISTILABEL_METADATA_KEY",
    "DISTISET_ARTIFACTS_FOLDER",
    "DISTISET_CONFIG_FOLDER",
    "PIPELINE_CONFIG_FILENAME",
    "PIPELINE_LOG_FILENAME",
    "RECEIVES_ROUTED_BATCHES_ATTR_NAME",
    "ROUTING_BATCH_FUNCTION_ATTR_NAME",
    "STEPS_ARTIFACTS_PATH",
    "STEPS_OUTPUTS_PATH",
    "STEP_ATTR_NAME",
]
