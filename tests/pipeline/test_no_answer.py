"""An answer without usable text (no choices, a content filter, a refusal, an empty string) is a recorded
failure: the row is kept with the reason, counted in ``llm_failures``, dead-lettered, and never cached, so a
re-run asks again."""

from __future__ import annotations

import glob
import json

import pytest

from beam_distil.models import OpenAILLM
from beam_distil.pipeline import Pipeline
from beam_distil.steps import LoadDataFromDicts
from beam_distil.steps.tasks import TextGeneration
from tests.local_http_server import RecordingServer


def body(choices):
    return json.dumps({"choices": choices, "usage": {"prompt_tokens": 3, "completion_tokens": 0}}).encode()


NO_ANSWERS = {
    "no choices": (body([]), "generation 1: no text (the server returned 0 of 1 choices)"),
    "content filter": (
        body([{"index": 0, "message": {"role": "assistant", "content": None}, "finish_reason": "content_filter"}]),
        "generation 1: no text (content_filter)",
    ),
    "refusal": (
        body([{"index": 0, "message": {"role": "assistant", "content": None, "refusal": "I can't help with that."},
               "finish_reason": "stop"}]),
        "generation 1: no text (refusal: I can't help with that.)",
    ),
    "empty text": (
        body([{"index": 0, "message": {"role": "assistant", "content": "  "}, "finish_reason": "stop"}]),
        "generation 1: empty text (stop)",
    ),
}


def run_once(server: RecordingServer, dead_letters: str) -> Pipeline:
    with Pipeline("no-answer") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": "Tell me a secret."}])
        load >> TextGeneration(name="gen", llm=OpenAILLM(model="m", base_url=server.base_url, api_key="t"))
    pipeline.distiset = pipeline.run(dead_letter_dir=dead_letters)
    return pipeline


@pytest.mark.parametrize("case", sorted(NO_ANSWERS))
def test_an_answer_without_text_is_a_counted_failure_and_is_asked_again(case, tmp_path):
    payload, reason = NO_ANSWERS[case]
    with RecordingServer(lambda path, request: (200, {}, payload)) as server:
        first = run_once(server, str(tmp_path / "dead-1"))
        second = run_once(server, str(tmp_path / "dead-2"))

    [row] = first.distiset["default"]["train"].to_list()
    assert row["generation"] is None
    assert row["distilabel_metadata"]["error_gen"] == f"no answer: {reason.split(': ', 1)[1]}"
    assert first.last_run_metrics["gen"]["llm_failures"] == 1
    [record] = [json.loads(line) for path in glob.glob(str(tmp_path / "dead-1" / "*.jsonl")) for line in open(path)]
    assert record["step"] == "gen" and record["error"] == f"no answer: {reason}"
    # Not cached as a success: the second run asked again and failed the same way.
    assert len(server.seen) == 2
    assert second.last_run_metrics["gen"]["cache_hits"] == 0 and second.last_run_metrics["gen"]["llm_failures"] == 1
