"""Shared fixtures: the local OpenAI-compatible server, and no network or Hub access."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import pytest

from beam_distil.models import OpenAILLM
from beam_distil.pipeline import Pipeline, sample_n_steps
from beam_distil.testing.openai_server import OpenAICompatibleServer
from pipelines.docs_pipeline import DEFAULT_MODELS, build_docs_pipeline


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    # Each test has its own response cache: answers cached by one test must not serve another.
    monkeypatch.setenv("BEAM_DISTIL_CACHE_DIR", str(tmp_path_factory.mktemp("response-cache")))
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


@pytest.fixture
def openai_server() -> Iterator[OpenAICompatibleServer]:
    """A fresh server on 127.0.0.1 answering ``"<model>: <last user message>"``."""
    with OpenAICompatibleServer() as server:
        yield server


class DocsPipelines:
    """The docs pipeline recipe (``pipelines/docs_pipeline.py``) as the tests use it: tasks ``gen_a``, ``gen_b``,
    ``gen_c`` on the local server's ``DEFAULT_MODELS``, the API key read from the environment, batches of 4
    rows; ``routed=True`` sends each batch to two of the three."""

    def build(self, base_url: str, instructions: Sequence[str], routed: bool = False) -> Pipeline:
        return build_docs_pipeline(
            instructions,
            [OpenAILLM(model=model, base_url=base_url) for model in DEFAULT_MODELS],
            task_names=[f"gen_{model[-1]}" for model in DEFAULT_MODELS],
            batch_size=4,
            routing=sample_n_steps(2) if routed else None,
        )

    def save(self, path: Path, base_url: str, instructions: Sequence[str], routed: bool = False) -> str:
        """Saves the pipeline to ``path`` (YAML or JSON by its suffix) and returns the path as a string."""
        self.build(base_url, instructions, routed=routed).save(path)
        return str(path)


@pytest.fixture
def docs_pipelines() -> DocsPipelines:
    return DocsPipelines()
