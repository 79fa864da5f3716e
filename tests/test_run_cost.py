"""Tokens and cost per model: prices and their errors, the sums over steps, batch rates, the summary table, a
run on the local OpenAI-compatible server and ``beam-distil pipeline run --prices``."""

from __future__ import annotations

import logging
import math

import pytest

from beam_distil.cli import main
from beam_distil.models import OpenAILLM
from beam_distil.pipeline import Pipeline, PipelineValidationError
from beam_distil.run_cost import (
    InvalidPricesError,
    ModelPrice,
    ModelUsage,
    format_usage,
    model_of_each_task,
    parse_prices,
    tokens_by_model,
)
from beam_distil.run_summary import report_summary
from beam_distil.steps import LoadDataFromDicts
from beam_distil.steps.tasks import TextGeneration


def problems_of(prices) -> list:
    with pytest.raises(InvalidPricesError) as raised:
        parse_prices(prices)
    return raised.value.problems


# -- prices ------------------------------------------------------------------------------------------------


def test_batch_prices_default_to_half_the_online_ones():
    price = parse_prices({"m": {"input": 2.5, "output": 10}})["m"]
    assert (price.input, price.output, price.batch_input, price.batch_output) == (2.5, 10.0, 1.25, 5.0)

    explicit = ModelPrice(input=3, output=15, batch_input=3, batch_output=0)
    assert (explicit.batch_input, explicit.batch_output) == (3.0, 0.0)


def test_no_prices_is_an_empty_mapping_and_prices_already_parsed_are_kept():
    price = ModelPrice(input=1, output=2)
    assert parse_prices(None) == {}
    assert parse_prices({"m": price})["m"] is price


def test_a_missing_price_names_the_model_and_the_field():
    assert problems_of({"gpt-4o-mini": {"input": 0.15}}) == [
        "prices for model 'gpt-4o-mini': 'output' is missing; give the US dollars per million output tokens, e.g."
        " {'input': 0.15, 'output': 0.6}"
    ]


def test_an_unknown_price_field_suggests_the_close_name():
    problems = problems_of({"m": {"input": 1, "output": 2, "batch_imput": 0.5}})
    assert problems == [
        "prices for model 'm': unknown field 'batch_imput'. Did you mean 'batch_input', 'batch_output'? The fields"
        " are input, output, batch_input, batch_output (US dollars per million tokens)."
    ]


@pytest.mark.parametrize(
    "value, says",
    [
        (-1, "greater than or equal to 0"),
        (math.inf, "finite number"),
        (True, "valid number"),
        ("1e-1", "write it as a plain number such as 0.15"),
    ],
)
def test_a_price_that_is_not_a_usable_number_is_named(value, says):
    [problem] = problems_of({"m": {"input": 1, "output": value}})
    assert problem.startswith(
        "prices for model 'm': 'output' must be a number of US dollars per million tokens, at least 0"
    )
    assert says in problem and f"got {value!r}" in problem


def test_every_problem_is_listed_at_once():
    problems = problems_of({"a": 3, "b": {"input": -1, "output": 1}, 7: {"input": 1, "output": 1}})
    assert problems[0] == (
        "prices for model 'a' must be a mapping such as {'input': 0.15, 'output': 0.6} (US dollars per million"
        " tokens); got 3"
    )
    assert problems[1].startswith("prices for model 'b': 'input' must be a number")
    assert problems[2].startswith("prices: model name 7 must be a non-empty string")


def test_prices_that_are_not_a_mapping_say_what_they_should_be():
    assert problems_of([("m", 1)]) == [
        "prices must map each model name to its prices in US dollars per million tokens, e.g."
        " {'gpt-4o-mini': {'input': 0.15, 'output': 0.6}}; got a list: [('m', 1)]"
    ]


# -- tokens per model --------------------------------------------------------------------------------------


def test_steps_sharing_a_model_are_summed_and_priced_once():
    metrics = {
        "load": {"rows_out": 10},
        "gen_a": {"llm_requests": 10, "input_tokens": 1000, "output_tokens": 300},
        "gen_b": {"llm_requests": 5, "input_tokens": 500, "output_tokens": 200},
        "judge": {"llm_requests": 10, "input_tokens": 4000, "output_tokens": 100},
    }
    prices = parse_prices({"small": {"input": 0.15, "output": 0.6}, "big": {"input": 2.5, "output": 10}})

    usage = tokens_by_model(metrics, {"gen_a": "small", "gen_b": "small", "judge": "big"}, prices)

    assert list(usage) == ["small", "big"]
    small = usage["small"]
    assert small.steps == ("gen_a", "gen_b")
    assert (small.requests, small.online_input_tokens, small.online_output_tokens) == (15, 1500, 500)
    assert (small.batch_input_tokens, small.batch_output_tokens) == (0, 0)  # counters absent: none at batch rates
    assert small.cost == pytest.approx((1500 * 0.15 + 500 * 0.6) / 1e6, rel=1e-12)
    assert usage["big"].cost == pytest.approx((4000 * 2.5 + 100 * 10) / 1e6, rel=1e-12)


def test_batch_tokens_are_paid_at_batch_rates_and_the_rest_online():
    metrics = {
        "gen": {"llm_requests": 8, "input_tokens": 1000, "output_tokens": 400,
                "batch_input_tokens": 600, "batch_output_tokens": 100},
    }
    explicit = parse_prices({"m": {"input": 3, "output": 15, "batch_input": 1, "batch_output": 7}})
    halved = parse_prices({"m": {"input": 3, "output": 15}})

    usage = tokens_by_model(metrics, {"gen": "m"}, explicit)["m"]

    assert (usage.online_input_tokens, usage.online_output_tokens) == (400, 300)
    assert (usage.batch_input_tokens, usage.batch_output_tokens) == (600, 100)
    assert (usage.input_tokens, usage.output_tokens) == (1000, 400)
    assert usage.cost == pytest.approx((400 * 3 + 300 * 15 + 600 * 1 + 100 * 7) / 1e6, rel=1e-12)
    assert tokens_by_model(metrics, {"gen": "m"}, halved)["m"].cost == pytest.approx(
        (400 * 3 + 300 * 15 + 600 * 1.5 + 100 * 7.5) / 1e6, rel=1e-12
    )


def test_a_model_without_a_price_keeps_its_tokens_and_has_no_cost():
    usage = tokens_by_model({"gen": {"llm_requests": 2, "input_tokens": 20, "output_tokens": 8}}, {"gen": "m"},
                            parse_prices({"other": {"input": 1, "output": 1}}))
    assert usage["m"] == ModelUsage("m", ("gen",), 2, 20, 8, 0, 0, None)


def test_a_task_that_ran_no_row_is_listed_with_zero_tokens():
    usage = tokens_by_model({}, {"gen": "m"}, parse_prices({"m": {"input": 1, "output": 1}}))
    assert (usage["m"].requests, usage["m"].input_tokens, usage["m"].cost) == (0, 0, 0.0)


def test_each_task_step_is_mapped_to_its_llm_model_name():
    with Pipeline("models") as pipeline:
        load = LoadDataFromDicts(name="load", data=[{"instruction": "q"}])
        load >> [TextGeneration(name=f"gen_{m}", llm=OpenAILLM(model=m, api_key="t")) for m in ("a", "b")]

    assert model_of_each_task(pipeline.dag.steps) == {"gen_a": "a", "gen_b": "b"}


# -- summary text ------------------------------------------------------------------------------------------


def test_the_usage_table_has_a_row_per_model_a_total_and_the_models_without_a_price():
    prices = parse_prices({"small": {"input": 1, "output": 2}, "smal-v2": {"input": 1, "output": 1}})
    usage = tokens_by_model(
        {"a": {"llm_requests": 3, "input_tokens": 300, "output_tokens": 90, "batch_input_tokens": 100},
         "b": {"llm_requests": 1, "input_tokens": 10, "output_tokens": 5}},
        {"a": "small", "b": "small-v2"},
        prices,
    )

    lines = format_usage(usage, prices).splitlines()

    assert lines[0].split() == ["model", "requests", "online_input_tokens", "online_output_tokens",
                                "batch_input_tokens", "batch_output_tokens", "cost_usd"]
    assert set(lines[1]) == {"-", " "}
    assert lines[2].split() == ["small", "3", "200", "90", "100", "0", "0.000430"]  # 200*1 + 90*2 + 100*0.5
    assert lines[3].split() == ["small-v2", "1", "10", "5", "0", "0", "no", "price"]
    assert lines[4].split() == ["total", "4", "210", "95", "100", "0", "0.000430"]
    assert lines[5] == (
        "No price for 'small-v2' (not in the total): add them to the prices (US dollars per million tokens, e.g."
        " {'input': 0.15, 'output': 0.6}) to see their cost."
    )
    assert lines[6] == "The prices name 'smal-v2', which no task uses: is that 'small-v2' misspelled?"
    assert len(lines) == 7


def test_without_prices_the_table_shows_tokens_and_no_note():
    usage = tokens_by_model({"a": {"llm_requests": 1, "input_tokens": 4, "output_tokens": 2}}, {"a": "m"})
    lines = format_usage(usage).splitlines()
    assert lines[2].split() == ["m", "1", "4", "2", "0", "0", "no", "price"]
    assert len(lines) == 3  # one model: no total row, and no note when no price was asked for


def test_the_summary_shows_the_models_after_the_steps(capsys):
    metrics = {"gen": {"rows_in": 2, "rows_out": 2, "llm_requests": 2, "input_tokens": 6, "output_tokens": 4}}
    prices = parse_prices({"m": {"input": 1, "output": 1}})

    report_summary("p", metrics, False, tokens_by_model(metrics, {"gen": "m"}, prices), prices)

    err = capsys.readouterr().err
    steps_at = err.index("rows_in")
    models_at = err.index("Tokens and cost (US dollars) per model:")
    assert steps_at < models_at
    assert ["m", "2", "6", "4", "0", "0", "0.000010"] in [line.split() for line in err[models_at:].splitlines()]


# -- runs --------------------------------------------------------------------------------------------------

INSTRUCTIONS = ["one", "two words", "now three words", "four words this time", "and five words at last"]


def shared_model_pipeline(base_url: str) -> Pipeline:
    """``gen_x`` and ``gen_y`` ask ``model-a``, ``gen_z`` asks ``model-b``; each answers every instruction."""
    with Pipeline("costs") as pipeline:
        load = LoadDataFromDicts(name="load", data=[{"instruction": text} for text in INSTRUCTIONS], batch_size=2)
        load >> [
            TextGeneration(name=name, llm=OpenAILLM(model=model, base_url=base_url, api_key="t"))
            for name, model in (("gen_x", "model-a"), ("gen_y", "model-a"), ("gen_z", "model-b"))
        ]
    return pipeline


def server_tokens(openai_server, model: str):
    """(prompt, completion) tokens the local server counted for ``model``: one per word of the messages it
    received, and of the answers it sent (``"<model>: <instruction>"``)."""
    bodies = [body for body in openai_server.requests if body["model"] == model]
    prompt = sum(len(message["content"].split()) for body in bodies for message in body["messages"])
    completion = sum(len(f"{model}: {body['messages'][-1]['content']}".split()) for body in bodies)
    return len(bodies), prompt, completion


def test_a_run_costs_what_the_servers_token_counts_cost(openai_server, caplog):
    pipeline = shared_model_pipeline(openai_server.base_url)
    prices = {"model-a": {"input": 0.15, "output": 0.6}, "model-b": {"input": 2.5, "output": 10},
              "model-unused": {"input": 1, "output": 1}}

    with caplog.at_level(logging.INFO, logger="beam_distil"):
        pipeline.run(use_cache=False, prices=prices)

    requests_a, prompt_a, completion_a = server_tokens(openai_server, "model-a")
    requests_b, prompt_b, completion_b = server_tokens(openai_server, "model-b")
    words = sum(len(text.split()) for text in INSTRUCTIONS)
    assert (requests_a, prompt_a, completion_a) == (10, 2 * words, 2 * (words + len(INSTRUCTIONS)))
    usage = pipeline.last_run_usage
    assert list(usage) == ["model-a", "model-b"]  # a price for a model no task uses adds nothing
    assert usage["model-a"].steps == ("gen_x", "gen_y")
    assert (usage["model-a"].requests, usage["model-a"].input_tokens, usage["model-a"].output_tokens) == (
        requests_a, prompt_a, completion_a)
    assert usage["model-a"].cost == pytest.approx((prompt_a * 0.15 + completion_a * 0.6) / 1e6, rel=1e-12)
    assert usage["model-b"].cost == pytest.approx((prompt_b * 2.5 + completion_b * 10) / 1e6, rel=1e-12)
    summary = caplog.text[caplog.text.index("Tokens and cost (US dollars) per model:"):]
    rows = {line.split()[0]: line.split() for line in summary.splitlines()[1:6] if line.strip()}
    assert rows["model-a"] == ["model-a", str(requests_a), str(prompt_a), str(completion_a), "0", "0",
                               f"{usage['model-a'].cost:.6f}"]
    assert rows["total"][-1] == f"{usage['model-a'].cost + usage['model-b'].cost:.6f}"
    assert "No price for" not in summary


def test_bad_prices_stop_the_run_before_any_request(openai_server):
    pipeline = shared_model_pipeline(openai_server.base_url)

    with pytest.raises(PipelineValidationError) as raised:
        pipeline.run(use_cache=False, prices={"model-a": {"input": 0.15, "ouput": 0.6}})

    assert raised.value.problems == [
        "prices for model 'model-a': 'output' is missing; give the US dollars per million output tokens, e.g."
        " {'input': 0.15, 'output': 0.6}",
        "prices for model 'model-a': unknown field 'ouput'. Did you mean 'output', 'input'? The fields are input,"
        " output, batch_input, batch_output (US dollars per million tokens).",
    ]
    assert openai_server.request_count == 0


def test_bad_prices_are_found_before_a_dataset_is_added(openai_server):
    with Pipeline("fed") as pipeline:
        TextGeneration(name="gen", llm=OpenAILLM(model="model-a", base_url=openai_server.base_url, api_key="t"))

    with pytest.raises(PipelineValidationError):
        pipeline.run(dataset=[{"instruction": "q"}], prices={"model-a": "cheap"})
    assert list(pipeline.dag.steps) == ["gen"]  # the pipeline can still be run with its dataset
    pipeline.run(dataset=[{"instruction": "q"}], use_cache=False, prices={"model-a": {"input": 1, "output": 1}})
    assert pipeline.last_run_usage["model-a"].cost == pytest.approx((1 + 2) / 1e6, rel=1e-12)  # "q" -> "model-a: q"


# -- command line ------------------------------------------------------------------------------------------


def test_the_cli_prices_flag_puts_each_models_cost_in_the_summary(
    tmp_path, openai_server, monkeypatch, caplog, docs_pipelines
):
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    config = docs_pipelines.save(tmp_path / "pipeline.yaml", openai_server.base_url, ["hello there", "again"])
    prices = tmp_path / "prices.yaml"
    prices.write_text("model-a: {input: 0.15, output: 0.6}\nmodel-b:\n  input: 2.5\n  output: 10\n")

    with caplog.at_level(logging.INFO, logger="beam_distil"):
        code = main(["pipeline", "run", "--config", config, "--output", str(tmp_path / "out"),
                     "--prices", str(prices), "--ignore-cache"])

    assert code == 0
    _, prompt_a, completion_a = server_tokens(openai_server, "model-a")
    summary = caplog.text[caplog.text.index("Tokens and cost (US dollars) per model:"):]
    rows = {line.split()[0]: line.split() for line in summary.splitlines()[1:7] if line.strip()}
    assert rows["model-a"][-1] == f"{(prompt_a * 0.15 + completion_a * 0.6) / 1e6:.6f}"
    assert rows["model-c"][-2:] == ["no", "price"]
    assert "No price for 'model-c' (not in the total)" in summary


@pytest.mark.parametrize(
    "text, message",
    [
        ("model-a: {input: 0.15, output: cheap}\n", "'output' must be a number"),
        ("model-a: !!python/object/apply:os.system ['echo hacked']\n", "cannot be read"),
        ("a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8)),
         "alias bomb"),
    ],
)
def test_a_bad_or_unsafe_prices_file_is_exit_code_2_before_any_request(
    tmp_path, openai_server, monkeypatch, capsys, docs_pipelines, text, message
):
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    config = docs_pipelines.save(tmp_path / "pipeline.yaml", openai_server.base_url, ["hello"])
    prices = tmp_path / "prices.yaml"
    prices.write_text(text)

    code = main(["pipeline", "run", "--config", config, "--output", str(tmp_path / "out"), "--prices", str(prices)])

    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"beam-distil: error: --prices {str(prices)!r}") and message in err
    assert openai_server.request_count == 0
