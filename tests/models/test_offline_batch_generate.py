"""distilabel's direct batch call, ``llm.offline_batch_generate(inputs)``, outside a pipeline, against the local
fake of OpenAI's Batch API."""

from __future__ import annotations

import json

import pytest

from beam_distil.exceptions import DistilabelOfflineBatchGenerationNotFinishedException
from beam_distil.models import OpenAILLM
from beam_distil.testing.openai_batch_server import OpenAIBatchServer


def chats(*texts: str):
    return [[{"role": "user", "content": text}] for text in texts]


def test_without_blocking_it_raises_with_the_jobs_then_returns_the_answers_in_order():
    with OpenAIBatchServer(hold=True) as server:
        llm = OpenAILLM(model="m", base_url=server.base_url, api_key="test", use_offline_batch_generation=True)
        with pytest.raises(DistilabelOfflineBatchGenerationNotFinishedException) as waiting:
            llm.offline_batch_generate(chats("a", "b", "c"), num_generations=2)
        assert waiting.value.jobs_ids == tuple(server.batch_ids) == llm.jobs_ids

        server.complete()
        outputs = llm.offline_batch_generate()
        assert [output["generations"] for output in outputs] == [
            ["m: a #0", "m: a #1"], ["m: b #0", "m: b #1"], ["m: c #0", "m: c #1"]
        ]
        assert all(output["statistics"]["input_tokens"][0] > 0 for output in outputs)
        assert server.batch_count == 1 and llm.jobs_ids is None


def test_blocking_polls_until_done_and_a_failed_request_has_no_generation():
    with OpenAIBatchServer(fail_when=lambda line: "bad" in json.dumps(line)) as server:
        llm = OpenAILLM(
            model="m", base_url=server.base_url, api_key="test", use_offline_batch_generation=True,
            offline_batch_generation_block_until_done=1,
        )
        outputs = llm.offline_batch_generate(chats("good", "bad"))
        assert outputs[0]["generations"] == ["m: good"]
        assert outputs[1]["generations"] == [None]
        assert "400" in outputs[1]["finish_reasons"][0]


def test_the_first_call_needs_inputs():
    llm = OpenAILLM(model="m", base_url="http://127.0.0.1:9/v1", api_key="test", use_offline_batch_generation=True)
    with pytest.raises(ValueError, match="needs the inputs"):
        llm.offline_batch_generate()


def test_a_service_without_a_known_batch_api_refuses_the_direct_call():
    from beam_distil.models import GroqLLM, OllamaLLM

    with pytest.raises(NotImplementedError, match="GroqLLM has no provider batch API"):
        GroqLLM(model="m", api_key="test").offline_batch_generate(chats("a"))
    with pytest.raises(NotImplementedError, match="OllamaLLM has no provider batch API"):
        OllamaLLM(model="m").offline_batch_generate(chats("a"))
