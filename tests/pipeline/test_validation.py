"""Every pipeline problem is reported before Beam runs, naming the step, the column or parameter, and the fix."""

from __future__ import annotations

import pytest

from beam_distil.models import OpenAILLM
from beam_distil.pipeline import Pipeline, PipelineValidationError
from beam_distil.steps import RuntimeParameter, Step, StepInput
from beam_distil.steps.columns import GroupColumns, KeepColumns
from beam_distil.steps.generators import LoadDataFromDicts
from beam_distil.steps.tasks import TextGeneration

LOCAL = "http://127.0.0.1:9/v1"  # never contacted: validation fails before anything runs


def llm(**kwargs) -> OpenAILLM:
    return OpenAILLM(model="m", base_url=LOCAL, api_key="test", **kwargs)


def problems_of(pipeline: Pipeline, **run_kwargs) -> str:
    with pytest.raises(PipelineValidationError) as caught:
        pipeline.run(**run_kwargs)
    return str(caught.value)


def test_root_that_is_not_a_generator():
    with Pipeline("p") as pipeline:
        TextGeneration(name="gen", llm=llm())
    message = problems_of(pipeline)
    assert "'gen' has no predecessor but is not a generator step" in message
    assert "dataset=" in message


def test_cycle_is_named():
    with Pipeline("p") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": "x"}])
        a = KeepColumns(name="a", columns=["instruction"])
        b = KeepColumns(name="b", columns=["instruction"])
        load >> a >> b >> a
    assert "cycle: a >> b >> a" in problems_of(pipeline)


def test_missing_input_columns_name_the_step_the_columns_and_what_is_available():
    with Pipeline("p") as pipeline:
        load = LoadDataFromDicts(data=[{"prompt": "x"}])
        load >> TextGeneration(name="gen", llm=llm())
    message = problems_of(pipeline)
    assert "Step 'gen' requires input columns ['instruction']" in message
    assert "Available columns: ['prompt']" in message
    assert "input_mappings" in message


def test_output_mappings_fix_the_missing_column(openai_server):
    with Pipeline("p") as pipeline:
        load = LoadDataFromDicts(data=[{"prompt": "x"}], output_mappings={"prompt": "instruction"})
        load >> TextGeneration(name="gen", llm=OpenAILLM(model="m", base_url=openai_server.base_url, api_key="t"))
    rows = pipeline.run()["default"]["train"].to_list()
    assert rows[0]["instruction"] == "x"
    assert rows[0]["generation"] == "m: x"


def test_input_mappings_fix_the_missing_column(openai_server):
    with Pipeline("p") as pipeline:
        load = LoadDataFromDicts(data=[{"prompt": "x"}])
        load >> TextGeneration(
            name="gen",
            llm=OpenAILLM(model="m", base_url=openai_server.base_url, api_key="t"),
            input_mappings={"instruction": "prompt"},
            output_mappings={"generation": "answer"},
        )
    row = pipeline.run()["default"]["train"][0]
    assert row["prompt"] == "x"
    assert row["answer"] == "m: x"
    assert "instruction" not in row and "generation" not in row


def test_mapping_a_column_the_step_does_not_have():
    with Pipeline("p") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": "x"}])
        load >> TextGeneration(name="gen", llm=llm(), input_mappings={"instructions": "instruction"})
    message = problems_of(pipeline)
    assert "Step 'gen': input_mappings names 'instructions'" in message
    assert "Did you mean 'instruction'?" in message


def test_unknown_runtime_parameter_suggests_close_names():
    with Pipeline("p") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": "x"}])
        load >> TextGeneration(name="gen", llm=llm())
    message = problems_of(pipeline, parameters={"gen": {"input_batch_sise": 3, "llm": {"generation_kwarg": {}}}})
    assert "unknown runtime parameter 'input_batch_sise'. Did you mean 'input_batch_size'?" in message
    assert "unknown runtime parameter 'llm.generation_kwarg'. Did you mean 'llm.generation_kwargs'?" in message


def test_unknown_step_in_parameters():
    with Pipeline("p") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": "x"}])
        load >> TextGeneration(name="gen_a", llm=llm())
    message = problems_of(pipeline, parameters={"gen_b": {"input_batch_size": 3}})
    assert "names step 'gen_b', which is not in the pipeline. Did you mean 'gen_a'?" in message


def test_wrong_runtime_parameter_type():
    with Pipeline("p") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": "x"}])
        load >> TextGeneration(name="gen", llm=llm())
    message = problems_of(pipeline, parameters={"gen": {"input_batch_size": "many"}})
    assert "Step 'gen': invalid runtime parameter value" in message
    assert "input_batch_size" in message


def test_unknown_generation_kwarg():
    with Pipeline("p") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": "x"}])
        load >> TextGeneration(name="gen", llm=llm(generation_kwargs={"temprature": 0.2}))
    message = problems_of(pipeline)
    assert "OpenAILLM has no generation parameter 'temprature'. Did you mean 'temperature'?" in message


class NeedsThreshold(Step):
    threshold: RuntimeParameter[float] = None

    @property
    def inputs(self):
        return ["instruction"]

    def process(self, inputs: StepInput):
        yield inputs


def test_missing_required_runtime_parameter_and_how_to_set_it():
    with Pipeline("p") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": "x"}])
        load >> NeedsThreshold(name="filter")
    message = problems_of(pipeline)
    assert "Step 'filter': runtime parameter 'threshold' is required" in message
    pipeline.validate(parameters={"filter": {"threshold": 0.5}})  # now valid


def test_missing_api_key_names_the_environment_variable():
    with Pipeline("p") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": "x"}])
        load >> TextGeneration(name="gen", llm=OpenAILLM(model="m", base_url=LOCAL))
    assert "set the `OPENAI_API_KEY` environment variable" in problems_of(pipeline)


def test_duplicate_step_names():
    with Pipeline("p"):
        KeepColumns(name="same", columns=["a"])
        with pytest.raises(ValueError, match="A step named 'same' already exists"):
            KeepColumns(name="same", columns=["a"])


def test_task_with_several_predecessors_needs_a_join_step():
    with Pipeline("p") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": "x"}])
        a = KeepColumns(name="a", columns=["instruction"])
        b = KeepColumns(name="b", columns=["instruction"])
        load >> [a, b] >> TextGeneration(name="gen", llm=llm())
    assert "Task 'gen' receives rows from several steps ['a', 'b']" in problems_of(pipeline)


def test_template_referring_to_a_missing_column():
    with pytest.raises(ValueError, match=r"the template uses \['topic'\], which are not in `columns`"):
        TextGeneration(llm=llm(), template="Write about {{ topic }}", columns=["instruction"])


def test_all_problems_are_reported_at_once():
    with Pipeline("p") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": "x"}])
        load >> TextGeneration(name="gen", llm=OpenAILLM(model="m", base_url=LOCAL, generation_kwargs={"tmp": 1}))
    with pytest.raises(PipelineValidationError) as caught:
        pipeline.run()
    assert len(caught.value.problems) == 2


def test_group_columns_after_missing_column_is_reported():
    with Pipeline("p") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": "x"}])
        load >> GroupColumns(name="group", columns=["generation"])
    assert "Step 'group' requires input columns ['generation']" in problems_of(pipeline)


def test_a_generation_kwarg_of_the_wrong_type():
    with Pipeline("p") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": "x"}])
        load >> TextGeneration(name="gen", llm=llm(generation_kwargs={"temperature": "hot", "max_new_tokens": 5}))
    message = problems_of(pipeline)
    assert "Step 'gen': generation parameter 'temperature' got 'hot'" in message
    assert "max_new_tokens" not in message


def test_a_generator_that_owns_an_llm_is_checked_too():
    from beam_distil.steps.tasks import EvolInstructGenerator

    with Pipeline("p") as pipeline:
        EvolInstructGenerator(name="evolve", llm=OpenAILLM(model="m", base_url=LOCAL), num_instructions=2)
    assert "Step 'evolve': no API key for model 'm'" in problems_of(pipeline)


def test_the_distiset_carries_the_pipeline_yaml(openai_server):
    with Pipeline("p") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": "x"}])
        load >> TextGeneration(name="gen", llm=OpenAILLM(model="m", base_url=openai_server.base_url, api_key="secret-key-123"))
    distiset = pipeline.run()
    assert "name: gen" in distiset.pipeline_yaml
    assert "secret-key-123" not in distiset.pipeline_yaml


def test_an_input_mapping_onto_an_existing_column_keeps_that_column(openai_server):
    with Pipeline("p") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": "original", "evolved": "better"}])
        load >> TextGeneration(
            name="gen", llm=OpenAILLM(model="m", base_url=openai_server.base_url, api_key="t"),
            input_mappings={"instruction": "evolved"},
        )
    row = pipeline.run()["default"]["train"][0]
    assert row["generation"] == "m: better"
    assert row["instruction"] == "original" and row["evolved"] == "better"


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"temperature": float("nan")}, "generation parameter 'temperature' got nan: it must be a finite number"),
        ({"temperature": -3}, "generation parameter 'temperature' got -3: OpenAILLM takes temperature between 0.0 and 2.0"),
        ({"top_p": 7}, "generation parameter 'top_p' got 7: OpenAILLM takes top_p between 0.0 and 1.0"),
        ({"max_new_tokens": -5}, "generation parameter 'max_new_tokens' got -5: OpenAILLM takes max_new_tokens at least 1"),
        ({"seed": "12"}, "generation parameter 'seed' got '12': Input should be a valid integer"),
    ],
)
def test_generation_kwargs_out_of_range_or_of_the_wrong_type(kwargs, expected):
    with Pipeline("p") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": "x"}])
        load >> TextGeneration(name="gen", llm=llm(generation_kwargs=kwargs))
    assert f"Step 'gen': {expected}" in problems_of(pipeline)


def test_a_base_url_that_is_not_a_url():
    with Pipeline("p") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": "x"}])
        load >> TextGeneration(name="gen", llm=OpenAILLM(model="m", base_url="not a url", api_key="t"))
    assert "Step 'gen': base_url 'not a url' of model 'm' is not an http(s) URL" in problems_of(pipeline)


def test_parameters_that_are_not_a_dict():
    with Pipeline("p") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": "x"}])
        load >> TextGeneration(name="gen", llm=llm())
    assert "run(parameters=...) must be a dict of step name -> that step's parameters" in problems_of(
        pipeline, parameters=["gen"]
    )


@pytest.mark.parametrize(
    "options, expected",
    [
        (["--direct_running_mode=bogus"], "Beam options: argument --direct_running_mode: invalid choice: 'bogus'"),
        (["--direct_num_wrokers=2"], "Beam has no option --direct_num_wrokers; Beam would ignore it. Did you mean '--direct_num_workers'"),
        ({"direct_num_wrokers": 2}, "Beam has no option --direct_num_wrokers"),
    ],
)
def test_bad_beam_options_are_errors_not_system_exit_or_a_warning(options, expected):
    with Pipeline("p") as pipeline:
        LoadDataFromDicts(data=[{"a": 1}]) >> KeepColumns(columns=["a"])
    assert expected in problems_of(pipeline, options=options)


def test_dry_run_needs_at_least_one_row():
    with Pipeline("p") as pipeline:
        LoadDataFromDicts(data=[{"a": 1}]) >> KeepColumns(columns=["a"])
    with pytest.raises(PipelineValidationError, match=r"dry_run\(batch_size=...\) .* at least 1, got 0"):
        pipeline.dry_run(batch_size=0)


def test_a_system_prompt_holding_a_lone_surrogate_is_refused_before_anything_is_sent():
    with Pipeline("p") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": "x"}])
        load >> TextGeneration(name="gen", llm=llm(), system_prompt="caf\udce9")
    message = problems_of(pipeline)
    assert "Step 'gen': its configuration holds text UTF-8 cannot encode" in message
    assert "'\\udce9', a lone surrogate" in message


def test_writing_over_input_columns_is_a_warning(openai_server, caplog):
    with Pipeline("p") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": "x", "generation": "mine"}])
        load >> TextGeneration(name="gen", llm=OpenAILLM(model="m", base_url=openai_server.base_url, api_key="t"))
    with caplog.at_level("WARNING", logger="beam_distil"):
        pipeline.run()
    assert "Step 'gen' writes ['generation'], which its incoming rows already have" in caplog.text
    assert "output_mappings" in caplog.text
