"""Dataflow, offline: ``DataflowRunner`` with ``--dry_run=True`` builds the whole job (the portable pipeline, its
environment, the Dataflow job request) and returns before it makes an API client, so no credentials, staging or
network are needed. What reaches Dataflow is checked in that job: the steps, the response cache location,
the dead letters, what workers install through ``--setup_file``, and that no API key is inside the pickled graph.
"""

from __future__ import annotations

import base64
import binascii
import bz2
import os
import tarfile
import zlib
from pathlib import Path
from typing import Iterator, List

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.portability import common_urns
from apache_beam.portability.api import beam_runner_api_pb2

from beam_distil.beam.launch import launch
from beam_distil.models import OpenAILLM
from beam_distil.steps.tasks import TextGeneration

REPO_ROOT = Path(__file__).resolve().parent.parent
IMAGE = "europe-west1-docker.pkg.dev/my-project/beam/beam-distil:0.1.0"
DATAFLOW_OPTIONS = [
    "--runner=DataflowRunner",
    "--dry_run=True",
    "--project=my-project",
    "--region=europe-west1",
    "--temp_location=gs://my-bucket/tmp",
    "--staging_location=gs://my-bucket/staging",
    f"--sdk_container_image={IMAGE}",
]


def _decoded(blob: bytes) -> Iterator[bytes]:
    """``blob`` and, when it is one, the pickle inside Beam's base64 + bz2/zlib encoding of a DoFn."""
    yield blob
    try:
        compressed = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        return
    for decompress in (bz2.decompress, zlib.decompress):
        try:
            yield decompress(compressed)
        except (OSError, ValueError, zlib.error):
            continue


def job_blobs(job) -> List[bytes]:
    """Everything the job carries to Dataflow: the request, and every transform's payload with the pickled
    functions (DoFns, CombineFns) decoded."""
    blobs = [str(job).encode(), job.proto_pipeline.SerializeToString()]
    for transform in job.proto_pipeline.components.transforms.values():
        blobs.append(transform.spec.payload)
        functions = []
        if transform.spec.urn == common_urns.primitives.PAR_DO.urn:
            functions.append(beam_runner_api_pb2.ParDoPayload.FromString(transform.spec.payload).do_fn)
        elif transform.spec.urn == common_urns.composites.COMBINE_PER_KEY.urn:
            functions.append(beam_runner_api_pb2.CombinePayload.FromString(transform.spec.payload).combine_fn)
        for function in functions:
            blobs.extend(_decoded(function.payload))
    return blobs


def contains(blobs: List[bytes], text: str) -> bool:
    return any(text.encode() in blob for blob in blobs)


def dry_run_job(pipeline, tmp_path: Path, *extra_options: str, **launch_kwargs):
    result = launch(
        pipeline,
        options=[*DATAFLOW_OPTIONS, f"--job_name=dry-run-{len(extra_options)}", *extra_options],
        output_dir=str(tmp_path / "out"),
        wait_for_remote=False,
        **launch_kwargs,
    )
    return result.pipeline_result.job


def test_docs_pipeline_translates_for_dataflow_with_cache_and_dead_letters(tmp_path, monkeypatch, docs_pipelines):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-environment-0001")
    monkeypatch.delenv("BEAM_DISTIL_CACHE_DIR")

    job = dry_run_job(
        docs_pipelines.build("http://127.0.0.1:9/v1", ["q"], routed=True), tmp_path,
        dead_letter_dir="gs://my-bucket/failures",
    )

    transforms = {t.unique_name for t in job.proto_pipeline.components.transforms.values()}
    for step in ["load_instructions", "load_instructions.route", "gen_a", "gen_b", "gen_c", "group_generations.join",
                 "group_generations", "group_generations.collect", "dead_letters.write"]:
        assert step in transforms
    assert "load_instructions/Spread" in transforms  # the generator's rows are spread over Dataflow's workers
    environments = list(job.proto_pipeline.components.environments.values())
    assert environments and all(IMAGE.encode() in env.payload for env in environments)
    blobs = job_blobs(job)
    # The cache follows Pipeline.run's rule on a remote runner: under --temp_location, not the launcher's disk.
    assert contains(blobs, "gs://my-bucket/tmp/beam_distil_cache")
    assert contains(blobs, "gs://my-bucket/failures/dead_letters")
    assert not contains(blobs, "sk-from-the-environment-0001")


def test_beam_native_text_generation_translates_for_dataflow_without_the_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-environment-0002")
    options = PipelineOptions([*DATAFLOW_OPTIONS, "--job_name=beam-native"])

    with_env_key = TextGeneration(name="gen_env", llm=OpenAILLM(model="m", base_url="http://127.0.0.1:9/v1"))
    with_reference = TextGeneration(
        name="gen_secret",
        llm=OpenAILLM(model="m", base_url="http://127.0.0.1:9/v1", api_key="gcp-secret://projects/p/secrets/openai"),
    )
    with_plain_key = TextGeneration(
        name="gen_plain", llm=OpenAILLM(model="m", base_url="http://127.0.0.1:9/v1", api_key="sk-plain-argument-0003")
    )
    p = beam.Pipeline(options=options)
    rows = p | beam.Create([{"instruction": "Name a river."}])
    for task in (with_env_key, with_reference, with_plain_key):
        _ = rows | task.name >> task
    job = p.run().job

    transforms = {t.unique_name for t in job.proto_pipeline.components.transforms.values()}
    assert {"gen_env", "gen_secret", "gen_plain"} <= {name.split("/")[0] for name in transforms}
    blobs = job_blobs(job)
    assert not contains(blobs, "sk-from-the-environment-0002")  # read on the worker, from its environment
    assert contains(blobs, "gcp-secret://projects/p/secrets/openai")  # a reference: the secret is read on the worker
    # The control that shows the search sees inside the pickles: a key passed as an argument does travel
    # (documented: prefer the environment or a Secret Manager reference on Dataflow).
    assert contains(blobs, "sk-plain-argument-0003")


def test_setup_file_stages_a_package_with_every_module(tmp_path, monkeypatch):
    """Workers that install the project through ``--setup_file`` get the sdist Beam builds from setup.py."""
    from apache_beam.runners.portability.stager import Stager

    monkeypatch.chdir(REPO_ROOT)
    options = PipelineOptions([*DATAFLOW_OPTIONS, f"--setup_file={REPO_ROOT / 'setup.py'}"])
    staged = tmp_path / "staged"
    staged.mkdir()

    Stager.create_job_resources(options, str(staged))

    [sdist] = [path for path in staged.iterdir() if path.name.endswith(".tar.gz")]
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    expected = {
        path.relative_to(REPO_ROOT).as_posix()
        for path in (REPO_ROOT / "beam_distil").rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert expected - names == set()
    assert os.path.basename(sdist).startswith(("beam_distil", "beam-distil", "workflow"))
