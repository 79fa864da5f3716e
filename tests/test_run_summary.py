"""The end-of-run summary table."""

from __future__ import annotations

import logging

from beam_distil.pipeline import Pipeline
from beam_distil.run_summary import format_summary
from beam_distil.steps import KeepColumns, LoadDataFromDicts


def test_summary_table_lists_every_step_and_counter():
    table = format_summary(
        {
            "load": {"rows_out": 3},
            "gen": {"rows_in": 3, "rows_out": 3, "llm_requests": 3, "llm_failures": 1, "input_tokens": 30, "output_tokens": 12},
        }
    )
    lines = table.splitlines()
    assert lines[0].split() == ["step", "rows_in", "rows_out", "llm_requests", "llm_failures", "input_tokens", "output_tokens"]
    assert lines[2].split() == ["load", "-", "3", "-", "-", "-", "-"]
    assert lines[3].split() == ["gen", "3", "3", "3", "1", "30", "12"]


def summary_pipeline() -> Pipeline:
    with Pipeline("summary") as pipeline:
        LoadDataFromDicts(name="load", data=[{"a": 1}, {"a": 2}]) >> KeepColumns(name="keep", columns=["a"])
    return pipeline


def test_a_local_run_logs_its_summary_when_logging_is_configured(caplog):
    caplog.set_level(logging.INFO, logger="beam_distil")
    summary_pipeline().run()
    assert "Pipeline 'summary' finished:" in caplog.text
    assert any(line.split()[:3] == ["keep", "2", "2"] for line in caplog.text.splitlines())


def test_a_local_run_prints_its_summary_on_stderr_otherwise(capsys, monkeypatch):
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    summary_pipeline().run()
    err = capsys.readouterr().err
    assert "Pipeline 'summary' finished:" in err
    assert any(line.split()[:3] == ["keep", "2", "2"] for line in err.splitlines())


def test_a_step_that_received_fewer_rows_than_were_sent_is_named():
    from beam_distil.run_summary import rows_lost_between_steps

    metrics = {"load": {"rows_out": 1000}, "gen": {"rows_in": 998, "rows_out": 998}, "keep": {"rows_in": 998}}
    assert rows_lost_between_steps([("load", "gen"), ("gen", "keep")], metrics) == [
        "step 'gen' received 998 rows of the 1000 that 'load' sent"
    ]
    assert rows_lost_between_steps([("gen", "keep")], metrics) == []


def test_a_complete_run_reports_no_lost_rows(openai_server, caplog):
    import logging

    from beam_distil.models import OpenAILLM
    from beam_distil.pipeline import Pipeline, sample_n_steps
    from beam_distil.steps import GroupColumns, KeepColumns, LoadDataFromDicts
    from beam_distil.steps.tasks import TextGeneration

    with Pipeline("complete") as pipeline:
        load = LoadDataFromDicts(name="load", data=[{"instruction": f"q{i}"} for i in range(30)], batch_size=4)
        tasks = [TextGeneration(name=f"gen_{m}", llm=OpenAILLM(model=m, base_url=openai_server.base_url, api_key="t"),
                                num_generations=2) for m in "abc"]
        group = GroupColumns(name="group", columns=["generation"])
        load >> sample_n_steps(2) >> tasks >> group >> KeepColumns(name="keep", columns=["instruction"])
    with caplog.at_level(logging.ERROR, logger="beam_distil"):
        pipeline.run(use_cache=False, rows_per_slice=8)
    assert "lost rows" not in caplog.text
    assert pipeline.last_run_metrics["load"]["rows_out"] == 30
    assert pipeline.last_run_metrics["keep"]["rows_in"] == pipeline.last_run_metrics["group"]["rows_out"] > 0


def test_a_run_without_prices_still_lists_the_tokens_of_each_model(openai_server, caplog):
    from beam_distil.models import OpenAILLM
    from beam_distil.steps.tasks import TextGeneration

    with Pipeline("tokens") as pipeline:
        load = LoadDataFromDicts(name="load", data=[{"instruction": "two words"}, {"instruction": "three more words"}])
        load >> TextGeneration(name="gen", llm=OpenAILLM(model="m", base_url=openai_server.base_url, api_key="t"))
    caplog.set_level(logging.INFO, logger="beam_distil")

    pipeline.run(use_cache=False)

    text = caplog.text
    assert text.index("Pipeline 'tokens' finished:") < text.index("Tokens and cost (US dollars) per model:")
    # The server counts words: 2 + 3 in, "m: two words" + "m: three more words" = 3 + 4 out.
    assert ["m", "2", "5", "7", "0", "0", "no", "price"] in [line.split() for line in text.splitlines()]
    assert pipeline.last_run_usage["m"].cost is None
