"""A local run goes through its rows in slices (one Beam job each) so that its memory stays bounded: the results,
their order, routing, dead letters and counters are those of the same run in one piece."""

from __future__ import annotations

import glob
import json
import os

import pytest

from beam_distil.beam.launch import launch
from beam_distil.beam.row_slices import why_not_sliced
from beam_distil.models import OpenAILLM
from beam_distil.pipeline import Pipeline, sample_n_steps
from beam_distil.steps import GroupColumns, KeepColumns, LoadDataFromDicts
from beam_distil.steps.base import GlobalStep, StepInput
from beam_distil.steps.tasks import TextGeneration

MODELS = ("model-a", "model-b", "model-c")


def routed_pipeline(base_url: str, rows: int) -> Pipeline:
    with Pipeline("sliced") as pipeline:
        load = LoadDataFromDicts(name="load", data=[{"instruction": f"q{i}"} for i in range(rows)], batch_size=4)
        tasks = [
            TextGeneration(name=f"gen_{model[-1]}", llm=OpenAILLM(model=model, base_url=base_url, api_key="t", max_retries=0))
            for model in MODELS
        ]
        group = GroupColumns(name="group", columns=["generation", "model_name"], output_columns=["generations", "model_names"])
        load >> sample_n_steps(2) >> tasks >> group
    return pipeline


def run(pipeline: Pipeline, tmp_path, label: str, rows_per_slice, **kwargs):
    out = tmp_path / label
    result = launch(pipeline, output_dir=str(out), dead_letter_dir=str(out / "dead"), use_cache=False,
                    rows_per_slice=rows_per_slice, **kwargs)
    return result, out


def dead_letter_ids(folder) -> list:
    records = []
    for path in glob.glob(str(folder / "dead_letters*")):
        with open(path) as file:
            records += [json.loads(line) for line in file if line.strip()]
    return sorted(tuple(record["row_id"]) for record in records)


@pytest.mark.parametrize("rows", [25, 21])  # 21: the last slice is full, and the job after it finds no rows
def test_slices_give_the_rows_of_one_piece(openai_server, tmp_path, rows):
    openai_server.fail_models = ["model-b"]  # every row routed to gen_b fails and is dead-lettered
    whole, whole_dir = run(routed_pipeline(openai_server.base_url, rows), tmp_path, "whole", None)
    whole_requests = openai_server.request_count
    openai_server.reset_counters()
    sliced, sliced_dir = run(routed_pipeline(openai_server.base_url, rows), tmp_path, "sliced", 7)

    assert sliced.distiset["default"]["train"].to_list() == whole.distiset["default"]["train"].to_list()
    assert len(sliced.distiset["default"]["train"]) == rows
    # Each row went to the same two models as in one piece: routing is decided per batch of positions.
    assert [row["model_names"] for row in sliced.distiset["default"]["train"]] == [
        row["model_names"] for row in whole.distiset["default"]["train"]
    ]
    assert openai_server.request_count == whole_requests == 2 * rows
    # The slices' files sit side by side; the first slice's are named as a run in one piece names them.
    files = sorted(os.listdir(sliced_dir / "default"))
    assert any(name.startswith("part-0") for name in files)
    assert any(name.startswith("part-slice00001-") for name in files)
    assert any(name.startswith("part-slice00003-") for name in files)
    # Dead letters and counters span the slices.
    assert dead_letter_ids(sliced_dir / "dead") == dead_letter_ids(whole_dir / "dead") != []
    assert sliced.metrics["load"]["rows_out"] == rows
    assert sliced.metrics["gen_b"]["llm_failures"] == whole.metrics["gen_b"]["llm_failures"] > 0
    assert sum(sliced.metrics[f"gen_{m[-1]}"]["llm_requests"] for m in MODELS) == 2 * rows


def test_row_limit_ends_the_last_slice(openai_server, tmp_path):
    result, _ = run(routed_pipeline(openai_server.base_url, 40), tmp_path, "limited", 6, row_limit=15)
    assert len(result.distiset["default"]["train"]) == 15
    assert result.distiset["default"]["train"]["instruction"] == [f"q{i}" for i in range(15)]


class CountAll(GlobalStep):
    @property
    def inputs(self):
        return ["n"]

    @property
    def outputs(self):
        return ["n", "total"]

    def process(self, inputs: StepInput):
        total = sum(row["n"] for row in inputs)
        yield [{**row, "total": total} for row in inputs]


def test_a_global_step_runs_the_pipeline_in_one_piece(tmp_path):
    with Pipeline("global") as pipeline:
        load = LoadDataFromDicts(name="load", data=[{"n": i} for i in range(30)], batch_size=4)
        load >> CountAll(name="count") >> KeepColumns(name="keep", columns=["n", "total"])
    assert "global step" in why_not_sliced(pipeline.dag)
    result, out = run(pipeline, tmp_path, "global", 7)
    assert set(result.distiset["default"]["train"]["total"]) == {sum(range(30))}
    assert not any("slice" in name for name in os.listdir(out / "default"))


def test_a_generator_that_calls_an_llm_is_never_sliced(openai_server):
    from beam_distil.steps.tasks import MagpieGenerator

    llm = OpenAILLM(model="m", base_url=openai_server.base_url, api_key="t")
    with Pipeline("magpie") as pipeline:
        MagpieGenerator(name="magpie", llm=llm, num_rows=10) >> KeepColumns(name="keep", columns=["instruction"])
    assert "calls an LLM" in why_not_sliced(pipeline.dag)


def test_a_generator_that_cannot_narrow_itself_is_read_and_skipped(tmp_path):
    """LoadDataFromFileSystem has no rows_between: each slice reads the file and keeps its own range."""
    from beam_distil.steps import LoadDataFromFileSystem

    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps({"n": i}) + "\n" for i in range(23)))
    with Pipeline("files") as pipeline:
        LoadDataFromFileSystem(name="load", data_files=str(data), batch_size=5) >> KeepColumns(name="keep", columns=["n"])
    result, out = run(pipeline, tmp_path, "files", 4)
    assert result.distiset["default"]["train"]["n"] == list(range(23))
    assert result.metrics["load"]["rows_out"] == 23
    assert len([name for name in os.listdir(out / "default") if "slice" in name]) >= 5


def test_a_slice_carries_only_its_own_rows():
    load = LoadDataFromDicts(data=[{"n": i} for i in range(10)])
    assert load.rows_between(3, 6).data == [{"n": 3}, {"n": 4}, {"n": 5}]
    assert load.rows_between(8, None).data == [{"n": 8}, {"n": 9}]
    assert load.data == [{"n": i} for i in range(10)]  # the step itself is left whole


def test_a_column_typed_differently_in_two_slices_is_kept(tmp_path):
    rows = [{"value": i} for i in range(6)] + [{"value": f"text {i}"} for i in range(6)]
    with Pipeline("mixed") as pipeline:
        LoadDataFromDicts(name="load", data=rows, batch_size=3) >> KeepColumns(name="keep", columns=["value"])
    result, _ = run(pipeline, tmp_path, "mixed", 6)
    one_job, _ = run(pipeline, tmp_path, "mixed-one-job", None)
    # Stored as the sink stores a column no one Arrow type holds: text kept, other values as JSON text.
    expected = [str(i) for i in range(6)] + [f"text {i}" for i in range(6)]
    assert list(result.distiset["default"]["train"]["value"]) == expected
    assert list(one_job.distiset["default"]["train"]["value"]) == expected
