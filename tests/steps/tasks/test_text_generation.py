"""TextGeneration, ChatGeneration and the Task contract (num_generations, group_generations, raw output)."""

from __future__ import annotations

import pandas as pd
import pytest

from beam_distil.models import OpenAILLM
from beam_distil.pipeline import Pipeline
from beam_distil.steps.generators import LoadDataFromDicts
from beam_distil.steps.tasks import ChatGeneration, TextGeneration


def run_task(server, task_factory, data, **run_kwargs):
    with Pipeline("p") as pipeline:
        load = LoadDataFromDicts(data=data)
        load >> task_factory(OpenAILLM(model="m", base_url=server.base_url, api_key="t"))
    return pipeline.run(**run_kwargs)["default"]["train"].to_list()


def test_template_columns_and_system_prompt(openai_server):
    rows = run_task(
        openai_server,
        lambda llm: TextGeneration(
            llm=llm, template="Topic: {{ topic }} / {{ tone }}", columns=["topic", "tone"], system_prompt="Be brief."
        ),
        [{"topic": "beam", "tone": "dry"}],
    )
    assert rows[0]["generation"] == "m: Topic: beam / dry"
    assert openai_server.requests[0]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Topic: beam / dry"},
    ]


def test_a_row_system_prompt_wins(openai_server):
    run_task(
        openai_server,
        lambda llm: TextGeneration(llm=llm, system_prompt="default"),
        [{"instruction": "q", "system_prompt": "from the row"}],
    )
    assert openai_server.requests[0]["messages"][0] == {"role": "system", "content": "from the row"}


def test_num_generations_gives_one_row_per_generation(openai_server):
    rows = run_task(openai_server, lambda llm: TextGeneration(llm=llm, num_generations=2), [{"instruction": "a"}, {"instruction": "b"}])
    assert [row["generation"] for row in rows] == ["m: a #0", "m: a #1", "m: b #0", "m: b #1"]
    assert openai_server.request_count == 2  # one request with n=2 per row
    assert openai_server.requests[0]["n"] == 2


def test_group_generations_gives_one_row_with_lists(openai_server):
    rows = run_task(
        openai_server,
        lambda llm: TextGeneration(llm=llm, num_generations=3, group_generations=True, add_raw_input=False),
        [{"instruction": "a"}],
    )
    assert len(rows) == 1
    assert rows[0]["generation"] == ["m: a #0", "m: a #1", "m: a #2"]
    assert rows[0]["model_name"] == "m"
    assert [meta["raw_output_text_generation_0"] for meta in rows[0]["distilabel_metadata"]] == rows[0]["generation"]


def test_raw_output_and_input_can_be_left_out(openai_server):
    rows = run_task(
        openai_server,
        lambda llm: TextGeneration(llm=llm, add_raw_output=False, add_raw_input=False),
        [{"instruction": "a"}],
    )
    assert set(rows[0]["distilabel_metadata"]) == {"statistics_text_generation_0"}


def test_a_row_the_task_cannot_format_is_kept_with_its_error(openai_server):
    rows = run_task(openai_server, lambda llm: TextGeneration(llm=llm), [{"instruction": "ok"}, {"instruction": None}])
    assert rows[0]["generation"] == "m: ok"
    assert rows[1]["generation"] is None
    assert "column 'instruction' must be a string, got NoneType" in rows[1]["distilabel_metadata"]["error_text_generation_0"]
    assert openai_server.request_count == 1


def test_chat_generation_continues_the_conversation(openai_server):
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "how are you"},
    ]
    rows = run_task(openai_server, lambda llm: ChatGeneration(llm=llm), [{"messages": messages}])
    assert rows[0]["generation"] == "m: how are you"
    assert openai_server.requests[0]["messages"] == messages


def test_run_with_a_dataset(openai_server):
    with Pipeline("p") as pipeline:
        TextGeneration(name="gen", llm=OpenAILLM(model="m", base_url=openai_server.base_url, api_key="t"))
    frame = pd.DataFrame({"instruction": ["x", "y"]})
    rows = pipeline.run(dataset=frame)["default"]["train"].to_list()
    assert [row["generation"] for row in rows] == ["m: x", "m: y"]


def test_openai_key_is_never_in_repr_dump_or_errors(openai_server):
    llm = OpenAILLM(model="m", base_url=openai_server.base_url, api_key="sk-secret-value")
    assert "sk-secret-value" not in repr(llm)
    assert "sk-secret-value" not in llm.model_dump_json()
    assert llm.redact("Incorrect API key provided: sk-secret-value") == "Incorrect API key provided: **********"


def test_openai_key_from_the_environment_is_read_on_the_worker(openai_server, monkeypatch):
    llm = OpenAILLM(model="m", base_url=openai_server.base_url)
    assert llm.api_key is None  # nothing baked into the config that travels to workers
    monkeypatch.setenv("OPENAI_API_KEY", "from-env")
    llm.load()
    assert llm._aclient.api_key == "from-env"
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        monkeypatch.delenv("OPENAI_API_KEY")
        OpenAILLM(model="m", base_url=openai_server.base_url).load()


def test_a_task_after_grouped_generations_keeps_their_metadata(openai_server):
    with Pipeline("p") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": "a"}])
        first = TextGeneration(
            name="first", llm=OpenAILLM(model="m", base_url=openai_server.base_url, api_key="t"),
            num_generations=2, group_generations=True, output_mappings={"generation": "drafts", "model_name": "m1"},
        )
        second = TextGeneration(name="second", llm=OpenAILLM(model="n", base_url=openai_server.base_url, api_key="t"))
        load >> first >> second
    row = pipeline.run()["default"]["train"][0]
    assert row["generation"] == "n: a"
    assert row["distilabel_metadata"]["raw_output_first"] == ["m: a #0", "m: a #1"]
    assert row["distilabel_metadata"]["raw_output_second"] == "n: a"


def test_a_template_from_a_config_cannot_reach_python_internals(openai_server, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "t")  # a saved pipeline keeps no key
    marker = tmp_path / "ran"
    # Runs `touch` in plain Jinja: a row's string leads to every class, and one of them to the builtins.
    gadget = (
        "{% for c in instruction.__class__.__mro__[1].__subclasses__() %}{% if c.__name__ == 'catch_warnings' %}"
        f"{{{{ c()._module.__builtins__['__import__']('os').system('touch {marker}') }}}}"
        "{% endif %}{% endfor %}"
    )
    with Pipeline("p") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": "x"}])
        load >> TextGeneration(
            name="gen", template=gadget, llm=OpenAILLM(model="m", base_url=openai_server.base_url, api_key="t")
        )
    config = tmp_path / "pipeline.yaml"
    pipeline.save(config)

    loaded = Pipeline.from_file(config)
    [row] = loaded.run()["default"]["train"].to_list()

    assert not marker.exists()
    assert row["generation"] is None
    assert "SecurityError" in row["distilabel_metadata"]["error_gen"] and "unsafe" in row["distilabel_metadata"]["error_gen"]
    assert openai_server.request_count == 0


def test_a_template_loops_over_a_list_column(openai_server):
    rows = run_task(
        openai_server,
        lambda llm: TextGeneration(
            llm=llm,
            columns=["question", "options"],
            template="{{ question }}{% for option in options %}\n- {{ option }}{% endfor %}",
        ),
        [{"question": "Pick one:", "options": ["tea", "coffee"]}],
    )
    assert openai_server.requests[0]["messages"] == [{"role": "user", "content": "Pick one:\n- tea\n- coffee"}]
    assert rows[0]["generation"] == "m: Pick one:\n- tea\n- coffee"


def test_a_conversation_as_instruction_is_refused_as_distilabel_does():
    task = TextGeneration(name="gen", llm=OpenAILLM(model="m", base_url="http://127.0.0.1:1/v1", api_key="t"))
    with pytest.raises(ValueError, match="Use ChatGeneration"):
        task.format_input({"instruction": [{"role": "user", "content": "hi"}]})
    with pytest.raises(ValueError, match="'instruction' must be a string"):
        task.format_input({"instruction": 1})
    with pytest.raises(KeyError):
        task.format_input({"prompt": "hi"})


def test_chat_generation_refuses_a_conversation_ending_with_the_assistant(openai_server, tmp_path):
    import glob
    import json

    ending_with_assistant = [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]
    task = ChatGeneration(name="chat", llm=OpenAILLM(model="m", base_url="http://127.0.0.1:1/v1", api_key="t"))
    with pytest.raises(ValueError, match="last message must be from the user"):
        task.format_input({"messages": ending_with_assistant})

    with Pipeline("p") as pipeline:
        load = LoadDataFromDicts(data=[{"messages": [{"role": "user", "content": "hi"}]}, {"messages": ending_with_assistant}])
        load >> ChatGeneration(name="chat", llm=OpenAILLM(model="m", base_url=openai_server.base_url, api_key="t"))
    rows = pipeline.run(dead_letter_dir=str(tmp_path / "dead"))["default"]["train"].to_list()

    assert rows[0]["generation"] == "m: hi"
    assert rows[1]["generation"] is None  # the job went on; the row is kept with its reason
    assert "last message must be from the user" in rows[1]["distilabel_metadata"]["error_chat"]
    assert openai_server.request_count == 1
    dead = [json.loads(line) for path in glob.glob(str(tmp_path / "dead" / "*.jsonl")) for line in open(path)]
    assert [record["row"]["messages"] for record in dead] == [ending_with_assistant]
