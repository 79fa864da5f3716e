"""The live progress's "in flight" is the number of requests really sent and not yet answered, checked against
the server's own count while a run is going on."""

from __future__ import annotations

import threading
from typing import Dict, List, Tuple

import pytest

from beam_distil import progress
from beam_distil.models import LlamaCppLLM, OpenAILLM
from beam_distil.models.in_flight import InFlightCounter, counting_requests_into, request_in_flight
from beam_distil.pipeline import Pipeline
from beam_distil.steps import LoadDataFromDicts
from beam_distil.steps.tasks import TextGeneration

CAP = 5


class _Sampler:
    """Reads the run's progress board and the server's in-flight count together, every 10 ms, until stopped."""

    def __init__(self, server, steps: List[str]) -> None:
        self.samples: List[Tuple[Dict[str, int], int]] = []
        self._server = server
        self._steps = steps
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> "_Sampler":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(0.01):
            for board in list(progress._boards.values()):
                snapshot = board.snapshot()
                ours = {step: snapshot[step].in_flight for step in self._steps if step in snapshot}
                self.samples.append((ours, self._server.in_flight))


@pytest.mark.parametrize("input_batch_size", [1, 50])
@pytest.mark.parametrize("mode", ["in_memory", "multi_threading"])
def test_progress_counts_the_requests_the_server_is_serving(openai_server, mode, input_batch_size):
    openai_server.latency = 0.1
    llm = OpenAILLM(model="m", base_url=openai_server.base_url, api_key="t", max_concurrency=CAP)
    with Pipeline("in-flight") as pipeline:
        load = LoadDataFromDicts(name="load", data=[{"instruction": f"q{i}"} for i in range(60)], batch_size=60)
        load >> TextGeneration(name="gen", llm=llm, input_batch_size=input_batch_size)
    with _Sampler(openai_server, ["gen"]) as sampler:
        distiset = pipeline.run(show_progress=True, use_cache=False, options={"direct_running_mode": mode})
    assert len(distiset["default"]["train"]) == 60

    ours = [sample["gen"] for sample, _ in sampler.samples if "gen" in sample]
    theirs = [server for sample, server in sampler.samples if "gen" in sample]
    # Never more than the cap, and the cap is reached: the count is of requests, not of rows waiting for answers.
    assert max(ours) == CAP == openai_server.max_in_flight
    assert min(ours) >= 0
    # While requests flow the two counts agree, up to the requests crossing the wire at the moment of the sample.
    busy = [(o, t) for o, t in zip(ours, theirs) if t > 0]
    assert len(busy) > 20
    assert sum(abs(o - t) <= 1 for o, t in busy) / len(busy) >= 0.9
    # At the end nothing is left counted.
    assert ours[-1] == 0 or sampler.samples[-1][1] == 0


def test_two_tasks_sharing_one_server_each_count_their_own(openai_server):
    openai_server.latency = 0.1
    with Pipeline("in-flight-two") as pipeline:
        load = LoadDataFromDicts(name="load", data=[{"instruction": f"q{i}"} for i in range(40)], batch_size=40)
        for name, cap in (("gen_a", 2), ("gen_b", 6)):
            llm = OpenAILLM(model=name, base_url=openai_server.base_url, api_key="t", max_concurrency=cap)
            load >> TextGeneration(name=name, llm=llm)
    with _Sampler(openai_server, ["gen_a", "gen_b"]) as sampler:
        pipeline.run(show_progress=True, use_cache=False, options={"direct_running_mode": "in_memory"})

    assert max(sample.get("gen_a", 0) for sample, _ in sampler.samples) == 2
    assert max(sample.get("gen_b", 0) for sample, _ in sampler.samples) == 6
    both = [sum(sample.values()) for sample, server in sampler.samples]
    assert max(both) == openai_server.max_in_flight == 8


def test_requests_are_counted_only_where_a_counter_was_opened():
    counter = InFlightCounter()
    changes: List[int] = []
    counter_with_callback = InFlightCounter(on_change=changes.append)
    with request_in_flight():  # no counter: nothing counted, nothing fails
        pass
    with counting_requests_into(counter):
        with request_in_flight(3):
            assert counter.current == 3
            with counting_requests_into(counter_with_callback), request_in_flight():
                assert (counter.current, counter_with_callback.current) == (3, 1)
        assert counter.current == 0
    assert (counter.peak, counter_with_callback.peak) == (3, 1)
    assert changes == [1, -1]


def test_the_embedded_model_counts_the_prompt_it_is_running(openai_server):
    """llama.cpp runs in a worker thread, one prompt at a time: the count reaches the run's board from there."""
    llm = LlamaCppLLM(generation_kwargs={"max_new_tokens": 16, "temperature": 0.0})
    with Pipeline("in-flight-llama") as pipeline:
        load = LoadDataFromDicts(name="load", data=[{"instruction": f"Say {i}"} for i in range(6)])
        load >> TextGeneration(name="gen", llm=llm)
    with _Sampler(openai_server, ["gen"]) as sampler:
        pipeline.run(show_progress=True, use_cache=False, options={"direct_running_mode": "in_memory"})
    counts = [sample["gen"] for sample, _ in sampler.samples if "gen" in sample]
    assert max(counts) == 1 and counts[-1] == 0
