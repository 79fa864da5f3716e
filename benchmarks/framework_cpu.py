"""The framework's CPU per request: what one more request costs, without the fixed cost of a run.

Runs the docs pipeline (``benchmarks/docs_pipeline.py``, beam_distil only, 3 models, 200 ms) at a small and a
large N, alternating, and divides the difference in CPU seconds (the child process and its workers) by the
difference in requests. Interpreter start, imports, graph building and set-up cancel out. Usage::

    python -m benchmarks.framework_cpu                      # N=10 and N=2000, 3 runs each
    python -m benchmarks.framework_cpu --small 10 --large 5000 --repeats 5 --system beam_distil_owned
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import List

REPO = Path(__file__).resolve().parent.parent


def cpu_seconds_and_requests(rows: int, system: str) -> tuple:
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "run.jsonl"
        command = [sys.executable, "-m", "benchmarks.docs_pipeline", "--systems", system, "--repeats", "1",
                   "--rows", str(rows), "--latency", "0.2", "--models", "3", "--json-out", str(out)]
        subprocess.run(command, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
        run = next(json.loads(line) for line in out.read_text().splitlines() if not json.loads(line).get("median"))
    return run["cpu_seconds"], run["requests"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=10)
    parser.add_argument("--large", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--system", default="beam_distil", help="beam_distil or beam_distil_owned.")
    args = parser.parse_args()
    marginal: List[float] = []
    for repeat in range(args.repeats):
        small_cpu, small_requests = cpu_seconds_and_requests(args.small, args.system)
        large_cpu, large_requests = cpu_seconds_and_requests(args.large, args.system)
        per_request_ms = 1000 * (large_cpu - small_cpu) / (large_requests - small_requests)
        marginal.append(per_request_ms)
        print(f"run {repeat + 1}: N={args.small} {small_cpu:.2f} CPU s, N={args.large} {large_cpu:.2f} CPU s "
              f"-> {per_request_ms:.3f} ms per request", flush=True)
    print(f"median framework CPU per request ({args.system}): {statistics.median(marginal):.3f} ms")


if __name__ == "__main__":
    main()
