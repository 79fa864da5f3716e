"""``@step`` and ``@task``: functions as step and task classes, as distilabel's decorators, in a Pipeline (in memory
and in worker processes, which proves the classes pickle), in a Beam job, and through a save/load round trip."""

from __future__ import annotations

import json
import os
import pickle
from typing import Any, Dict, Optional

import apache_beam as beam
import pytest
import yaml
from apache_beam.internal import cloudpickle_pickler
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to

from beam_distil.models import OpenAILLM
from beam_distil.pipeline import Pipeline, PipelineValidationError
from beam_distil.steps import (
    GeneratorStep,
    GeneratorStepOutput,
    GlobalStep,
    RuntimeParameter,
    Step,
    StepInput,
    StepOutput,
    step,
)
from beam_distil.steps.tasks import Task, task

WORKER_PROCESSES = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]


@step(outputs=["instruction"], step_type="generator")
def Instructions(num_rows: RuntimeParameter[int] = 5) -> GeneratorStepOutput:
    """Yields ``num_rows`` instructions in one batch."""
    yield [{"instruction": f"question {i:02d}"} for i in range(num_rows)], True


@step(inputs=["instruction"], outputs=["generation", "pid"])
def Echo(inputs: StepInput, prefix: RuntimeParameter[str] = "> ") -> StepOutput:
    """Answers each instruction with itself, and says which process did."""
    yield [{**row, "generation": prefix + row["instruction"], "pid": os.getpid()} for row in inputs]


@step(inputs=["generation"], step_type="global")
def KeepEven(inputs: StepInput, modulo: RuntimeParameter[int] = 2) -> StepOutput:
    """Keeps the rows whose question number is a multiple of ``modulo``, seeing all rows at once."""
    yield [row for row in inputs if int(row["instruction"].split()[-1]) % modulo == 0]


@step(inputs=["instruction"], outputs=["length"])
def Length(inputs: StepInput) -> StepOutput:
    yield [{**row, "length": len(row["instruction"])} for row in inputs]


@task(inputs=["text"], outputs=["summary"])
def Summarize(output: Optional[str], input: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Summarizes a text in one line.

    ---
    system_prompt: |
      You summarize texts in one line.
    user_message_template: |
      Summarize this: {text}
    ---
    """
    return {"summary": output.upper() if output is not None else None}


def decorated_pipeline(**echo: Any) -> Pipeline:
    with Pipeline("decorated") as pipeline:
        load = Instructions(name="load", num_rows=7, batch_size=3)
        answer = Echo(name="echo", input_batch_size=2, **echo)
        keep = KeepEven(name="keep")
        load >> answer >> keep
    return pipeline


# -- the classes ----------------------------------------------------------------------------------------------


def test_each_step_type_gives_its_base_class_named_after_the_function() -> None:
    assert issubclass(Echo, Step) and not issubclass(Echo, GlobalStep)
    assert issubclass(KeepEven, GlobalStep)
    assert issubclass(Instructions, GeneratorStep)
    assert (Echo.__name__, Echo.__qualname__, Echo.__module__) == ("Echo", "Echo", __name__)
    assert Echo.__doc__.startswith("Answers each instruction")
    echo = Echo(prefix="# ")
    assert (echo.inputs, echo.outputs, echo.prefix) == (["instruction"], ["generation", "pid"], "# ")
    assert echo.runtime_parameters_names["prefix"] is True
    assert Length().runtime_parameters_names == {"input_batch_size": True}


def test_the_function_gets_the_rows_and_the_runtime_parameters() -> None:
    rows = next(Echo(prefix="# ").process([{"instruction": "hi"}]))
    assert [(row["instruction"], row["generation"]) for row in rows] == [("hi", "# hi")]
    assert next(KeepEven(modulo=3).process([{"instruction": f"q {i}"} for i in range(7)])) == [
        {"instruction": "q 0"},
        {"instruction": "q 3"},
        {"instruction": "q 6"},
    ]
    # A generator function without `offset` works (distilabel 1.5.3 would pass it one and fail).
    assert list(Instructions(num_rows=2).process()) == [([{"instruction": "question 00"}, {"instruction": "question 01"}], True)]


def test_a_generator_function_with_offset_receives_it() -> None:
    @step(outputs=["n"], step_type="generator")
    def Numbers(offset: int = 0, total: RuntimeParameter[int] = 4) -> GeneratorStepOutput:
        yield [{"n": n} for n in range(offset, total)], True

    assert list(Numbers().process(offset=2)) == [([{"n": 2}, {"n": 3}], True)]
    with pytest.raises(ValueError, match="give the decorated function an `offset` parameter"):
        list(Instructions().process(offset=2))


def test_invalid_declarations_are_refused_as_by_distilabel() -> None:
    with pytest.raises(ValueError, match="Invalid step type 'bogus'.*'normal', 'global' or 'generator'"):
        step(step_type="bogus")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="more than one parameter annotated StepInput"):

        @step(inputs=["a"])
        def Twice(first: StepInput, second: StepInput) -> StepOutput:
            yield first


# -- in a Pipeline, on Beam's runners -------------------------------------------------------------------------


@pytest.mark.parametrize("options", [None, WORKER_PROCESSES], ids=["in_memory", "multi_processing"])
def test_decorated_steps_run_in_a_pipeline(options: Any) -> None:
    distiset = decorated_pipeline(prefix="# ").run(options=options, use_cache=False)
    rows = distiset["default"]["train"].to_list()
    assert [(row["instruction"], row["generation"]) for row in rows] == [
        (f"question {i:02d}", f"# question {i:02d}") for i in range(0, 7, 2)
    ]
    if options:  # the classes went to other processes, by name, and ran there
        assert os.getpid() not in {row["pid"] for row in rows}


def test_run_parameters_reach_the_function() -> None:
    distiset = decorated_pipeline(prefix="# ").run(
        parameters={"load": {"num_rows": 4}, "echo": {"prefix": "## "}, "keep": {"modulo": 3}}, use_cache=False
    )
    rows = distiset["default"]["train"].to_list()
    assert [row["generation"] for row in rows] == ["## question 00", "## question 03"]


def test_a_required_runtime_parameter_is_checked_before_the_run() -> None:
    @step(inputs=["instruction"], outputs=["tagged"])
    def Tag(inputs: StepInput, tag: RuntimeParameter[str]) -> StepOutput:
        yield [{**row, "tagged": tag} for row in inputs]

    with Pipeline("missing") as pipeline:
        Instructions(num_rows=2) >> Tag(name="tag")
    with pytest.raises(PipelineValidationError, match="tag"):
        pipeline.run(use_cache=False)


def test_a_decorated_step_in_a_beam_job() -> None:
    with beam.Pipeline(runner=FnApiRunner()) as p:
        rows = p | beam.Create([{"instruction": "ab"}, {"instruction": "abc"}]) | "length" >> Length()
        assert_that(rows, equal_to([{"instruction": "ab", "length": 2}, {"instruction": "abc", "length": 3}]))


def test_a_step_decorated_in_a_function_travels_by_value_to_worker_processes() -> None:
    # As in a notebook: the class cannot be imported by name, so Beam's pickler sends it, function and all.
    @step(inputs=["instruction"], outputs=["shout"])
    def Shout(inputs: StepInput, marks: RuntimeParameter[str] = "!") -> StepOutput:
        yield [{**row, "shout": row["instruction"].upper() + marks} for row in inputs]

    with Pipeline("local") as pipeline:
        Instructions(num_rows=3) >> Shout(marks="!!")
    rows = pipeline.run(options=WORKER_PROCESSES, use_cache=False)["default"]["train"].to_list()
    assert [row["shout"] for row in rows] == ["QUESTION 00!!", "QUESTION 01!!", "QUESTION 02!!"]


def test_the_classes_pickle_by_name() -> None:
    echo = Echo(name="echo", prefix="~ ")
    for dumps, loads in ((pickle.dumps, pickle.loads), (cloudpickle_pickler.dumps, cloudpickle_pickler.loads)):
        copy = loads(dumps(echo))
        assert type(copy) is Echo
        assert next(copy.process([{"instruction": "x"}]))[0]["generation"] == "~ x"
        assert loads(dumps(Summarize)) is Summarize
    assert len(pickle.dumps(Echo)) < 100  # a reference to `tests...Echo`, not the function's code


# -- saving and loading ---------------------------------------------------------------------------------------


def test_a_pipeline_with_decorated_steps_saves_and_loads(tmp_path) -> None:
    path = tmp_path / "pipeline.yaml"
    decorated_pipeline(prefix="# ").save(path)
    saved = {entry["name"]: entry["step"] for entry in yaml.safe_load(path.read_text())["pipeline"]["steps"]}
    assert saved["echo"]["type_info"] == {"module": __name__, "name": "Echo"}
    assert saved["echo"]["prefix"] == "# "

    loaded = Pipeline.from_file(path)  # the decorator registered the classes: no `@register` needed
    assert [type(step) for step in loaded.dag.steps.values()] == [Instructions, Echo, KeepEven]
    assert loaded.dag.steps["echo"].prefix == "# "
    rows = loaded.run(use_cache=False)["default"]["train"].to_list()
    assert [row["generation"] for row in rows] == [f"# question {i:02d}" for i in range(0, 7, 2)]


# -- @task ----------------------------------------------------------------------------------------------------


def test_task_decorator_makes_a_task_prompting_from_the_docstring() -> None:
    assert issubclass(Summarize, Task) and Summarize.__module__ == __name__
    summarize = Summarize(llm=OpenAILLM(model="m", base_url="http://127.0.0.1:9/v1", api_key="t"))
    assert (summarize.inputs, summarize.outputs) == (["text"], ["summary"])
    assert summarize.format_input({"text": "Beam runs pipelines."}) == [
        {"role": "system", "content": "You summarize texts in one line."},
        {"role": "user", "content": "Summarize this: Beam runs pipelines."},
    ]
    assert summarize.format_output("short", {"text": "t"}) == {"summary": "SHORT"}


@pytest.mark.parametrize("options", [None, WORKER_PROCESSES], ids=["in_memory", "multi_processing"])
def test_a_decorated_task_runs_and_round_trips(openai_server, tmp_path, monkeypatch, options: Any) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "t")  # a saved pipeline leaves keys out
    openai_server.set_responder(lambda model, messages: json.dumps([m["content"] for m in messages]))
    with Pipeline("summaries") as pipeline:
        load = Instructions(name="load", num_rows=3, output_mappings={"instruction": "text"})
        summarize = Summarize(name="summarize", llm=OpenAILLM(model="m", base_url=openai_server.base_url, api_key="t"))
        load >> summarize
    path = tmp_path / "summaries.yaml"
    pipeline.save(path)
    loaded = Pipeline.from_file(path)
    assert type(loaded.dag.steps["summarize"]) is Summarize

    rows = loaded.run(options=options, use_cache=False)["default"]["train"].to_list()
    assert [row["summary"] for row in rows] == [
        json.dumps(["You summarize texts in one line.", f"Summarize this: question {i:02d}"]).upper() for i in range(3)
    ]
    assert {row["model_name"] for row in rows} == {"m"}


@pytest.mark.parametrize(
    "docstring, message",
    [
        (None, "has no docstring"),
        ("No prompt here.", "does not have the prompt"),
        ("---\nsystem_prompt: only this\n---", "needs both `system_prompt` and `user_message_template`"),
        ("---\nsystem_prompt: s\nuser_message_template: 'Hi {name}'\n---", r"placeholders \['name'\] that are not inputs"),
    ],
)
def test_task_decorator_refuses_a_docstring_without_a_usable_prompt(docstring: Optional[str], message: str) -> None:
    def Formatting(output: Optional[str], input: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        return {}

    Formatting.__doc__ = docstring
    with pytest.raises(ValueError, match=message):
        task(inputs=["text"], outputs=["x"])(Formatting)
