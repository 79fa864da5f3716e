"""Writes ``distilabel_1_5_3_pipeline.yaml`` with distilabel 1.5.3 itself; not a test, and not run by the suite.

The file beside it is what this script printed, so that the tests load a file distilabel really wrote:

    python -m venv /tmp/dl153 && /tmp/dl153/bin/pip install distilabel==1.5.3 openai requests
    cd tests/pipeline/data && /tmp/dl153/bin/python make_distilabel_1_5_3_pipeline.py distilabel_1_5_3_pipeline.yaml
"""

import sys

from distilabel.models import OpenAILLM
from distilabel.pipeline import Pipeline, sample_n_steps
from distilabel.steps import GroupColumns, KeepColumns, LoadDataFromFileSystem
from distilabel.steps.tasks import TextGeneration

with Pipeline(
    name="written-by-distilabel", description="Saved by distilabel 1.5.3.", requirements=["pyyaml>=5"]
) as pipeline:
    load = LoadDataFromFileSystem(name="load", data_files="prompts.jsonl")
    keep = KeepColumns(name="prompts", columns=["instruction"])
    tasks = [
        TextGeneration(
            name=f"gen_{m}",
            llm=OpenAILLM(
                model=f"model-{m}",
                base_url="http://127.0.0.1:9/v1",
                api_key="not-saved",
                generation_kwargs={"temperature": 0.7, "max_new_tokens": 64},
            ),
            system_prompt="Answer briefly.",
        )
        for m in ("a", "b", "c")
    ]
    group = GroupColumns(columns=["generation", "model_name"], output_columns=["generations", "model_names"])
    load >> keep >> sample_n_steps(2) >> tasks >> group

pipeline.save(sys.argv[1], format="yaml")
