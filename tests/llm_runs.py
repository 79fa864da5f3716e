"""Running an LLM in tests: one input through a loaded client (with or without its retries), or a one-task pipeline
over instructions."""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

from beam_distil.models import LLM
from beam_distil.models.event_loop import run_coroutine
from beam_distil.pipeline import Pipeline
from beam_distil.steps import LoadDataFromDicts
from beam_distil.steps.tasks import TextGeneration


def generate_one(llm: LLM, input: Any, **kwargs: Any) -> Dict[str, Any]:
    """``input``'s output through ``llm.generate`` (with the client's limits and retries), loaded for the call."""
    llm.load()
    try:
        return llm.generate([input], **kwargs)[0]
    finally:
        llm.unload()


def agenerate_once(llm: LLM, input: Any, **kwargs: Any) -> Dict[str, Any]:
    """``input``'s output from one ``llm.agenerate`` call (one request, no retries), loaded for the call."""
    llm.load()
    try:
        return run_coroutine(llm.agenerate(input, **kwargs))
    finally:
        llm.unload()


def run_text_generation(llm: LLM, instructions: List[str], **task_kwargs: Any) -> Tuple[Pipeline, List[Dict[str, Any]]]:
    """A pipeline of ``instructions`` -> ``TextGeneration(name="gen", llm=llm)``, run, and its rows."""
    with Pipeline("text-generation") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": text} for text in instructions])
        load >> TextGeneration(name="gen", llm=llm, **task_kwargs)
    return pipeline, pipeline.run()["default"]["train"].to_list()
