"""Routing batches to some of the downstream steps: distribution, convergence, determinism, validation."""

from __future__ import annotations

import random
import sys
from collections import Counter
from pathlib import Path
from typing import List

import pandas as pd
import pytest

from beam_distil.models import OpenAILLM
from beam_distil.pipeline import (
    Pipeline,
    PipelineValidationError,
    RoutingBatchFunction,
    register,
    routing_batch_function,
    sample_n_steps,
)
from beam_distil.pipeline.serialization import PipelineSerializationError
from beam_distil.steps import GroupColumns, KeepColumns, LoadDataFromDicts, LoadHubDataset
from beam_distil.steps.tasks import ChatGeneration, TextGeneration

MODELS = ["model-a", "model-b", "model-c"]
BATCH = 5


def sample_two_llms(downstream_step_names: List[str]) -> List[str]:
    """distilabel's write-up's routing function: plain, undecorated, drawing from `random`."""
    return random.sample(downstream_step_names, k=2)


@register
def first_only(steps: List[str]) -> List[str]:
    return steps[:1]


def routed_pipeline(base_url: str, rows: int, routing) -> Pipeline:
    with Pipeline("routed") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": f"q{i}"} for i in range(rows)], batch_size=BATCH)
        tasks = [
            TextGeneration(name=f"gen_{m[-1]}", llm=OpenAILLM(model=m, base_url=base_url, api_key="t"), input_batch_size=3)
            for m in MODELS
        ]
        group = GroupColumns(columns=["generation", "model_name"], output_columns=["generations", "model_names"])
        load >> routing >> tasks >> group
    return pipeline


def test_sample_two_of_three_groups_exactly_two_generations_per_row(openai_server):
    rows = routed_pipeline(openai_server.base_url, 60, sample_n_steps(2)).run()["default"]["train"].to_list()

    assert [row["instruction"] for row in rows] == [f"q{i}" for i in range(60)]
    for row in rows:
        assert len(row["model_names"]) == 2 and len(set(row["model_names"])) == 2
        assert row["generations"] == [f"{model}: {row['instruction']}" for model in row["model_names"]]
    assert openai_server.request_count == 120
    # Routing is per batch: the rows of one upstream batch all went to the same models.
    for start in range(0, 60, BATCH):
        assert len({tuple(row["model_names"]) for row in rows[start : start + BATCH]}) == 1
    # Every model gets some of the 12 batches; none gets them all.
    per_model = Counter(model for row in rows for model in row["model_names"])
    assert all(0 < per_model[m] < 60 for m in MODELS)


def test_routing_is_the_same_on_a_rerun_and_under_multi_processing(openai_server):
    def model_names(options):
        distiset = routed_pipeline(openai_server.base_url, 40, sample_n_steps(2)).run(options=options)
        return [row["model_names"] for row in distiset["default"]["train"]]

    first = model_names({"direct_running_mode": "in_memory"})
    assert model_names({"direct_running_mode": "multi_threading", "direct_num_workers": 2}) == first
    assert model_names({"direct_running_mode": "multi_processing", "direct_num_workers": 2}) == first


def test_the_seed_changes_the_routing(openai_server):
    def model_names(seed):
        distiset = routed_pipeline(openai_server.base_url, 40, sample_n_steps(1, seed=seed)).run()
        return [row["model_names"] for row in distiset["default"]["train"]]

    assert model_names(1) != model_names(2)


def test_a_users_function_calling_random_is_deterministic(openai_server):
    @routing_batch_function(description="one at random")
    def pick_one(steps):
        return [random.choice(steps)]

    def model_names():
        pipeline = routed_pipeline(openai_server.base_url, 30, pick_one)
        return [row["model_names"] for row in pipeline.run()["default"]["train"]]

    first = model_names()
    assert all(len(names) == 1 for names in first)
    assert model_names() == first
    assert len({names[0] for names in first}) > 1


def test_connect_with_a_routing_function(openai_server):
    with Pipeline("routed") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": f"q{i}"} for i in range(10)], batch_size=2)
        a = KeepColumns(name="a", columns=["instruction"])
        b = KeepColumns(name="b", columns=["instruction"])
        load.connect(a, b, routing_batch_function=sample_n_steps(1))
    distiset = pipeline.run()
    assert len(distiset["a"]["train"]) + len(distiset["b"]["train"]) == 10


def test_sampling_more_steps_than_there_are_is_an_error():
    with pytest.raises(PipelineValidationError, match=r"sample_n_steps\(4\) cannot choose 4 of the 3"):
        routed_pipeline("http://127.0.0.1:9/v1", 5, sample_n_steps(4)).run()


@pytest.mark.parametrize(
    "result, reason",
    [(["gen_x"], r"names \['gen_x'\], which are not downstream steps"), ([], "is empty")],
)
def test_a_bad_routing_result_is_an_error(result, reason):
    @routing_batch_function
    def bad(steps):
        return result

    with pytest.raises(PipelineValidationError, match=reason):
        routed_pipeline("http://127.0.0.1:9/v1", 5, bad).run()


def test_a_routed_step_has_one_predecessor():
    with Pipeline("routed") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": "q"}])
        other = KeepColumns(name="other", columns=["instruction"])
        a = KeepColumns(name="a", columns=["instruction"])
        b = KeepColumns(name="b", columns=["instruction"])
        load >> sample_n_steps(1) >> [a, b]
        load >> other >> a
    with pytest.raises(PipelineValidationError, match="Step 'a' receives routed batches from 'load_data_from_dicts_0'"):
        pipeline.run()


def test_mixing_tasks_with_different_columns_is_named():
    llm = OpenAILLM(model="m", base_url="http://127.0.0.1:9/v1", api_key="t")
    with Pipeline("mixed") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": "q", "messages": [{"role": "user", "content": "q"}]}])
        text = TextGeneration(name="text", llm=llm)
        chat = ChatGeneration(name="chat", llm=llm, output_mappings={"generation": "reply"})
        load >> [text, chat] >> GroupColumns(name="group", columns=["model_name"])
    with pytest.raises(PipelineValidationError) as caught:
        pipeline.run()
    message = str(caught.value)
    assert "Step 'group' joins steps that produce different columns" in message
    assert "text (TextGeneration) -> ['generation', 'model_name']" in message
    assert "chat (ChatGeneration) -> ['model_name', 'reply']" in message


def test_mixing_tasks_with_the_same_columns_runs(openai_server):
    llm_a = OpenAILLM(model="a", base_url=openai_server.base_url, api_key="t")
    llm_b = OpenAILLM(model="b", base_url=openai_server.base_url, api_key="t")
    with Pipeline("mixed") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": "q", "messages": [{"role": "user", "content": "hi"}]}])
        text = TextGeneration(name="text", llm=llm_a)
        chat = ChatGeneration(name="chat", llm=llm_b)
        load >> [text, chat] >> GroupColumns(columns=["generation", "model_name"])
    row = pipeline.run()["default"]["train"][0]
    assert row["grouped_generation"] == ["a: q", "b: hi"]
    assert row["grouped_model_name"] == ["a", "b"]


# -- a plain function, as distilabel's write-up passes it to connect() ----------------------------------------


def write_up_pipeline(base_url: str, data_folder: Path, batch_size: int = BATCH, arrows: bool = False) -> Pipeline:
    """distilabel's routing write-up, imports renamed: a Hub dataset (here a local folder) loaded with the old
    `LoadHubDataset` name, three generators, `sample_two_llms` passed undecorated, the generations grouped."""
    with Pipeline("text-gen-pipeline") as pipeline:
        with pytest.warns(DeprecationWarning, match="LoadDataFromHub"):
            load_dataset = LoadHubDataset(
                name="load_dataset", repo_id=str(data_folder), batch_size=batch_size,
                output_mappings={"prompt": "instruction"},
            )
        gens = [
            TextGeneration(name=f"gen{k}", llm=OpenAILLM(model=model, base_url=base_url, api_key="t"))
            for k, model in enumerate(MODELS, start=1)
        ]
        group = GroupColumns(columns=["generation", "model_name"], output_columns=["generations", "model_names"])
        if arrows:
            load_dataset >> sample_two_llms >> gens >> group
        else:
            load_dataset.connect(*gens, routing_batch_function=sample_two_llms)
            for gen in gens:
                gen.connect(group)
    return pipeline


@pytest.fixture
def prompts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A dataset folder as the Hub serves one (`data/train-*.parquet`), read with the Hub offline."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    (tmp_path / "prompts" / "data").mkdir(parents=True)
    pd.DataFrame({"prompt": [f"q{i}" for i in range(30)]}).to_parquet(tmp_path / "prompts" / "data" / "train-0.parquet")
    return tmp_path / "prompts"


def expected_models_per_batch(upstream: str, batches: int) -> List[List[str]]:
    """The models each batch must reach: what `sample_two_llms` draws for it, seeded by the batch."""
    routing = RoutingBatchFunction(sample_two_llms)
    steps = [f"gen{k}" for k in range(1, len(MODELS) + 1)]
    return [[MODELS[int(name[3:]) - 1] for name in routing.choose(steps, upstream, batch)] for batch in range(batches)]


@pytest.mark.parametrize("arrows", [False, True], ids=["connect", "arrows"])
def test_a_plain_function_routes_each_batch_to_the_steps_it_chose(openai_server, prompts, arrows):
    rows = write_up_pipeline(openai_server.base_url, prompts, arrows=arrows).run(use_cache=False)["default"]["train"]
    rows = rows.to_list()

    assert [row["instruction"] for row in rows] == [f"q{i}" for i in range(30)]
    expected = expected_models_per_batch("load_dataset", 30 // BATCH)
    for index, row in enumerate(rows):
        assert row["model_names"] == expected[index // BATCH]
        assert row["generations"] == [f"{model}: {row['instruction']}" for model in row["model_names"]]
    assert len({tuple(models) for models in expected}) > 1  # not the same two for every batch
    assert openai_server.request_count == 60  # each row went to its two steps only


def test_a_plain_function_routes_the_same_on_a_rerun_and_in_worker_processes(openai_server, prompts):
    def model_names(options):
        distiset = write_up_pipeline(openai_server.base_url, prompts).run(options=options, use_cache=False)
        return [row["model_names"] for row in distiset["default"]["train"]]

    first = model_names(None)
    assert model_names(None) == first
    assert model_names(["--direct_running_mode=multi_processing", "--direct_num_workers=2"]) == first


def test_the_write_up_pipeline_saves_and_loads_with_its_old_loader_name(openai_server, prompts, tmp_path):
    """`sample_two_llms` is saved by name but, not being registered, is not loaded; `sample_n_steps` is, and
    `LoadHubDataset` loads back under its name (and under distilabel's module for it)."""
    write_up_pipeline(openai_server.base_url, prompts).save(tmp_path / "plain.yaml")
    with pytest.raises(PipelineSerializationError, match="sample_two_llms.*register it with `@register`"):
        Pipeline.from_file(tmp_path / "plain.yaml")

    with Pipeline("text-gen-pipeline") as pipeline:
        with pytest.warns(DeprecationWarning):
            load_dataset = LoadHubDataset(name="load_dataset", repo_id=str(prompts), batch_size=BATCH)
        gens = [KeepColumns(name=f"gen{k}", columns=["prompt"]) for k in range(1, 4)]
        load_dataset >> sample_n_steps(2) >> gens
    pipeline.save(tmp_path / "p.yaml")
    text = (tmp_path / "p.yaml").read_text()
    loaded = Pipeline.from_file(tmp_path / "p.yaml")
    assert type(loaded.dag.steps["load_dataset"]) is LoadHubDataset
    (tmp_path / "old.yaml").write_text(
        text.replace("beam_distil.steps.generators.huggingface", "distilabel.steps.generators.huggingface")
    )
    old = Pipeline.from_file(tmp_path / "old.yaml")
    assert type(old.dag.steps["load_dataset"]) is LoadHubDataset
    distiset = loaded.run(use_cache=False)
    assert sum(len(distiset[f"gen{k}"]["train"]) for k in range(1, 4)) == 2 * 30


def test_connect_refuses_a_routing_batch_function_that_is_not_callable():
    with Pipeline("routed") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": "q"}])
        a = KeepColumns(name="a", columns=["instruction"])
        with pytest.raises(TypeError, match="routing_batch_function must be a function"):
            load.connect(a, routing_batch_function="sample_two_llms")


# -- distilabel's RoutingBatchFunction API: routing_function=, dump(), from_dict() ------------------------------


def test_routing_batch_function_takes_distilabels_field_name():
    routing = RoutingBatchFunction(routing_function=sample_two_llms, description="two of them")
    assert routing.routing_function is sample_two_llms
    assert routing.description == "two of them"

    global_random = random.getstate()
    chosen = [routing.choose(MODELS, "load", batch) for batch in range(20)]
    # The function's `random.sample` drew from a generator seeded by the batch, not from the process's one.
    assert random.getstate() == global_random
    assert chosen == [routing.choose(MODELS, "load", batch) for batch in range(20)]
    assert all(len(names) == 2 for names in chosen) and len({tuple(names) for names in chosen}) == 3


def test_routing_batch_function_decorator_takes_a_positional_description():
    @routing_batch_function("Sample one step.")
    def one(steps):
        return steps[:1]

    assert isinstance(one, RoutingBatchFunction) and one.description == "Sample one step."


def test_a_factory_dumps_as_distilabel_and_loads_back_routing_the_same():
    routing = sample_n_steps(2, seed=7)
    routing.downstream = list(MODELS)
    data = routing.dump()
    assert data == {
        "description": "Sample 2 steps from the list of downstream steps.",
        "type_info": {"module": "distilabel.pipeline.routing_batch_function", "name": "sample_n_steps", "kwargs": {"n": 2}},
        "seed": 7,
        "downstream": MODELS,
    }
    loaded = RoutingBatchFunction.from_dict(data)
    assert loaded.dump() == data
    assert [loaded.choose(MODELS, "load", k) for k in range(10)] == [routing.choose(MODELS, "load", k) for k in range(10)]
    # distilabel's own dump (no seed, no downstream) loads too.
    distilabels = {
        "step": "load",
        "type_info": {"module": "distilabel.pipeline.routing_batch_function", "name": "sample_n_steps", "kwargs": {"n": 1}},
    }
    assert RoutingBatchFunction.from_dict(distilabels).factory == {"name": "sample_n_steps", "kwargs": {"n": 1, "seed": 0}}


def test_a_registered_function_dumps_by_name_and_loads_from_the_registry():
    routing = RoutingBatchFunction(first_only, description="the first")
    data = routing.dump()
    assert data["type_info"] == {"module": __name__, "name": "first_only"}
    loaded = RoutingBatchFunction.from_dict(data)
    assert loaded.routing_function is first_only and loaded.description == "the first"


def test_dump_is_what_the_saved_pipeline_holds():
    with Pipeline("routed") as pipeline:
        load = LoadDataFromDicts(name="load", data=[{"instruction": "q"}])
        a = KeepColumns(name="a", columns=["instruction"])
        b = KeepColumns(name="b", columns=["instruction"])
        routing = sample_n_steps(1, seed=3)
        load >> routing >> [a, b]
    assert pipeline.dump()["pipeline"]["routing_batch_functions"] == [routing.dump()]
    assert routing.dump()["step"] == "load"


def test_from_dict_builds_nothing_that_is_not_registered():
    unregistered = {"type_info": {"module": "beam_distil_untrusted_module", "name": "route"}}
    with pytest.raises(PipelineSerializationError, match="not registered"):
        RoutingBatchFunction.from_dict(unregistered)
    assert "beam_distil_untrusted_module" not in sys.modules  # never imported
    # Only the project's factories are called with arguments from the dict; a registered function is not one.
    with pytest.raises(PipelineSerializationError, match="Only beam_distil's routing factories"):
        RoutingBatchFunction.from_dict({"type_info": {"module": __name__, "name": "first_only", "kwargs": {"steps": []}}})
    with pytest.raises(PipelineSerializationError, match="not registered"):
        RoutingBatchFunction.from_dict({"type_info": {"module": "os", "name": "system", "kwargs": {"command": "true"}}})


def test_a_plain_function_that_cannot_be_named_cannot_be_dumped():
    with pytest.raises(PipelineSerializationError, match="defined inside a function or is a lambda"):
        RoutingBatchFunction(lambda steps: steps).dump()
