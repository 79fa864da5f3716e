"""The distilabel docs pipeline on Beam: instructions -> 3 models answer -> answers grouped per instruction.

Runs offline by default against the project's local OpenAI-compatible server (started for the run); point it at
a real server with ``--base-url`` and ``OPENAI_API_KEY``. Arguments it doesn't know go to Beam as pipeline
options, e.g. ``--direct_running_mode=multi_processing --direct_num_workers=2``::

    python -m pipelines.docs_pipeline --num-rows 30 --output output/docs_pipeline
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import Iterator, List, Optional, Sequence

from beam_distil.models import LLM, OpenAILLM
from beam_distil.owned_process import tune_owned_process
from beam_distil.pipeline import Pipeline, RoutingBatchFunction
from beam_distil.steps.columns import GroupColumns
from beam_distil.steps.generators import LoadDataFromDicts
from beam_distil.steps.tasks import TextGeneration

DEFAULT_MODELS = ["model-a", "model-b", "model-c"]
"""The local server's models the recipe asks by default."""

SAMPLE_INSTRUCTIONS = [
    "Explain what a PCollection is in one sentence.",
    "Write a haiku about distributed data processing.",
    "Give three tips for writing good unit tests.",
    "What is the difference between a list and a tuple in Python?",
    "Summarize the idea of synthetic data generation.",
    "Name two uses of preference datasets.",
    "Why do LLM pipelines batch requests?",
    "Describe a directed acyclic graph to a child.",
]


def build_docs_pipeline(
    instructions: Sequence[str],
    llms: Sequence[LLM],
    *,
    task_names: Optional[Sequence[str]] = None,
    name: str = "docs-pipeline",
    batch_size: int = 50,
    input_batch_size: int = 50,
    routing: Optional[RoutingBatchFunction] = None,
) -> Pipeline:
    """distilabel's docs pipeline: ``load_instructions`` -> one ``TextGeneration`` per LLM -> ``group_generations``.

    The one builder of this pipeline, used by this recipe, the tests and the benchmarks::

        build_docs_pipeline(["Name a river."], [OpenAILLM(model=m) for m in ("a", "b")], routing=sample_n_steps(1))

    ``task_names`` names the generations (default ``text_generation_<i>``); ``batch_size`` is the generator's,
    ``input_batch_size`` the tasks'; with ``routing`` each batch goes to the generations it chooses.
    """
    names = list(task_names) if task_names is not None else [f"text_generation_{index}" for index in range(len(llms))]
    with Pipeline(name, description="Several models answer the same instructions.") as pipeline:
        load = LoadDataFromDicts(
            name="load_instructions", data=[{"instruction": text} for text in instructions], batch_size=batch_size
        )
        generate = [
            TextGeneration(name=task_name, llm=llm, input_batch_size=input_batch_size)
            for task_name, llm in zip(names, llms)
        ]
        group = GroupColumns(
            name="group_generations",
            columns=["generation", "model_name"],
            output_columns=["generations", "model_names"],
        )
        if routing is not None:
            load >> routing >> generate >> group
        else:
            load >> generate >> group
    return pipeline


@contextlib.contextmanager
def _server_if_needed(base_url: Optional[str], latency: float) -> Iterator[str]:
    if base_url:
        yield base_url
        return
    from beam_distil.testing.openai_server import OpenAICompatibleServer

    with OpenAICompatibleServer(latency=latency) as server:
        print(f"Started the local OpenAI-compatible server at {server.base_url}")
        yield server.base_url


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-rows", type=int, default=24, help="How many instructions (the sample is cycled).")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help="Comma-separated model names.")
    parser.add_argument("--base-url", default=None, help="An OpenAI-compatible server; default: a local one.")
    parser.add_argument("--latency", type=float, default=0.05, help="Latency of the local server, seconds.")
    parser.add_argument("--output", default="output/docs_pipeline", help="Where the Distiset is saved.")
    args, beam_options = parser.parse_known_args(argv)

    instructions = [SAMPLE_INSTRUCTIONS[i % len(SAMPLE_INSTRUCTIONS)] for i in range(args.num_rows)]
    models = [model.strip() for model in args.models.split(",") if model.strip()]
    with _server_if_needed(args.base_url, args.latency) as base_url:
        api_key = os.getenv("OPENAI_API_KEY") or ("local" if not args.base_url else None)
        llms = [OpenAILLM(model=model, base_url=base_url, api_key=api_key) for model in models]
        pipeline = build_docs_pipeline(instructions, llms)
        distiset = pipeline.run(options=beam_options)
    distiset.save_to_disk(args.output)
    first = distiset["default"]["train"][0]
    print(distiset)
    print(f"First row: {first['instruction']!r} -> {first['generations']}")
    print(f"Dataset written to {os.path.abspath(args.output)}")
    return 0


if __name__ == "__main__":
    tune_owned_process()  # this process is the recipe's own (see beam_distil/owned_process.py)
    sys.exit(main())
