"""Evolve-and-dedup recipe: instructions are evolved (EvolInstruct), answered (TextGeneration), scored
(QualityScorer or ComplexityScorer) and near-duplicate evolved instructions removed (MinHashDedup).

By default everything runs offline on the embedded SmolLM2-135M-Instruct through llama.cpp. With
``--backend openai`` the model is OpenAI-compatible (``--base-url``, ``OPENAI_API_KEY``)::

    python -m pipelines.evolve_and_dedup --num-rows 8 --output output/evolved
    python -m pipelines.evolve_and_dedup --backend openai --model gpt-4o-mini --scorer complexity
    python -m pipelines.evolve_and_dedup --instructions my_prompts.jsonl   # a file or folder with `instruction`
    python -m pipelines.evolve_and_dedup --threshold 0.8 --ngram 2 --keep-duplicates

The output rows have ``original_instruction``, ``instruction`` (the evolved one), ``generation`` (a list of
``--num-generations`` answers), ``scores`` and ``model_name`` (and ``instructions``, the original and evolved
instruction, with ``--scorer complexity``). Arguments it does not know go to Beam as pipeline options
(``--direct_num_workers=4``, ``--runner=...``).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

from beam_distil.models import LLM, LlamaCppLLM, OpenAILLM
from beam_distil.owned_process import tune_owned_process
from beam_distil.pipeline import Pipeline, register
from beam_distil.steps import LoadDataFromDicts, LoadDataFromFileSystem, Step, StepInput, StepOutput
from beam_distil.steps.base import GeneratorStep, StepColumns
from beam_distil.steps.columns import merge_distilabel_metadata
from beam_distil.steps.dedup import MinHashDedup
from beam_distil.steps.tasks import ComplexityScorer, EvolInstruct, QualityScorer, TextGeneration
from pipelines.preference import DEFAULT_BEAM_OPTIONS, SAMPLE_INSTRUCTIONS



@register  # saved with the recipe's pipeline.yaml, so loading it may name this class
class PrepareForScoring(Step):
    """Between TextGeneration and the scorer: the evolved instruction becomes ``instruction`` (the original is kept
    as ``original_instruction``); with ``pair``, ``instructions`` = [original, evolved] for ComplexityScorer; the
    ``generation`` becomes a list (one ungrouped generation: a list of one) and the per-generation
    ``distilabel_metadata`` list of grouped generations becomes one dict, which the next task can
    extend.
    """

    pair: bool = False

    @property
    def inputs(self) -> StepColumns:
        return ["instruction", "evolved_instruction"]

    @property
    def outputs(self) -> StepColumns:
        return ["original_instruction", "instruction"] + (["instructions"] if self.pair else [])

    def columns_after(self, available: List[str]) -> List[str]:
        return [c for c in super().columns_after(available) if c != "evolved_instruction"]

    def process(self, inputs: StepInput) -> StepOutput:
        out = []
        for row in inputs:
            row = dict(row)
            original, evolved = row.pop("instruction"), row.pop("evolved_instruction")
            row["original_instruction"], row["instruction"] = original, evolved
            if self.pair:
                row["instructions"] = [original, evolved]
            if not isinstance(row.get("generation"), list):
                row["generation"] = [row.get("generation")]
            metadata = row.get("distilabel_metadata")
            if isinstance(metadata, list):
                parts = [{"distilabel_metadata": part} for part in metadata if isinstance(part, dict)]
                row["distilabel_metadata"] = merge_distilabel_metadata(*parts) if parts else {}
            out.append(row)
        yield out


def _llm(args: argparse.Namespace, model: str, max_new_tokens: int, temperature: float) -> LLM:
    kwargs = {"max_new_tokens": max_new_tokens, "temperature": temperature}
    if args.backend == "openai":
        extra = {"base_url": args.base_url} if args.base_url else {}
        return OpenAILLM(model=model, generation_kwargs=kwargs, **extra)
    return LlamaCppLLM(model_path=None if model == "default" else model, n_ctx=2048, generation_kwargs=kwargs)


def _loader(args: argparse.Namespace) -> GeneratorStep:
    if args.instructions:
        return LoadDataFromFileSystem(name="load_instructions", data_files=args.instructions, num_examples=args.num_rows)
    rows = [{"instruction": SAMPLE_INSTRUCTIONS[i % len(SAMPLE_INSTRUCTIONS)]} for i in range(args.num_rows or 8)]
    return LoadDataFromDicts(name="load_instructions", data=rows)


def build_pipeline(args: argparse.Namespace) -> Pipeline:
    """load -> EvolInstruct -> TextGeneration -> (evolved instruction in place) -> scorer -> MinHashDedup."""
    evol_model = args.evol_model or args.model
    scorer_model = args.scorer_model or args.model
    with Pipeline("evolve-and-dedup", description="Evolve instructions, answer, score, remove near-duplicates.") as pipeline:
        load = _loader(args)
        evolve = EvolInstruct(
            name="evol_instruct",
            llm=_llm(args, evol_model, args.max_new_tokens, 0.7),
            num_evolutions=args.num_evolutions,
            input_batch_size=args.batch_size,
        )
        generate = TextGeneration(
            name="text_generation",
            columns=["evolved_instruction"],
            template="{{ evolved_instruction }}",
            llm=_llm(args, args.model, args.max_new_tokens, 0.7),
            num_generations=args.num_generations,
            # One generation stays ungrouped (PrepareForScoring makes it a list): a failed grouped generation trips
            # TaskDoFn._error_of, which expects a dict distilabel_metadata.
            group_generations=args.num_generations > 1,
            input_batch_size=args.batch_size,
        )
        prepare = PrepareForScoring(name="prepare_for_scoring", pair=args.scorer == "complexity")
        scorer_llm = _llm(args, scorer_model, 64, 0.0)
        if args.scorer == "complexity":
            score = ComplexityScorer(name="complexity_scorer", llm=scorer_llm, input_batch_size=args.batch_size)
        else:
            score = QualityScorer(
                name="quality_scorer",
                llm=scorer_llm,
                input_mappings={"responses": "generation"},
                input_batch_size=args.batch_size,
            )
        dedup = MinHashDedup(
            name="minhash_dedup",
            threshold=args.threshold,
            n=args.ngram,
            num_perm=args.num_perm,
            keep_duplicates=args.keep_duplicates,
            input_mappings={"text": args.dedup_column},
        )
        load >> evolve >> generate >> prepare >> score >> dedup
    return pipeline


def parse_args(argv: Optional[List[str]] = None) -> tuple:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("--backend", choices=["llamacpp", "openai"], default="llamacpp")
    parser.add_argument("--model", default=None, help="openai: model name (default gpt-4o-mini); llamacpp: a GGUF path or `default`.")
    parser.add_argument("--evol-model", default=None, help="Model for EvolInstruct (default: --model).")
    parser.add_argument("--scorer-model", default=None, help="Model for the scorer (default: --model).")
    parser.add_argument("--base-url", default=None, help="OpenAI-compatible server for --backend openai.")
    parser.add_argument("--instructions", default=None, help="A local file, folder or glob of jsonl/json/parquet/csv with an `instruction` column.")
    parser.add_argument("--num-rows", type=int, default=None, help="How many instructions (default: 8 built-in samples, or all of the file).")
    parser.add_argument("--num-evolutions", type=int, default=1)
    parser.add_argument("--num-generations", type=int, default=1, help="Answers per evolved instruction.")
    parser.add_argument("--scorer", choices=["quality", "complexity"], default="quality")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="Tokens per generation (default: 48 on llamacpp, 256 on openai).")
    parser.add_argument("--batch-size", type=int, default=4, help="Rows per batch of each task.")
    parser.add_argument("--dedup-column", default="instruction", help="Text column MinHashDedup compares (default: the evolved instruction).")
    parser.add_argument("--threshold", type=float, default=0.9, help="Jaccard similarity from which texts are near-duplicates.")
    parser.add_argument("--ngram", type=int, default=3, help="Words per shingle.")
    parser.add_argument("--num-perm", type=int, default=128, help="MinHash hash functions.")
    parser.add_argument("--keep-duplicates", action="store_true", help="Keep every row, marked by `keep_row_after_minhash_filtering`.")
    parser.add_argument("--output", default="output/evolve_and_dedup", help="Where the Distiset is saved.")
    args, beam_options = parser.parse_known_args(argv)
    if args.model is None:
        args.model = "default" if args.backend == "llamacpp" else "gpt-4o-mini"
    if args.max_new_tokens is None:
        args.max_new_tokens = 48 if args.backend == "llamacpp" else 256
    return args, [option for option in beam_options if option != "--"]


def main(argv: Optional[List[str]] = None) -> int:
    args, beam_options = parse_args(argv)
    pipeline = build_pipeline(args)
    options = beam_options or (DEFAULT_BEAM_OPTIONS if args.backend == "llamacpp" else [])
    distiset = pipeline.run(options=options)
    distiset.save_to_disk(args.output)
    rows = distiset["default"]["train"]
    print(distiset)
    if args.keep_duplicates:
        kept = sum(bool(row["keep_row_after_minhash_filtering"]) for row in rows)
        print(f"{len(rows)} rows, {kept} to keep after near-duplicate filtering.")
    else:
        print(f"{len(rows)} rows after near-duplicate filtering.")
    print(f"Dataset written to {os.path.abspath(args.output)}")
    return 0


if __name__ == "__main__":
    tune_owned_process()  # this process is the recipe's own (see beam_distil/owned_process.py)
    sys.exit(main())
