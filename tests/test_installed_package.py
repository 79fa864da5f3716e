"""What users install, where they run it: the sdist and the wheel built from this checkout, the wheel installed
(not editable) into a fresh virtual environment by ``scripts/install.sh`` (the Dataflow image's recipe), and
pipelines run from a folder outside the checkout with that environment's Python and commands.

Slow (a fresh environment, about a minute with pip's cache warm); ``-k "not installed"`` leaves it out.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Set

import pytest

from beam_distil.testing.openai_server import OpenAICompatibleServer
from pipelines.docs_pipeline import DEFAULT_MODELS as MODELS

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE = REPO_ROOT / "beam_distil"
INSTRUCTIONS = ["Name a river.", "Name a mountain.", "Name a sea.", "Name a lake.", "Name a desert."]


def source_modules() -> Set[str]:
    """Every ``.py`` file of the package in the checkout, as ``beam_distil/...`` paths."""
    return {
        path.relative_to(REPO_ROOT).as_posix()
        for path in PACKAGE.rglob("*.py")
        if "__pycache__" not in path.parts
    }


@dataclass
class Installed:
    sdist: Path
    wheel: Path
    python: Path
    bin_dir: Path
    outside: Path
    """A folder outside the checkout to run from."""

    def env(self, cache_dir: Path) -> Dict[str, str]:
        env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env.update(
            PATH=f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}",
            HF_HUB_OFFLINE="1",
            HF_DATASETS_OFFLINE="1",
            OPENAI_API_KEY="test-key",
            BEAM_DISTIL_CACHE_DIR=str(cache_dir),
        )
        return env

    def run(self, args: List[str], cache_dir: Path, timeout: float = 300) -> subprocess.CompletedProcess:
        result = subprocess.run(
            args, cwd=self.outside, env=self.env(cache_dir), capture_output=True, text=True, timeout=timeout
        )
        assert result.returncode == 0, f"{args}\nstdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-6000:]}"
        return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    work = tmp_path_factory.mktemp("installed")
    dist = work / "dist"
    # `python -m build` makes the sdist, then the wheel from that sdist: a file missing from the sdist breaks
    # the wheel, and a package missing from setup.py is missing from both.
    subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(dist), str(REPO_ROOT)],
        check=True, capture_output=True, text=True, timeout=600,
    )
    [sdist] = glob.glob(str(dist / "*.tar.gz"))
    [wheel] = glob.glob(str(dist / "*.whl"))
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "install.sh"), str(python), wheel],
        capture_output=True, text=True, timeout=1800,
    )
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-6000:]
    outside = work / "outside"
    outside.mkdir()
    return Installed(Path(sdist), Path(wheel), python, venv / "bin", outside)


def test_the_wheel_and_the_sdist_hold_every_module(installed: Installed) -> None:
    expected = source_modules()
    assert "beam_distil/beam/launch.py" in expected and "beam_distil/beam/__init__.py" in expected

    with zipfile.ZipFile(installed.wheel) as wheel:
        in_wheel = {name for name in wheel.namelist() if name.startswith("beam_distil/")}
        entry_points = next(wheel.read(n).decode() for n in wheel.namelist() if n.endswith("entry_points.txt"))
    with tarfile.open(installed.sdist) as sdist:
        in_sdist = {name.split("/", 1)[1] for name in sdist.getnames() if "/beam_distil/" in name and name.endswith(".py")}

    assert expected - in_wheel == set(), "modules missing from the wheel"
    assert expected - in_sdist == set(), "modules missing from the sdist"
    assert "beam-distil = beam_distil.cli:console_main" in entry_points


def test_the_installed_package_is_imported_not_the_checkout(installed: Installed, tmp_path: Path) -> None:
    result = installed.run(
        [str(installed.python), "-c", "import beam_distil.beam.launch as m, llama_cpp; print(m.__file__)"], tmp_path
    )

    location = Path(result.stdout.strip())
    assert "site-packages" in location.parts
    assert REPO_ROOT not in location.parents


DOCS_PIPELINE_SCRIPT = textwrap.dedent(
    """
    # A user's script: the docs pipeline recipe (copied beside it) against the local server at sys.argv[1].
    import json, sys
    from beam_distil.models import OpenAILLM
    from docs_pipeline import DEFAULT_MODELS, build_docs_pipeline

    base_url, mode, out = sys.argv[1], sys.argv[2], sys.argv[3]
    instructions = json.loads(sys.argv[4])
    llms = [OpenAILLM(model=model, base_url=base_url) for model in DEFAULT_MODELS]
    pipeline = build_docs_pipeline(instructions, llms, task_names=["gen_a", "gen_b", "gen_c"], batch_size=2)
    if mode == "save":
        pipeline.save(out)
        sys.exit(0)
    distiset = pipeline.run(options=sys.argv[5:], use_cache=False)
    with open(out, "w") as file:
        json.dump({"rows": distiset["default"]["train"].to_list(), "metrics": pipeline.last_run_metrics}, file)
    """
)


@pytest.fixture
def docs_script(installed: Installed) -> Path:
    shutil.copy(REPO_ROOT / "pipelines" / "docs_pipeline.py", installed.outside / "docs_pipeline.py")
    path = installed.outside / "run_docs_pipeline.py"
    path.write_text(DOCS_PIPELINE_SCRIPT)
    return path


@pytest.mark.parametrize(
    "options",
    [[], ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]],
    ids=["in_process", "multi_processing_2"],
)
def test_docs_pipeline_runs_from_the_installed_wheel(installed, docs_script, tmp_path, options) -> None:
    result_file = tmp_path / "result.json"
    with OpenAICompatibleServer() as server:
        installed.run(
            [str(installed.python), str(docs_script), server.base_url, "run", str(result_file),
             json.dumps(INSTRUCTIONS), *options],
            tmp_path / "cache",
        )
        requests = server.request_count

    result = json.loads(result_file.read_text())
    assert [row["instruction"] for row in result["rows"]] == INSTRUCTIONS
    assert [row["generations"] for row in result["rows"]] == [[f"{m}: {text}" for m in MODELS] for text in INSTRUCTIONS]
    assert requests == 3 * len(INSTRUCTIONS)
    assert result["metrics"]["gen_a"]["llm_requests"] == len(INSTRUCTIONS)


@pytest.fixture
def saved_docs_pipeline(installed, docs_script, tmp_path):
    """A local server, and the docs pipeline pointing at it saved as YAML by the installed package."""
    config = tmp_path / "pipeline.yaml"
    with OpenAICompatibleServer() as server:
        installed.run(
            [str(installed.python), str(docs_script), server.base_url, "save", str(config), json.dumps(INSTRUCTIONS)],
            tmp_path,
        )
        yield server, config


def test_cli_runs_a_saved_yaml_from_the_installed_wheel(installed, saved_docs_pipeline, tmp_path) -> None:
    server, config = saved_docs_pipeline
    output = tmp_path / "distiset"

    result = installed.run(
        [str(installed.bin_dir / "beam-distil"), "pipeline", "run", "--config", str(config),
         "--param", "gen_a.llm.generation_kwargs.temperature=0.5", "--output", str(output)],
        tmp_path / "cache",
    )

    bodies = server.requests
    assert str(output) in result.stdout
    assert sorted(os.listdir(output)) == ["default", "distiset_configs"]
    assert {body["temperature"] for body in bodies if body["model"] == "model-a"} == {0.5}
    assert len(bodies) == 3 * len(INSTRUCTIONS)


def test_flex_template_launcher_runs_from_the_installed_wheel(installed, saved_docs_pipeline, tmp_path) -> None:
    server, config = saved_docs_pipeline
    output_dir = tmp_path / "run"

    result = installed.run(
        [str(installed.python), "-m", "beam_distil.flex_template", f"--pipeline_config={config}",
         f"--output_dir={output_dir}", "--output_format=jsonl", f"--dead_letter_dir={tmp_path / 'dead'}",
         "--runner=DirectRunner"],
        tmp_path / "cache",
    )

    assert "pipeline launched, state DONE" in result.stdout
    assert server.request_count == 3 * len(INSTRUCTIONS)
    rows = [json.loads(line) for path in sorted((output_dir / "default").glob("*.jsonl")) for line in path.read_text().splitlines()]
    assert sorted(row["instruction"] for row in rows) == sorted(INSTRUCTIONS)
    assert (output_dir / "distiset_configs" / "README.md").exists()
