"""How close beam_distil comes to the latency bound at every ``max_concurrency`` x ``input_batch_size``.

With a server answering every request after ``latency`` seconds, a task capped at ``max_concurrency`` requests
in flight can make at most ``max_concurrency / latency`` requests per second: the latency bound. Each cell of the
grid runs the docs pipeline (``benchmarks/docs_pipeline.py``, one harness run, beam_distil only) long enough to
last about ``--seconds`` at the bound, and reports two shares of it:

* end to end: rows/s over the whole ``Pipeline.run`` (graph building, set-up, join, results included);
* sustained: requests/s over the server's busy window (first request to last answer), per task.

The latency grows with the requests per second the cell asks for, so that the 2-core machine running both the
server and the pipeline is never what limits a cell (``--ceiling``, requests/s over all tasks). Usage::

    python -m benchmarks.latency_bound_grid                                   # the whole grid, ~25 min
    python -m benchmarks.latency_bound_grid --max-concurrency 4,16 --input-batch-size 1,50 --models 3
    python -m benchmarks.latency_bound_grid --system aiohttp --input-batch-size 1   # a bare client's shares

``--system aiohttp`` runs the same cells with the harness's framework-free client (bare aiohttp, one semaphore per
model): the share of the bound this machine and the server leave to any Python client. It has no batches, so
one ``--input-batch-size`` is enough.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List

REPO = Path(__file__).resolve().parent.parent


def cell_settings(max_concurrency: int, models: int, seconds: float, ceiling: float) -> Dict[str, float]:
    """The latency and row count of one cell: at least 0.2 s of latency, more when the tasks together would ask
    for more than ``ceiling`` requests/s; enough rows to last ``seconds`` at the bound."""
    latency = max(0.2, models * max_concurrency / ceiling)
    bound_rows_per_second = max_concurrency / latency
    return {"latency": round(latency, 3), "rows": int(seconds * bound_rows_per_second),
            "bound_rows_per_second": bound_rows_per_second}


def run_cell(
    max_concurrency: int, input_batch_size: int, models: int, seconds: float, ceiling: float,
    system: str = "beam_distil",
) -> Dict[str, Any]:
    settings = cell_settings(max_concurrency, models, seconds, ceiling)
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "cell.jsonl"
        command = [
            sys.executable, "-m", "benchmarks.docs_pipeline", "--systems", system, "--repeats", "1",
            "--rows", str(settings["rows"]), "--latency", str(settings["latency"]), "--models", str(models),
            "--max-concurrency", str(max_concurrency), "--input-batch-size", str(input_batch_size),
            "--json-out", str(out),
        ]
        subprocess.run(command, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
        run = next(json.loads(line) for line in out.read_text().splitlines() if json.loads(line).get("median"))
    bound = settings["bound_rows_per_second"]
    return {
        "system": system, "max_concurrency": max_concurrency, "input_batch_size": input_batch_size, "models": models,
        "latency": settings["latency"], "rows": settings["rows"], "bound_rows_per_second": bound,
        "rows_per_second": run["rows_per_second"],
        "end_to_end_share": run["rows_per_second"] / bound,
        "sustained_share": run["sustained_requests_per_second"] / models / bound,
        "max_in_flight": run["max_in_flight"],
        "seconds_to_first_request": run["seconds_to_first_request"],
        "seconds_after_last_answer": run["seconds_after_last_answer"],
        "run_seconds": run["run_seconds"],
    }


def _ints(text: str) -> List[int]:
    return [int(value) for value in text.split(",") if value.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-concurrency", type=_ints, default=[4, 16, 64, 256])
    parser.add_argument("--input-batch-size", type=_ints, default=[1, 8, 50, 200])
    parser.add_argument("--models", type=_ints, default=[1, 3], help="TextGeneration tasks side by side.")
    parser.add_argument("--seconds", type=float, default=30.0, help="How long each cell lasts at the bound.")
    parser.add_argument("--ceiling", type=float, default=400.0,
                        help="Requests/s over all tasks above which the latency is raised (the machine's share).")
    parser.add_argument("--json-out", type=Path, help="Append each cell as a JSON line here.")
    parser.add_argument("--system", default="beam_distil", choices=["beam_distil", "aiohttp"],
                        help="What runs the cells: this library, or the harness's bare aiohttp client.")
    args = parser.parse_args()

    print("| tasks | max_concurrency | input_batch_size | latency s | rows | bound rows/s | rows/s | end to end "
          "| sustained | max in flight | s to first request | s after last answer |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for models in args.models:
        for max_concurrency in args.max_concurrency:
            for input_batch_size in args.input_batch_size:
                cell = run_cell(max_concurrency, input_batch_size, models, args.seconds, args.ceiling, args.system)
                print(f"| {models} | {max_concurrency} | {input_batch_size} | {cell['latency']} | {cell['rows']} "
                      f"| {cell['bound_rows_per_second']:.1f} | {cell['rows_per_second']:.1f} "
                      f"| {cell['end_to_end_share']:.0%} | {cell['sustained_share']:.0%} | {cell['max_in_flight']} "
                      f"| {cell['seconds_to_first_request']:.2f} | {cell['seconds_after_last_answer']:.2f} |",
                      flush=True)
                if args.json_out:
                    with args.json_out.open("a") as out:
                        out.write(json.dumps(cell) + "\n")


if __name__ == "__main__":
    main()
