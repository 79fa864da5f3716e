"""Steps used as PTransforms inside a user's own Beam job, and Beam options reaching Beam."""

from __future__ import annotations

import pickle

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import DirectOptions, GoogleCloudOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to

from beam_distil.beam.runner import make_beam_pipeline
from beam_distil.beam.translate import build_beam_graph
from beam_distil.beam.task_dofn import TaskDoFn
from beam_distil.models import OpenAILLM
from beam_distil.pipeline import Pipeline
from beam_distil.steps import KeepColumns
from beam_distil.steps.generators import LoadDataFromDicts
from beam_distil.steps.tasks import TextGeneration


def test_task_as_ptransform_in_a_users_pipeline(openai_server):
    generate = TextGeneration(llm=OpenAILLM(model="m", base_url=openai_server.base_url, api_key="t"), add_raw_input=False)
    with beam.Pipeline(runner=FnApiRunner()) as p:
        rows = p | beam.Create([{"instruction": "one"}, {"instruction": "two"}])
        labelled = rows | "gen" >> generate
        unlabelled = rows | TextGeneration(
            name="second", llm=OpenAILLM(model="n", base_url=openai_server.base_url, api_key="t")
        )
        assert_that(
            labelled | "PickLabelled" >> beam.Map(lambda row: (row["instruction"], row["generation"], row["model_name"])),
            equal_to([("one", "m: one", "m"), ("two", "m: two", "m")]),
            label="CheckLabelled",
        )
        assert_that(
            unlabelled | "PickUnlabelled" >> beam.Map(lambda row: row["generation"]),
            equal_to(["n: one", "n: two"]),
            label="CheckUnlabelled",
        )
    assert openai_server.request_count == 4


def test_generator_as_a_beam_source():
    with beam.Pipeline(runner=FnApiRunner()) as p:
        rows = p | LoadDataFromDicts(data=[{"a": 1}, {"a": 2}, {"a": 2}])
        assert_that(rows, equal_to([{"a": 1}, {"a": 2}, {"a": 2}]))


def test_llm_client_is_made_on_the_worker_and_never_pickled(openai_server):
    llm = OpenAILLM(model="m", base_url=openai_server.base_url, api_key="t")
    task = TextGeneration(llm=llm)
    task.load()
    assert task.llm._aclient is not None

    restored = pickle.loads(pickle.dumps(TaskDoFn(task)))

    assert restored._task.llm._aclient is None
    restored.setup()
    assert restored._client._aclient is not None


def test_steps_of_a_pipeline_pickle_without_their_pipeline():
    with Pipeline("p") as pipeline:
        load = LoadDataFromDicts(data=[{"a": 1}])
    restored = pickle.loads(pickle.dumps(load))
    assert load.pipeline is pipeline
    assert restored.pipeline is None
    assert restored.data == [{"a": 1}]


def test_default_runner_is_fn_api_in_multi_threading_mode():
    beam_pipeline = make_beam_pipeline(None)
    assert isinstance(beam_pipeline.runner, FnApiRunner)
    assert beam_pipeline.options.view_as(DirectOptions).direct_running_mode == "multi_threading"


def _transform_labels(beam_pipeline: beam.Pipeline) -> list:
    labels = []

    class Visitor(beam.pipeline.PipelineVisitor):
        def enter_composite_transform(self, node) -> None:
            labels.append(node.full_label)

        def visit_transform(self, node) -> None:
            labels.append(node.full_label)

    beam_pipeline.visit(Visitor())
    return labels


@pytest.mark.parametrize(
    "options, spread",
    [
        (None, False),  # the local default: one worker, nothing to spread the rows over
        (["--direct_num_workers=2"], True),
        (["--direct_running_mode=multi_processing", "--direct_num_workers=2"], True),
        (["--runner=DirectRunner"], True),
    ],
)
def test_a_generators_rows_are_spread_only_over_several_workers(options, spread, tmp_path):
    with Pipeline("p") as pipeline:
        LoadDataFromDicts(data=[{"a": i} for i in range(30)], batch_size=7)
    beam_pipeline = make_beam_pipeline(options)
    build_beam_graph(beam_pipeline, pipeline.dag, {"load_data_from_dicts_0": str(tmp_path / "rows")})
    assert ("load_data_from_dicts_0/Spread" in _transform_labels(beam_pipeline)) is spread


@pytest.mark.parametrize("options", [None, ["--direct_num_workers=2"]])
def test_one_worker_and_several_give_the_same_rows(options):
    with Pipeline("p") as pipeline:
        LoadDataFromDicts(data=[{"a": i} for i in range(30)], batch_size=7) >> KeepColumns(columns=["a"])
    distiset = pipeline.run(options=options, use_cache=False)
    assert distiset["default"]["train"]["a"] == list(range(30))


@pytest.mark.parametrize(
    "options",
    [
        ["--direct_running_mode=multi_processing", "--direct_num_workers=3", "--project=my-project"],
        {"direct_running_mode": "multi_processing", "direct_num_workers": 3, "project": "my-project"},
    ],
)
def test_user_options_reach_beam(options):
    beam_pipeline = make_beam_pipeline(options)
    direct = beam_pipeline.options.view_as(DirectOptions)
    assert direct.direct_running_mode == "multi_processing"
    assert direct.direct_num_workers == 3
    assert beam_pipeline.options.view_as(GoogleCloudOptions).project == "my-project"


def test_a_named_runner_wins():
    beam_pipeline = make_beam_pipeline(["--runner=DirectRunner"])
    assert not isinstance(beam_pipeline.runner, FnApiRunner)
    assert type(beam_pipeline.runner).__name__ == "SwitchingDirectRunner"  # what Beam makes of "DirectRunner"


def test_a_remote_runner_needs_an_output_dir():
    with Pipeline("p") as pipeline:
        LoadDataFromDicts(data=[{"a": 1}])
    with pytest.raises(ValueError, match="pass output_dir="):
        pipeline.run(options=["--runner=DataflowRunner"])


def test_options_as_one_string_is_a_clear_error():
    with Pipeline("p") as pipeline:
        LoadDataFromDicts(data=[{"a": 1}])
    with pytest.raises(TypeError, match=r"a list of flags such as \['--runner=DataflowRunner'\]"):
        pipeline.run(options="--runner=DataflowRunner")
