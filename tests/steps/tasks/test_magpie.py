"""Magpie and MagpieGenerator: raw pre-query prompts, parsing, seeded system prompts, turns, runs on Beam."""

from __future__ import annotations

import pickle
import random

import pytest

from beam_distil.models import ClientvLLM, GroqLLM, LlamaCppLLM, OllamaLLM, OpenAILLM
from beam_distil.models.vertexai import VertexAILLM
from beam_distil.pipeline import Pipeline
from beam_distil.steps.generators import LoadDataFromDicts
from beam_distil.steps.tasks import Magpie, MagpieGenerator
from beam_distil.steps.tasks.magpie import (
    MAGPIE_MULTI_TURN_SYSTEM_PROMPT,
    MAGPIE_PRE_QUERY_TEMPLATES,
    build_magpie_prompt,
    choose_system_prompt,
    parse_instruction,
    supports_raw_completion,
)

DEAD_URL = "http://127.0.0.1:1/v1"
USER = "<|im_start|>user\n"


def llm(url=DEAD_URL, model="m", **kwargs):
    return OpenAILLM(model=model, base_url=url, api_key="t", **kwargs)


def is_raw(messages):
    """A /v1/completions request: its prompt is the only 'user' message and ends with the pre-query."""
    return messages[-1]["content"].endswith(USER)


def scripted(messages):
    """Completions get a numbered instruction (plus a stray end-of-turn tail to cut); chats an answer."""
    content = messages[-1]["content"]
    if is_raw(messages):
        turn = content.count("<|im_start|>user")
        return f"  question {turn}<|im_end|>\n<|im_start|>assistant\nleak"
    return f"answer to {content}"


def run(server, step_factory, data):
    with Pipeline("p") as pipeline:
        LoadDataFromDicts(data=data) >> step_factory(llm(server.base_url))
    return pipeline.run()["default"]["train"].to_list()


def test_prompts_for_each_template():
    system = [{"role": "system", "content": "Be brief."}]
    turns = system + [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]
    assert build_magpie_prompt([], "chatml") == "<|im_start|>user\n"
    assert build_magpie_prompt([], "qwen2") == "<|im_start|>user\n"
    assert build_magpie_prompt(system, "chatml") == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n"
    assert build_magpie_prompt(turns, "qwen2") == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi?<|im_end|>\n"
        "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\n"
    )
    assert build_magpie_prompt([], "llama3") == "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
    assert build_magpie_prompt(turns, "llama3") == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\n"
    )
    # distilabel's names resolve to distilabel's strings
    assert MAGPIE_PRE_QUERY_TEMPLATES["llama3"] == "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
    assert MAGPIE_PRE_QUERY_TEMPLATES["qwen2"] == "<|im_start|>user\n"
    assert build_magpie_prompt([], "<s>[INST] ") == "<s>[INST] "
    with pytest.raises(ValueError, match="custom pre_query_template"):
        build_magpie_prompt(system, "<s>[INST] ")


def test_parse_instruction():
    assert parse_instruction("  What is 2+2?\n<|im_end|>\n<|im_start|>assistant\n4", "chatml") == "What is 2+2?"
    assert parse_instruction("Name a fruit.<|eot_id|><|start_header_id|>assistant", "llama3") == "Name a fruit."
    assert parse_instruction("Plain text, no stop token.\n", "qwen2") == "Plain text, no stop token."
    assert parse_instruction("  \n<|im_end|>", "chatml") is None
    assert parse_instruction("", "chatml") is None
    assert parse_instruction(None, "chatml") is None


def test_stop_token_is_added_to_the_generation_kwargs():
    task = Magpie(llm=llm(generation_kwargs={"stop": "###", "temperature": 0.5}), pre_query_template="llama3")
    assert task.generation_kwargs({}) == {"stop": ["###", "<|eot_id|>"], "temperature": 0.5}
    assert Magpie(llm=llm()).generation_kwargs({}) == {"stop": ["<|im_end|>"]}


def test_columns_follow_the_flags():
    assert Magpie(llm=llm()).outputs == ["instruction", "response", "model_name"]
    assert Magpie(llm=llm(), n_turns=3).outputs == ["conversation", "model_name"]
    assert Magpie(llm=llm(), end_with_user=True).outputs == ["conversation", "model_name"]
    assert Magpie(llm=llm(), n_turns=3, only_instruction=True).outputs == ["instruction", "model_name"]
    assert Magpie(llm=llm(), system_prompt={"a": "A", "b": "B"}).outputs == [
        "instruction", "response", "model_name", "system_prompt_key"
    ]
    assert Magpie(llm=llm()).inputs == {"system_prompt": False}
    assert MagpieGenerator(llm=llm(), num_rows=2, n_turns=2).outputs == ["conversation", "model_name"]


def test_validation():
    vertex = VertexAILLM(model="gemini", project="p", location="l")
    assert not supports_raw_completion(vertex)
    assert supports_raw_completion(llm()) and supports_raw_completion(LlamaCppLLM())
    assert supports_raw_completion(OllamaLLM(model="m"))
    assert supports_raw_completion(ClientvLLM(model="m", base_url="http://127.0.0.1:9/v1"))
    with pytest.raises(ValueError, match="GroqLLM cannot"):  # an OpenAILLM that takes chats only
        Magpie(llm=GroqLLM(model="m", api_key="k"))
    with pytest.raises(ValueError, match="VertexAILLM cannot"):
        Magpie(llm=vertex)
    with pytest.raises(ValueError, match="VertexAILLM cannot"):
        MagpieGenerator(llm=vertex, num_rows=1)
    with pytest.raises(ValueError, match="must sum to 1.0"):
        Magpie(llm=llm(), system_prompt={"a": ("A", 0.5), "b": ("B", 0.4)})
    with pytest.raises(ValueError, match="empty"):
        Magpie(llm=llm(), system_prompt=[])
    with pytest.raises(ValueError, match="cannot render a system prompt"):
        Magpie(llm=llm(), pre_query_template="<s>[INST] ", system_prompt="x")
    with pytest.raises(ValueError, match="cannot render earlier turns"):
        Magpie(llm=llm(), pre_query_template="<s>[INST] ", n_turns=2)
    Magpie(llm=llm(), pre_query_template="<s>[INST] ", n_turns=2, only_instruction=True)  # one call: fine


def test_system_prompt_choice_is_seeded():
    rng = lambda: random.Random(3)
    assert choose_system_prompt(None, rng()) == (None, None)
    assert choose_system_prompt("x", rng()) == ("x", None)
    assert choose_system_prompt(["a", "b"], rng())[1] is None
    assert choose_system_prompt({"k": ("only", 1.0)}, rng()) == ("only", "k")
    weighted = {"rare": ("R", 0.05), "common": ("C", 0.95)}
    keys = [choose_system_prompt(weighted, random.Random(i))[1] for i in range(400)]
    assert 300 < keys.count("common") < 400 and keys.count("rare") > 0

    prompts = {f"k{i}": f"system {i}" for i in range(10)}
    rows = [{"id": i} for i in range(30)]
    firsts = lambda seed: [Magpie(llm=llm(), system_prompt=prompts, seed=seed).format_input(r) for r in rows]
    random.seed(0)
    a = firsts(1)
    random.seed(99)  # global state plays no part
    assert firsts(1) == a
    assert firsts(2) != a
    assert len(set(a)) > 3
    task = Magpie(llm=llm(), system_prompt=prompts, seed=1)
    assert pickle.loads(pickle.dumps(task)).format_input(rows[5]) == a[5]
    # the row's own system prompt wins; multi-turn rows without one get the paper's
    assert task.format_input({"system_prompt": "Mine."}) == "<|im_start|>system\nMine.<|im_end|>\n" + USER
    assert Magpie(llm=llm(), n_turns=2).format_input({}) == (
        f"<|im_start|>system\n{MAGPIE_MULTI_TURN_SYSTEM_PROMPT}<|im_end|>\n" + USER
    )


def drive(task, input, answers):
    """Runs ``task.conversation`` with scripted answers; returns the prompts and the output columns."""
    prompts, steps = [], task.conversation(input)
    try:
        prompt = next(steps)
        for answer in answers:
            prompts.append(prompt)
            prompt = steps.send(answer)
    except StopIteration as stop:
        return prompts, stop.value
    raise AssertionError("the conversation wanted more calls than scripted")


def test_n_turns_conversation_shape():
    task = Magpie(llm=llm(), n_turns=2, include_system_prompt=True, system_prompt="S")
    prompts, columns = drive(task, {}, ["Q1<|im_end|>", "A1", " Q2 ", "A2"])
    assert prompts[0] == "<|im_start|>system\nS<|im_end|>\n" + USER
    assert prompts[1] == [{"role": "system", "content": "S"}, {"role": "user", "content": "Q1"}]
    assert prompts[2] == (
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n" + USER
    )
    assert columns == {"conversation": [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "Q2"},
        {"role": "assistant", "content": "A2"},
    ]}
    _, columns = drive(Magpie(llm=llm(), n_turns=2, end_with_user=True), {}, ["Q1", "A1", "Q2"])
    assert [m["role"] for m in columns["conversation"]] == ["user", "assistant", "user"]
    _, columns = drive(Magpie(llm=llm(), n_turns=3, only_instruction=True), {}, ["Q1"])
    assert columns == {"instruction": "Q1"}
    _, columns = drive(Magpie(llm=llm(), system_prompt={"a": "A"}), {}, ["Q", "R"])
    assert columns == {"instruction": "Q", "response": "R", "system_prompt_key": "a"}


def test_pipeline_run_against_the_server(openai_server):
    openai_server.set_answer("m", scripted)
    data = [{"system_prompt": "You teach maths."}, {"system_prompt": "You cook."}]
    rows = run(openai_server, lambda l: Magpie(llm=l), data)
    assert len(rows) == 2
    for row, source in zip(rows, data):
        assert row["system_prompt"] == source["system_prompt"]
        assert row["instruction"] == "question 1"
        assert row["response"] == "answer to question 1"
        assert row["model_name"] == "m"
        # distilabel's layout: the tokens of each call (the server counts words), no raw prompts or answers
        assert list(row["distilabel_metadata"]) == ["statistics_magpie_0"]
        statistics = row["distilabel_metadata"]["statistics_magpie_0"]
        assert sorted(statistics) == ["input_tokens", "output_tokens"]
        assert [len(counts) for counts in statistics.values()] == [2, 2]  # one entry per call
        assert all(isinstance(n, int) and n > 0 for counts in statistics.values() for n in counts)
        assert statistics["output_tokens"] == [4, 4]  # the server counts words of each answer
    completions = [r for r in openai_server.requests if "prompt" in r]
    chats = [r for r in openai_server.requests if "messages" in r]
    assert sorted(r["prompt"] for r in completions) == sorted(
        f"<|im_start|>system\n{d['system_prompt']}<|im_end|>\n" + USER for d in data
    )
    assert all(r["stop"] == ["<|im_end|>"] for r in completions)
    assert sorted(r["messages"][0]["content"] for r in chats) == sorted(d["system_prompt"] for d in data)
    assert all(r["messages"][1] == {"role": "user", "content": "question 1"} for r in chats)


def test_multi_turn_and_failures_keep_the_row(openai_server):
    def answer(messages):
        content = messages[-1]["content"]
        if "fail" in content and is_raw(messages):
            return "<|im_end|>"  # an empty instruction
        return scripted(messages)

    openai_server.set_answer("m", answer)
    data = [{"system_prompt": "ok"}, {"system_prompt": "fail"}]
    rows = run(openai_server, lambda l: Magpie(llm=l, n_turns=2), data)
    good, bad = rows
    assert [m["content"] for m in good["conversation"]] == [
        "question 1", "answer to question 1", "question 2", "answer to question 2"
    ]
    assert good["distilabel_metadata"].get("error_magpie_0") is None
    # the first instruction failed: nothing to keep, as distilabel gives an empty conversation
    assert bad["conversation"] == [] and bad["system_prompt"] == "fail"
    assert "empty instruction" in bad["distilabel_metadata"]["error_magpie_0"]


def test_generator_produces_num_rows(openai_server):
    openai_server.set_answer("m", scripted)
    with Pipeline("p") as pipeline:
        MagpieGenerator(
            llm=llm(openai_server.base_url), num_rows=5, batch_size=2, system_prompt={"a": "A", "b": "B"}, seed=4
        )
    rows = pipeline.run()["default"]["train"].to_list()
    assert len(rows) == 5
    for row in rows:
        assert row["instruction"] == "question 1"
        assert row["response"] == "answer to question 1"
        assert row["system_prompt_key"] in {"a", "b"}
        assert row["model_name"] == "m"
    assert openai_server.request_count == 10
    # the same seed picks the same system prompts, row by row
    gen = MagpieGenerator(llm=llm(openai_server.base_url), num_rows=5, only_instruction=True,
                          system_prompt={"a": "A", "b": "B"}, seed=4)
    gen.load()
    try:
        batches = list(gen.process())
    finally:
        gen.unload()
    assert [last for _, last in batches] == [True]  # one batch of the default size 50
    again = [row for batch, _ in batches for row in batch]
    assert len(again) == 5
    assert [set(row) for row in again][0] == {"instruction", "model_name", "system_prompt_key", "distilabel_metadata"}
    assert [row["system_prompt_key"] for row in again] == [row["system_prompt_key"] for row in rows]


def test_generator_keeps_failed_rows():
    gen = MagpieGenerator(name="gen", llm=llm(max_retries=0), num_rows=2, only_instruction=True)
    [(rows, last)] = list(gen.process())
    assert last is True and len(rows) == 2
    assert all(row["instruction"] is None and "Error" in row["distilabel_metadata"]["error_gen"] for row in rows)


def test_real_run_on_the_embedded_model():
    model = LlamaCppLLM(generation_kwargs={"max_new_tokens": 24, "temperature": 0.7})
    if model.check_ready():
        pytest.skip(model.check_ready()[0])
    data = [{"system_prompt": "You are a helpful assistant."}, {"system_prompt": "You are an expert in history."}]
    with Pipeline("p") as pipeline:
        LoadDataFromDicts(data=data) >> Magpie(llm=model, pre_query_template="chatml", only_instruction=True)
    rows = pipeline.run()["default"]["train"].to_list()
    assert len(rows) == 2
    for row in rows:
        assert isinstance(row["instruction"], str) and row["instruction"].strip()
        assert "<|im_end|>" not in row["instruction"] and "<|im_start|>" not in row["instruction"]
        assert row["model_name"] == "SmolLM2-135M-Instruct.Q4_1"


def test_the_template_can_live_on_the_llm_as_in_distilabel():
    llama3 = MAGPIE_PRE_QUERY_TEMPLATES["llama3"]
    # a name, or the resolved string distilabel's LLMs hold
    for template in ("llama3", llama3):
        task = Magpie(llm=llm(magpie_pre_query_template=template), system_prompt="S")
        assert task.pre_query_template == "llama3"
        assert task.format_input({}).startswith("<|begin_of_text|><|start_header_id|>system")
    # the task's own template wins
    assert Magpie(llm=llm(magpie_pre_query_template="llama3"), pre_query_template="qwen2").pre_query_template == "qwen2"
    assert Magpie(llm=llm()).pre_query_template == "chatml"
    # LlamaCppLLM takes distilabel's fields
    local = LlamaCppLLM(model_path="/nonexistent.gguf", use_magpie_template=True, magpie_pre_query_template="qwen2")
    assert MagpieGenerator(llm=local, num_rows=1).pre_query_template == "qwen2"
    # an LLM that cannot complete raw text cannot have one; use_magpie_template needs one
    with pytest.raises(ValueError, match="cannot complete raw text"):
        VertexAILLM(model="gemini-2.0-flash", project="p", location="us-central1", magpie_pre_query_template="llama3")
    with pytest.raises(ValueError, match="needs magpie_pre_query_template"):
        llm(use_magpie_template=True)


def test_a_saved_pipeline_keeps_the_template_of_the_llm():
    from beam_distil.steps.serialization import dump_model

    task = Magpie(name="magpie", llm=llm(magpie_pre_query_template="llama3"))
    dumped = task.dump()
    assert dumped["pre_query_template"] == "llama3"
    # the LLM's own dump leaves the Magpie fields out, so that distilabel's LLMs without them load it
    assert "magpie_pre_query_template" not in dump_model(task.llm)
    assert type(task).from_dict(dumped).pre_query_template == "llama3"


def failing_at(turn_marker):
    """Scripted answers, except that the chat call whose last user message is ``turn_marker`` fails (HTTP 500)."""

    def answer(messages):
        if not is_raw(messages) and messages[-1]["content"] == turn_marker:
            raise RuntimeError("model crashed")
        return scripted(messages)

    return answer


def test_a_failed_later_turn_keeps_the_turns_before_it(openai_server, tmp_path):
    import glob
    import json

    openai_server.set_answer("m", failing_at("question 2"))
    with Pipeline("p") as pipeline:
        LoadDataFromDicts(data=[{"system_prompt": "S"}]) >> Magpie(
            name="magpie", llm=llm(openai_server.base_url, max_retries=0), n_turns=3, include_system_prompt=True
        )
    [row] = pipeline.run(dead_letter_dir=str(tmp_path / "dead"))["default"]["train"].to_list()

    assert row["conversation"] == [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "question 1"},
        {"role": "assistant", "content": "answer to question 1"},
        {"role": "user", "content": "question 2"},
    ]
    assert "call 4" in row["distilabel_metadata"]["error_magpie"]
    # the tokens of the calls that were answered
    assert [len(v) for v in row["distilabel_metadata"]["statistics_magpie"].values()] == [3, 3]
    dead = [json.loads(line) for path in glob.glob(str(tmp_path / "dead" / "*.jsonl")) for line in open(path)]
    assert len(dead) == 1 and dead[0]["row"]["conversation"] == row["conversation"]


def test_one_turn_keeps_its_instruction_when_the_answer_is_empty(openai_server):
    openai_server.set_answer("m", lambda messages: scripted(messages) if is_raw(messages) else "   ")
    rows = run(openai_server, lambda l: Magpie(name="magpie", llm=l, system_prompt={"k": "S"}), [{}])
    assert (rows[0]["instruction"], rows[0]["response"], rows[0]["system_prompt_key"]) == ("question 1", None, "k")
    assert "no answer" in rows[0]["distilabel_metadata"]["error_magpie"]


def test_generator_metadata_is_per_call_statistics(openai_server):
    openai_server.set_answer("m", scripted)
    gen = MagpieGenerator(name="gen", llm=llm(openai_server.base_url), num_rows=2, n_turns=2)
    gen.load()
    try:
        [(rows, _)] = list(gen.process())
    finally:
        gen.unload()
    for row in rows:
        assert list(row["distilabel_metadata"]) == ["statistics_gen"]
        assert [len(v) for v in row["distilabel_metadata"]["statistics_gen"].values()] == [4, 4]
