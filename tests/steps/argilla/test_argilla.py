"""Argilla steps (``TextGenerationToArgilla``, ``PreferenceToArgilla``) against a real HTTP server on 127.0.0.1
that speaks the part of Argilla 2.x's API the official SDK uses (``beam_distil.testing.argilla_server``).

The SDK is an extra: the tests that push records need it and are skipped without it; the ones about making,
validating and saving the steps run everywhere.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import threading
import time
from typing import Any, Dict, Iterator, List

import apache_beam as beam
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from beam_distil.pipeline import Pipeline
from beam_distil.steps import LoadDataFromDicts
from beam_distil.steps.argilla import (
    ArgillaConfigurationError,
    PreferenceToArgilla,
    RetryPolicy,
    TextGenerationToArgilla,
)
from beam_distil.steps.argilla.base import ArgillaBase
from beam_distil.testing.argilla_server import ArgillaTestServer

KEY = "argilla-test-key-0123456789"
NEEDS_SDK = "needs the argilla extra: pip install 'beam-distil[argilla]'; then run pytest tests/steps/argilla"
FAST = RetryPolicy(max_attempts=4, base_seconds=0.01, timeout_seconds=10.0, draft_wait_seconds=5.0)


@pytest.fixture(autouse=True)
def _no_argilla_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ARGILLA_API_URL", "ARGILLA_API_KEY", "HF_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(ArgillaBase, "retry_policy", FAST)


@pytest.fixture
def sdk() -> Any:
    return pytest.importorskip("argilla", reason=NEEDS_SDK)


@pytest.fixture
def server(sdk: Any) -> Iterator[ArgillaTestServer]:
    with ArgillaTestServer(api_key=KEY, workspaces=["team", "other"]) as running:
        yield running


def rows(n: int) -> List[Dict[str, Any]]:
    return [
        {"instruction": f"question {i}", "generation": f"answer {i}", "topic": f"t{i % 3}", "length": i * 10}
        for i in range(n)
    ]


def text_step(server: ArgillaTestServer, **kwargs: Any) -> TextGenerationToArgilla:
    settings: Dict[str, Any] = dict(dataset_name="reviews", dataset_workspace="team", api_url=server.api_url)
    settings["api_key"] = KEY
    settings.update(kwargs)
    return TextGenerationToArgilla(**settings)


def run_pipeline(data: List[Dict[str, Any]], step: Any) -> Any:
    with Pipeline("to-argilla") as pipeline:
        load = LoadDataFromDicts(data=data, batch_size=5)
        load >> step  # a step made outside the block joins the pipeline it is connected to
    return pipeline, pipeline.run(use_cache=False)


def pushes(server: ArgillaTestServer) -> List[int]:
    """Status of every record push, in order."""
    return [status for method, path, status in server.requests if method == "PUT" and path.endswith("/records/bulk")]


# -- without the SDK -------------------------------------------------------------------------------------------


def test_the_steps_are_made_and_described_without_the_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "argilla", None)  # as if the extra were not installed

    text = TextGenerationToArgilla(dataset_name="d", input_mappings={"instruction": "prompt"})
    preference = PreferenceToArgilla(dataset_name="d", num_generations=2)

    assert text.outputs == [] and preference.outputs == []
    assert text.get_inputs() == {"prompt": True, "generation": True}
    assert [f.name for f in text.dataset_layout().fields] == ["id", "prompt", "generation"]
    assert [(q.name, q.kind, q.option_values) for q in text.dataset_layout().questions] == [
        ("quality", "label_selection", ["bad", "good"])
    ]
    assert preference.get_inputs() == {"instruction": True, "generations": True, "ratings": False, "rationales": False}
    assert [(f.name, f.required) for f in preference.dataset_layout().fields] == [
        ("id", True), ("instruction", True), ("generations-0", True), ("generations-1", False)
    ]


def test_without_the_sdk_check_ready_and_load_say_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "argilla", None)
    step = TextGenerationToArgilla(dataset_name="d", api_url="http://127.0.0.1:9", api_key=KEY)

    assert step.check_ready() == [
        "TextGenerationToArgilla needs the argilla SDK, which is not installed: pip install 'beam-distil[argilla]'"
    ]
    with pytest.raises(ImportError, match=r"pip install 'beam-distil\[argilla\]'"):
        step.load()


def test_a_pipeline_with_an_argilla_step_but_not_the_sdk_is_refused_before_launch(monkeypatch: pytest.MonkeyPatch) -> None:
    from beam_distil.pipeline import Pipeline, PipelineValidationError
    from beam_distil.steps import LoadDataFromDicts

    monkeypatch.setitem(sys.modules, "argilla", None)
    with Pipeline("review") as pipeline:
        LoadDataFromDicts(data=[{"instruction": "q", "generation": "a"}]) >> TextGenerationToArgilla(
            name="to_argilla", dataset_name="d", api_url="http://127.0.0.1:9", api_key=KEY
        )

    with pytest.raises(PipelineValidationError, match=r"Step 'to_argilla': TextGenerationToArgilla needs the argilla SDK"):
        pipeline.run()


def test_check_ready_names_the_missing_server_and_key_and_how_to_give_them() -> None:
    step = TextGenerationToArgilla(dataset_name="d")
    problems = [p for p in step.check_ready() if "not installed" not in p]
    assert problems == [
        "no Argilla server: pass api_url= or set the ARGILLA_API_URL environment variable",
        "no Argilla API key: pass the key of an Argilla owner or admin (shown in the user's settings page in"
        " Argilla) as api_key= on step 'text_generation_to_argilla_0', or set the ARGILLA_API_KEY environment variable",
    ]
    bad_url = TextGenerationToArgilla(dataset_name="d", api_url="localhost:6900", api_key=KEY)
    assert any("'localhost:6900' is not an http(s) URL" in p for p in bad_url.check_ready())
    clash = TextGenerationToArgilla(
        dataset_name="d", api_url="http://h", api_key=KEY, metadata_properties={"generation": "terms"}
    )
    assert any("metadata_properties ['generation'] share their names" in p for p in clash.check_ready())
    misnamed = TextGenerationToArgilla(
        dataset_name="d", api_url="http://h", api_key=KEY, metadata_properties={"Topic": "terms"}
    )
    assert any("metadata_properties ['Topic']: Argilla names metadata properties" in p for p in misnamed.check_ready())


def test_records_follow_distilabel_and_leave_out_what_does_not_fit() -> None:
    step = TextGenerationToArgilla(
        dataset_name="d", metadata_properties={"topic": "terms", "length": "integer", "score": "float"}
    )
    row = {"instruction": "q", "generation": ["a", None, "b", "a"], "topic": 3, "length": "long", "score": float("nan")}

    records = step.records_for(row)

    assert [r.fields["generation"] for r in records] == ["a", "b"]  # one record per distinct generation
    assert records[0].fields["id"] == hashlib.sha256(b"q").hexdigest()
    assert records[0].metadata == {"topic": "3"}  # "long" is no integer, NaN no float: left out
    assert records[0].external_id != records[1].external_id
    assert step.records_for({"instruction": None, "generation": "a"}) == []
    assert step.records_for({"instruction": "q", "generation": None}) == []


def test_the_key_is_not_in_the_repr_nor_in_a_saved_pipeline(tmp_path: Any) -> None:
    with Pipeline("saved") as pipeline:
        load = LoadDataFromDicts(data=rows(2))
        review = TextGenerationToArgilla(dataset_name="d", api_url="http://127.0.0.1:9", api_key=KEY)
        load >> review
    assert KEY not in repr(review) and KEY not in str(review)
    for suffix in (".yaml", ".json"):
        path = tmp_path / f"pipeline{suffix}"
        pipeline.save(path)
        assert KEY not in path.read_text()
    loaded = Pipeline.from_file(tmp_path / "pipeline.yaml").dag.steps[review.name]
    assert isinstance(loaded, TextGenerationToArgilla)
    assert loaded.api_key is None and loaded.api_url == "http://127.0.0.1:9" and loaded.dataset_name == "d"


# -- against the server ------------------------------------------------------------------------------------------


def test_a_pipeline_run_pushes_every_row_once_with_its_fields_and_metadata(server: ArgillaTestServer) -> None:
    data = rows(12)
    step = text_step(server, input_batch_size=4, metadata_properties={"topic": "terms", "length": "integer"})

    pipeline, distiset = run_pipeline(data, step)

    stored = server.records("reviews", "team")
    assert len(stored) == 12
    by_instruction = {record["fields"]["instruction"]: record for record in stored}
    for row in data:
        record = by_instruction[row["instruction"]]
        assert record["fields"]["generation"] == row["generation"]
        assert len(record["fields"]["id"]) == 64  # SHA-256 of the instruction, as distilabel
        assert record["metadata"] == {"topic": row["topic"], "length": row["length"]}
        assert record["suggestions"] == {}
    dataset = server.dataset("reviews", "team")
    assert dataset["status"] == "ready" and dataset["allow_extra_metadata"] is False
    assert [(f["name"], f["settings"]["type"], f["required"]) for f in dataset["fields"]] == [
        ("id", "text", True), ("instruction", "text", True), ("generation", "text", True)
    ]
    (quality,) = dataset["questions"]
    assert quality["name"] == "quality" and quality["settings"]["type"] == "label_selection"
    assert quality["settings"]["options"] == [{"text": "👎", "value": "bad"}, {"text": "👍", "value": "good"}]
    assert {(p["name"], p["settings"]["type"]) for p in dataset["metadata_properties"]} == {
        ("topic", "terms"), ("length", "integer")
    }
    # The rows go on unchanged, so a pipeline can continue after the step.
    assert sorted(distiset["default"]["train"].to_list(), key=lambda r: r["length"]) == data
    assert pipeline.last_run_metrics[step.name]["argilla_records_pushed"] == 12


def test_records_are_pushed_in_batches_of_input_batch_size(server: ArgillaTestServer) -> None:
    with beam.Pipeline(runner=FnApiRunner()) as p:
        _ = p | beam.Create(rows(10)) | "review" >> text_step(server, input_batch_size=4)

    sizes = server.bulk_sizes("reviews", "team")
    assert sum(sizes) == 10 and len(sizes) >= 3 and max(sizes) <= 4

    step = text_step(server, dataset_name="large", input_batch_size=501)
    step.load()
    next(step.process(rows(501)))
    step.unload()
    assert server.bulk_sizes("large", "team") == [500, 1]  # the SDK takes at most 500 records a request


def test_a_429_then_success_is_retried_and_each_record_stored_once(server: ArgillaTestServer, caplog: Any) -> None:
    server.fail_next(429, path="/records/bulk", retry_after=0)
    server.fail_next(500, path="/records/bulk", retry_after=None)

    pipeline, _ = run_pipeline(rows(3), text_step(server, input_batch_size=3))

    assert pushes(server) == [429, 500, 200]
    assert sorted(r["fields"]["instruction"] for r in server.records("reviews")) == [f"question {i}" for i in range(3)]
    assert "retrying" in caplog.text


def test_a_push_that_times_out_after_the_server_stored_it_is_not_stored_twice(
    server: ArgillaTestServer, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    quick_timeout = RetryPolicy(max_attempts=4, base_seconds=0.01, timeout_seconds=0.5)
    monkeypatch.setattr(ArgillaBase, "retry_policy", quick_timeout)
    step = text_step(server)
    step.load()
    server.fail_next(None, path="/records/bulk", delay=1.5)  # served, but after the client gave up

    next(step.process(rows(4)))
    step.unload()
    time.sleep(1.5)  # the first, slow request stores its records too

    assert "ReadTimeout" in caplog.text and pushes(server) == [200, 200]
    assert sorted(r["fields"]["instruction"] for r in server.records("reviews")) == [f"question {i}" for i in range(4)]


def test_an_existing_dataset_with_matching_settings_is_reused(server: ArgillaTestServer) -> None:
    run_pipeline(rows(2), text_step(server))
    run_pipeline([{"instruction": "later", "generation": "again"}], text_step(server))

    assert server.dataset_names() == ["reviews"]
    creations = [path for method, path, _ in server.requests if method == "POST" and path == "/api/v1/datasets"]
    assert len(creations) == 1
    assert [r["fields"]["instruction"] for r in server.records("reviews")][-1] == "later"
    assert len(server.records("reviews")) == 3


def test_an_existing_dataset_that_cannot_take_the_records_is_a_clear_error(server: ArgillaTestServer) -> None:
    first = text_step(server)
    first.load()
    first.unload()
    preference = PreferenceToArgilla(
        dataset_name="reviews", dataset_workspace="team", api_url=server.api_url, api_key=KEY, num_generations=2
    )

    with pytest.raises(ArgillaConfigurationError) as raised:
        preference.load()

    message = str(raised.value)
    assert f"dataset 'reviews' in workspace 'team' on {server.api_url} already exists" in message
    assert "it has no field 'generations-0'" in message
    assert "it has a required field 'generation' that this step does not fill" in message
    assert "Choose another dataset_name, or delete that dataset" in message


def test_a_wrong_key_fails_the_run_naming_the_server_and_the_option_to_fix(sdk: Any) -> None:
    with ArgillaTestServer(api_key="the-right-key-000", workspaces=["team"], echo_api_key_in_errors=True) as server:
        step = text_step(server)  # sends KEY, which this server does not accept
        with pytest.raises(ArgillaConfigurationError) as raised:
            step.load()
        message = str(raised.value)
        assert f"the Argilla server at {server.api_url} refused the API key (HTTP 401)" in message
        assert "api_key= on step 'text_generation_to_argilla_0'" in message and "ARGILLA_API_KEY" in message
        assert KEY not in message

        with pytest.raises(Exception) as failed_run:
            run_pipeline(rows(2), text_step(server))
        assert "refused the API key (HTTP 401)" in str(failed_run.value)
        assert KEY not in str(failed_run.value)
        assert server.dataset_names() == []


def test_a_server_that_cannot_be_reached_fails_the_load_naming_it(sdk: Any) -> None:
    step = TextGenerationToArgilla(dataset_name="d", api_url="http://127.0.0.1:9", api_key=KEY)  # nothing listens

    with pytest.raises(RuntimeError) as raised:
        step.load()

    message = str(raised.value)
    assert message.startswith(
        "Step 'text_generation_to_argilla_0': the Argilla server at http://127.0.0.1:9 kept failing while connecting"
        f" ({FAST.max_attempts} attempts; last: ConnectError"
    )
    assert message.endswith("Check that it is up and reachable at that address (api_url / ARGILLA_API_URL).")


def test_a_missing_workspace_is_a_clear_error_listing_the_workspaces(server: ArgillaTestServer) -> None:
    step = text_step(server, dataset_workspace="tema")

    with pytest.raises(ArgillaConfigurationError) as raised:
        step.load()

    assert str(raised.value) == (
        f"Step 'text_generation_to_argilla_0': the Argilla server at {server.api_url} has no workspace 'tema' that this"
        " key's user belongs to (its workspaces: ['team', 'other']): set dataset_workspace to one of them, or create"
        " 'tema' in Argilla and add the user to it."
    )


def test_the_key_never_appears_in_errors_logs_or_the_pushed_data(sdk: Any, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    wrong_key = "a-wrong-key-987654321"
    with ArgillaTestServer(api_key=KEY, workspaces=["team"], echo_api_key_in_errors=True) as server:
        server.fail_next(503, times=2, path="/records/bulk")  # answers that hold the key, logged as retried
        run_pipeline(rows(2), text_step(server))
        with pytest.raises(ArgillaConfigurationError) as raised:
            text_step(server, api_key=wrong_key).load()
        server.fail_next(422, path="/records/bulk")  # a refused batch, reported with what the server said
        step = text_step(server)
        step.load()
        next(step.process(rows(1)))
        step.unload()
        seen = json.dumps(server.records("reviews"))
    assert "injected HTTP 503 (api key '**********')" in caplog.text  # the server echoed it; redacted
    assert "injected HTTP 422 (api key '**********')" in caplog.text
    assert KEY not in caplog.text and wrong_key not in caplog.text
    assert wrong_key not in str(raised.value) and KEY not in str(raised.value)
    assert KEY not in seen


def test_a_key_and_url_from_the_environment_are_read_when_the_step_loads(
    server: ArgillaTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    step = TextGenerationToArgilla(dataset_name="from-env")
    assert step.api_key is None and step.api_url is None
    monkeypatch.setenv("ARGILLA_API_URL", server.api_url)
    monkeypatch.setenv("ARGILLA_API_KEY", KEY)

    run_pipeline(rows(2), step)

    assert server.dataset("from-env")["workspace"] == "team"  # no workspace given: the user's first
    assert len(server.records("from-env")) == 2


def test_preference_to_argilla_builds_rating_and_rationale_questions_with_suggestions(
    server: ArgillaTestServer,
) -> None:
    data = [
        {"prompt": "p0", "generations": ["a", "b"], "ratings": [5, 2], "rationales": ["clear", "vague"]},
        {"prompt": "p1", "generations": ["c", None, "extra"], "ratings": [0, 4, 3], "rationales": [None, "x", "y"]},
        {"prompt": "p2", "generations": ["d", "e"], "ratings": [True, "4"]},
        {"prompt": "p3", "generations": [None, "f"]},  # no generations-0: no record
    ]
    step = PreferenceToArgilla(
        dataset_name="prefs", api_url=server.api_url, api_key=KEY, num_generations=2,
        input_mappings={"instruction": "prompt"},
    )

    pipeline, distiset = run_pipeline(data, step)

    dataset = server.dataset("prefs")
    assert [(f["name"], f["required"]) for f in dataset["fields"]] == [
        ("id", True), ("prompt", True), ("generations-0", True), ("generations-1", False)
    ]
    questions = {q["name"]: q for q in dataset["questions"]}
    assert list(questions) == [
        "generations-0-rating", "generations-0-rationale", "generations-1-rating", "generations-1-rationale"
    ]
    rating = questions["generations-1-rating"]
    assert rating["settings"]["type"] == "rating" and rating["required"] is False
    assert [o["value"] for o in rating["settings"]["options"]] == [1, 2, 3, 4, 5]
    assert rating["title"] == "Rate generations-1 given prompt."
    assert rating["description"] == "Ignore this question if the corresponding `generations-1` field is not available."
    first = questions["generations-0-rating"]
    assert first["required"] is True and first["description"] is None
    assert questions["generations-0-rationale"]["settings"]["type"] == "text"
    assert questions["generations-0-rationale"]["title"] == "Specify the rationale for generations-0's rating."

    stored = {r["fields"]["prompt"]: r for r in server.records("prefs")}
    assert set(stored) == {"p0", "p1", "p2"}
    assert stored["p0"]["fields"]["generations-1"] == "b"
    assert stored["p0"]["suggestions"] == {
        "generations-0-rating": 5, "generations-1-rating": 2,
        "generations-0-rationale": "clear", "generations-1-rationale": "vague",
    }
    assert "generations-1" not in stored["p1"]["fields"]  # None is left empty; "extra" is past num_generations
    assert stored["p1"]["suggestions"] == {}  # 0 is no rating; generation 1 is not shown
    assert stored["p2"]["suggestions"] == {}  # True and "4" are not ratings
    assert pipeline.last_run_metrics[step.name]["argilla_rows_without_record"] == 1
    assert len(distiset["default"]["train"]) == 4


def test_a_batch_the_server_refuses_loses_only_the_refused_records(
    server: ArgillaTestServer, sdk: Any, caplog: Any
) -> None:
    client = sdk.Argilla(api_url=server.api_url, api_key=KEY)
    settings = sdk.Settings(
        fields=[sdk.TextField(name=name) for name in ("id", "instruction", "generation")],
        questions=[sdk.LabelQuestion(name="quality", labels={"bad": "👎", "good": "👍"})],
        metadata=[sdk.TermsMetadataProperty(name="topic", options=["t0", "t1"])],  # "t2" will be refused
    )
    sdk.Dataset(name="reviews", workspace="team", settings=settings, client=client).create()
    client.http_client.close()

    step = text_step(server, input_batch_size=6, metadata_properties={"topic": "terms"})
    pipeline, distiset = run_pipeline(rows(6), step)

    assert sorted(r["metadata"]["topic"] for r in server.records("reviews")) == ["t0", "t0", "t1", "t1"]
    assert pipeline.last_run_metrics[step.name]["argilla_records_failed"] == 2
    assert "2 of 6 records were not pushed" in caplog.text and "'t2' is not one of the values" in caplog.text
    assert len(distiset["default"]["train"]) == 6


def test_a_server_that_keeps_failing_is_counted_and_the_rows_go_on(server: ArgillaTestServer) -> None:
    server.fail_next(503, times=100, path="/records/bulk")

    step = text_step(server, input_batch_size=3)
    pipeline, distiset = run_pipeline(rows(3), step)

    assert len(pushes(server)) == FAST.max_attempts
    assert server.records("reviews") == []
    assert pipeline.last_run_metrics[step.name]["argilla_records_failed"] == 3
    assert len(distiset["default"]["train"]) == 3


def test_workers_loading_at_once_create_the_dataset_once(server: ArgillaTestServer) -> None:
    # The first creation is held back until the other worker, which also found no dataset, has created it: the
    # first gets 409, finds the dataset still unpublished (its publication is slow) and waits for it.
    server.fail_next(None, path="/api/v1/datasets", method="POST", delay=0.5)
    server.fail_next(None, path="/publish", delay=1.0)
    steps = [text_step(server) for _ in range(2)]
    start = threading.Barrier(len(steps))
    errors: List[BaseException] = []

    def load(step: TextGenerationToArgilla) -> None:
        start.wait()
        try:
            step.load()
        except BaseException as error:  # noqa: BLE001 — reported below
            errors.append(error)

    threads = [threading.Thread(target=load, args=(step,)) for step in steps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    assert ("POST", "/api/v1/datasets", 409) in server.requests
    assert server.dataset_names() == ["reviews"] and server.dataset("reviews")["status"] == "ready"
    for step in steps:
        next(step.process(rows(1)))
        step.unload()
    assert len(server.records("reviews")) == 2
