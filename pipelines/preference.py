"""Preference dataset (DPO) recipe: several models answer each instruction, a judge rates the answers
(UltraFeedback), and the best and worst answers become `chosen` and `rejected`.

By default everything runs offline on the embedded SmolLM2-135M-Instruct through llama.cpp: two generators
(sampling at two temperatures) and the same model as judge, answering in JSON so that its ratings parse.
With ``--backend openai`` the models are OpenAI-compatible (``--base-url``, ``OPENAI_API_KEY``)::

    python -m pipelines.preference --num-rows 8 --output output/preference
    python -m pipelines.preference --backend openai --models gpt-4o-mini,gpt-4.1-mini --judge gpt-4o
    python -m pipelines.preference --instructions my_prompts.jsonl       # a file or folder with `instruction`
    python -m pipelines.preference --dataset path/to/local/dataset --split train
    python -m pipelines.preference --config preference.yaml             # the same options as YAML keys

Arguments it does not know go to Beam as pipeline options (``--direct_num_workers=4``, ``--runner=...``).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Dict, List, Optional

import yaml

from beam_distil.models import LLM, LlamaCppLLM, OpenAILLM
from beam_distil.owned_process import tune_owned_process
from beam_distil.pipeline import Pipeline
from beam_distil.steps import (
    FormatTextGenerationDPO,
    GroupColumns,
    LoadDataFromDicts,
    LoadDataFromFileSystem,
    LoadDataFromHub,
)
from beam_distil.steps.base import GeneratorStep
from beam_distil.steps.tasks import TextGeneration, UltraFeedback

SAMPLE_INSTRUCTIONS = [
    "Give one tip for staying focused while studying.",
    "What is the capital of France?",
    "Write a short sentence about the sea.",
    "Name three fruits that are red.",
    "Explain what a computer program is in one sentence.",
    "Suggest a name for a friendly robot.",
    "What should I pack for a day at the beach?",
    "Why do leaves change colour in autumn?",
]

# Local runs use both cores: llama.cpp runs one generation at a time per process.
DEFAULT_BEAM_OPTIONS = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]


def _generators(backend: str, models: List[str], base_url: Optional[str], max_new_tokens: int) -> List[LLM]:
    if backend == "openai":
        return [
            OpenAILLM(model=model, base_url=base_url, generation_kwargs={"max_new_tokens": max_new_tokens})
            if base_url else OpenAILLM(model=model, generation_kwargs={"max_new_tokens": max_new_tokens})
            for model in models
        ]
    # llama.cpp: each entry is a GGUF path, or "default[@temperature]" for the embedded model.
    llms: List[LLM] = []
    for spec in models:
        path, _, temperature = spec.partition("@")
        kwargs = {"max_new_tokens": max_new_tokens, "temperature": float(temperature or 0.7)}
        llms.append(LlamaCppLLM(model_path=None if path == "default" else path, generation_kwargs=kwargs))
    return llms


def _judge(backend: str, judge: str, base_url: Optional[str]) -> LLM:
    if backend == "openai":
        return OpenAILLM(model=judge, base_url=base_url) if base_url else OpenAILLM(model=judge)
    return LlamaCppLLM(
        model_path=None if judge == "default" else judge,
        n_ctx=4096,
        generation_kwargs={"max_new_tokens": 256, "temperature": 0.0},
    )


def _loader(args: argparse.Namespace) -> GeneratorStep:
    if args.instructions:
        return LoadDataFromFileSystem(name="load_instructions", data_files=args.instructions, num_examples=args.num_rows)
    if args.dataset:
        return LoadDataFromHub(name="load_instructions", repo_id=args.dataset, split=args.split, num_examples=args.num_rows)
    rows = [{"instruction": SAMPLE_INSTRUCTIONS[i % len(SAMPLE_INSTRUCTIONS)]} for i in range(args.num_rows)]
    return LoadDataFromDicts(name="load_instructions", data=rows)


def build_pipeline(args: argparse.Namespace) -> Pipeline:
    """load -> N x TextGeneration -> GroupColumns -> UltraFeedback -> FormatTextGenerationDPO."""
    with Pipeline("preference-dataset", description="Generate, rate with UltraFeedback, format for DPO.") as pipeline:
        load = _loader(args)
        generate = [
            TextGeneration(name=f"generate_{index}", llm=llm, input_batch_size=args.batch_size)
            for index, llm in enumerate(_generators(args.backend, args.models, args.base_url, args.max_new_tokens))
        ]
        group = GroupColumns(
            name="group_generations",
            columns=["generation", "model_name"],
            output_columns=["generations", "generation_models"],
        )
        rate = UltraFeedback(
            name="ultrafeedback",
            llm=_judge(args.backend, args.judge, args.base_url),
            aspect="overall-rating",
            # The small local judge follows a JSON schema far more reliably than free-form instructions.
            use_default_structured_output=args.backend == "llamacpp",
            input_batch_size=args.batch_size,
        )
        to_dpo = FormatTextGenerationDPO(name="format_dpo")
        load >> generate >> group >> rate >> to_dpo
    return pipeline


def parse_args(argv: Optional[List[str]] = None) -> tuple:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--config", help="A YAML/JSON file whose keys are these options (command line wins).")
    parser.add_argument("--backend", choices=["llamacpp", "openai"], default=None, help="Default: llamacpp.")
    parser.add_argument("--models", default=None, help="Comma-separated generator models (openai: names; llamacpp: GGUF paths or default@TEMPERATURE).")
    parser.add_argument("--judge", default=None, help="The judge model (default: the embedded model / gpt-4o).")
    parser.add_argument("--base-url", default=None, help="OpenAI-compatible server for --backend openai.")
    parser.add_argument("--instructions", default=None, help="A local file, folder or glob of jsonl/json/parquet/csv with an `instruction` column.")
    parser.add_argument("--dataset", default=None, help="A `datasets` path (a local dataset folder works offline).")
    parser.add_argument("--split", default="train")
    parser.add_argument("--num-rows", type=int, default=None, help="How many instructions (default 8).")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="Tokens per generated answer (default 96).")
    parser.add_argument("--batch-size", type=int, default=4, help="Rows per batch of each task.")
    parser.add_argument("--output", default="output/preference", help="Where the Distiset is saved.")
    args, beam_options = parser.parse_known_args(argv)
    config: Dict[str, Any] = {}
    if args.config:
        with open(args.config, encoding="utf-8") as file:
            config = yaml.safe_load(file) or {}
        unknown = sorted(set(config) - {a.dest for a in parser._actions})
        if unknown:
            parser.error(f"{args.config}: unknown keys {unknown}")
    defaults = {"backend": "llamacpp", "num_rows": 8, "max_new_tokens": 96}
    for key, value in {**defaults, **config}.items():
        if getattr(args, key, None) is None or (key in config and getattr(args, key) == parser.get_default(key)):
            setattr(args, key, value)
    if args.models is None:
        args.models = "default@0.3,default@1.0" if args.backend == "llamacpp" else "gpt-4o-mini,gpt-4.1-mini"
    if isinstance(args.models, str):
        args.models = [model.strip() for model in args.models.split(",") if model.strip()]
    if args.judge is None:
        args.judge = "default" if args.backend == "llamacpp" else "gpt-4o"
    beam_options = [option for option in beam_options if option != "--"]
    return args, beam_options


def main(argv: Optional[List[str]] = None) -> int:
    args, beam_options = parse_args(argv)
    pipeline = build_pipeline(args)
    options = beam_options or (DEFAULT_BEAM_OPTIONS if args.backend == "llamacpp" else [])
    distiset = pipeline.run(options=options)
    distiset.save_to_disk(args.output)
    rows = distiset["default"]["train"]
    paired = sum(row["chosen"] is not None for row in rows)
    print(distiset)
    print(f"{len(rows)} rows, {paired} with a chosen/rejected pair.")
    for name, counters in pipeline.last_run_metrics.items():
        if "llm_requests" in counters:
            print(
                f"  {name}: {counters['llm_requests']} requests, {counters.get('llm_failures', 0)} failed,"
                f" {counters.get('input_tokens', 0)} input / {counters.get('output_tokens', 0)} output tokens"
            )
    print(f"Dataset written to {os.path.abspath(args.output)}")
    return 0


if __name__ == "__main__":
    tune_owned_process()  # this process is the recipe's own (see beam_distil/owned_process.py)
    sys.exit(main())
