"""Benchmark: the docs pipeline (LoadDataFromDicts -> 3 x TextGeneration -> GroupColumns) against a local server.

The same workload (``--models`` models x ``--rows`` rows, the same prompts) runs through several systems in one
harness run, alternating A B C A B C:

* ``beam_distil``: this library's pipeline (Beam options after ``--`` reach ``Pipeline.run``);
* ``sdk``: the bare ``openai.AsyncOpenAI`` (its default httpx stack), one client and one
  ``asyncio.Semaphore(max_concurrency)`` per model, every request gathered at once: the SDK ceiling;
* ``sdk_aiohttp``: the same with ``openai.DefaultAioHttpClient`` (the SDK on aiohttp, which ``OpenAILLM`` posts
  with directly);
* ``aiohttp``: the same requests posted with bare ``aiohttp`` (one session and one semaphore per model, the body
  built by hand, the answer's text read from the JSON): no framework at all, what this machine and the server
  allow a Python client;
* ``distilabel``: distilabel 1.5's docs pipeline (``benchmarks/distilabel_child.py``) run with the python of
  ``benchmarks/.venv-distilabel`` (``--distilabel-python``), skipped with a note when that is not installed;
* ``beam_distil_mp1`` / ``beam_distil_mp2``: ``beam_distil`` on ``multi_processing`` with 1 or 2 workers;
* ``beam_distil_owned``: ``beam_distil`` in a process tuned as the project's own are (``beam_distil.owned_process``).

With ``--backend llamacpp`` the TextGenerations run the embedded llama.cpp model instead (beam_distil systems only).

The OpenAI-compatible server (``beam_distil.testing.openai_server``) runs in its own process with a fixed latency,
so its CPU is not the pipeline's. Each repeat runs one system in a fresh process and reports: wall time of the
run (``run_s``) and of the whole process including interpreter start and imports (``process_s``, measured by the
harness), rows/s, requests/s (over ``run_s``, and sustained: over the server's busy window from the first request
to the last answer), CPU ms per request (the child process and the worker processes it waited for), peak
RSS (``ru_maxrss`` of the largest process, and ``tree_rss_mb``: the largest sum of RSS over the child's process
tree, sampled every 50 ms) and the most requests the server saw in flight at once. Medians are printed last::

    python -m benchmarks.docs_pipeline --systems beam_distil,sdk --rows 1000 --latency 0.2 --repeats 3
    python -m benchmarks.docs_pipeline --scenario i          # the issue's targets, see SCENARIOS
    python -m benchmarks.docs_pipeline --rows 1000 -- --direct_running_mode=multi_processing --direct_num_workers=2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, List, Optional

ALL_MODELS = ["model-a", "model-b", "model-c"]
HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_DISTILABEL_PYTHON = HERE / ".venv-distilabel" / "bin" / "python"

# Beam options added by a system on top of the ones after ``--``.
SYSTEM_BEAM_OPTIONS = {
    "beam_distil_mp1": ["--direct_running_mode=multi_processing", "--direct_num_workers=1"],
    "beam_distil_mp2": ["--direct_running_mode=multi_processing", "--direct_num_workers=2"],
}
# ``beam_distil_owned``: the child first applies ``beam_distil.owned_process`` (garbage collection paused while
# Beam is imported, then the heap frozen), as the project's own processes do; plain ``beam_distil`` is a user's
# script, whose process ``import beam_distil`` leaves as it is.
SYSTEM_CHILD_FLAGS = {"beam_distil_owned": ["--owned-process"]}
SYSTEMS = ["beam_distil", "sdk", "sdk_aiohttp", "aiohttp", "distilabel", *SYSTEM_BEAM_OPTIONS, *SYSTEM_CHILD_FLAGS]

# The targets. Flags given on the command line win over a scenario's.
SCENARIOS: Dict[str, Dict[str, Any]] = {
    # rows/s >= 5x distilabel; CPU per request <= 1.3x the bare SDK.
    "i": dict(rows=2000, latency=0.2, models=3, max_concurrency=64, systems="beam_distil,sdk,distilabel"),
    # >= 90% of 256 req/s: one model, 1 s latency, max_concurrency 256, ~20 s of requests.
    "ii": dict(rows=5120, latency=1.0, models=1, max_concurrency=256, systems="beam_distil,sdk"),
    # N=10 end to end (process_s includes interpreter start and imports) <= 3 s.
    "iii": dict(rows=10, latency=0.2, models=3, max_concurrency=64, systems="beam_distil,sdk,distilabel", repeats=5),
    # 100k rows through TextGeneration + GroupColumns: peak RSS <= 1 GB.
    "iv": dict(rows=100_000, latency=0.0, models=1, max_concurrency=64, systems="beam_distil", repeats=1),
    # CPU-bound: multi_processing with 2 workers vs 1: >= 1.7x. The CPU has to be in the workers: the embedded
    # llama.cpp model (one per worker process, one thread each), 64 prompts in batches of 4. (Against the HTTP
    # server at latency 0, the server and the runner process take half of a 2-core machine, so no worker count
    # could show it there.)
    # A million rows into an output_dir: peak RSS <= 2 GB (the local run goes through them in slices).
    "vi": dict(rows=1_000_000, latency=0.0, models=1, max_concurrency=64, output_dir=True, systems="beam_distil",
               repeats=1),
    "v": dict(rows=64, latency=0.0, models=1, max_concurrency=64, input_batch_size=4, backend="llamacpp",
              systems="beam_distil_mp1,beam_distil_mp2"),
}
DEFAULTS = dict(rows=1000, latency=0.2, models=3, max_concurrency=64, systems="beam_distil,sdk", repeats=3,
                input_batch_size=50, backend="openai", output_dir=False)


def _usage() -> Dict[str, float]:
    usage_self = resource.getrusage(resource.RUSAGE_SELF)
    usage_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "cpu_seconds": usage_self.ru_utime + usage_self.ru_stime + usage_children.ru_utime + usage_children.ru_stime,
        "peak_rss_mb": max(usage_self.ru_maxrss, usage_children.ru_maxrss) / 1024,
    }


def _instructions(rows: int) -> List[str]:
    return [f"instruction {i}" for i in range(rows)]


def _llm(args: argparse.Namespace, model: str) -> Any:
    """The LLM of one TextGeneration: the local server's ``model``, or the embedded llama.cpp model."""
    from beam_distil.models import LlamaCppLLM, OpenAILLM

    if args.backend == "llamacpp":
        # CPU-bound in the worker: one model per worker process, one thread each, greedy and short answers.
        return LlamaCppLLM(generation_kwargs={"max_new_tokens": 24, "temperature": 0.0})
    return OpenAILLM(model=model, base_url=args.base_url, api_key="bench", max_concurrency=args.max_concurrency)


def _child_beam_distil(args: argparse.Namespace, beam_options: List[str]) -> Dict[str, Any]:
    from pipelines.docs_pipeline import build_docs_pipeline

    imported = time.perf_counter()
    pipeline = build_docs_pipeline(
        _instructions(args.rows),
        [_llm(args, model) for model in ALL_MODELS[: args.models]],
        name="docs-benchmark",
        input_batch_size=args.input_batch_size,
    )
    run_started = time.perf_counter()
    run_started_clock = time.monotonic()
    # No response cache: every repeat must send its requests (distilabel runs with use_cache=False too).
    if args.output_dir:  # the job writes the rows itself, as a run too big to bring back in Python would
        with tempfile.TemporaryDirectory(prefix="docs-benchmark-out-") as output_dir:
            distiset = pipeline.run(options=beam_options, use_cache=False, output_dir=output_dir,
                                    rows_per_slice=args.rows_per_slice or None)
    else:
        distiset = pipeline.run(options=beam_options, use_cache=False)
    finished = time.perf_counter()
    return {"rows": len(distiset["default"]["train"]), "run_started": run_started, "imported": imported,
            "finished": finished, "run_started_clock": run_started_clock, "finished_clock": time.monotonic()}


def _run_bare_clients(
    args: argparse.Namespace,
    imported: float,
    make_client: Callable[[], Any],
    close_client: Callable[[Any], Awaitable[None]],
    generate: Callable[[Any, str, str], Awaitable[str]],
) -> Dict[str, Any]:
    """The docs pipeline's workload without a framework: one client (``make_client``) and one
    ``asyncio.Semaphore(max_concurrency)`` per model, every request gathered at once, then GroupColumns' work;
    ``generate(client, model, text)`` sends one request and returns the answer's text."""
    instructions = _instructions(args.rows)
    models = ALL_MODELS[: args.models]

    async def run() -> List[Dict[str, Any]]:
        async def one(client: Any, semaphore: asyncio.Semaphore, model: str, text: str) -> str:
            async with semaphore:
                return await generate(client, model, text)

        clients = [make_client() for _ in models]
        semaphores = [asyncio.Semaphore(args.max_concurrency) for _ in models]
        try:
            per_model = await asyncio.gather(
                *(
                    asyncio.gather(*(one(client, semaphore, model, text) for text in instructions))
                    for client, semaphore, model in zip(clients, semaphores, models)
                )
            )
        finally:
            for client in clients:
                await close_client(client)
        # GroupColumns' work: one row per instruction with the models' columns as lists.
        return [
            {"instruction": text, "generations": [outputs[i] for outputs in per_model], "model_names": list(models)}
            for i, text in enumerate(instructions)
        ]

    run_started = time.perf_counter()
    run_started_clock = time.monotonic()
    rows = asyncio.run(run())
    finished = time.perf_counter()
    return {"rows": len(rows), "run_started": run_started, "imported": imported, "finished": finished,
            "run_started_clock": run_started_clock, "finished_clock": time.monotonic()}


def _child_sdk(args: argparse.Namespace, aiohttp: bool) -> Dict[str, Any]:
    import openai

    imported = time.perf_counter()

    def make_client() -> Any:
        return openai.AsyncOpenAI(
            api_key="bench", base_url=args.base_url, max_retries=0, timeout=120,
            **({"http_client": openai.DefaultAioHttpClient(timeout=120)} if aiohttp else {}),
        )

    async def close_client(client: Any) -> None:
        await client.close()

    async def generate(client: Any, model: str, text: str) -> str:
        # The same request OpenAILLM sends for TextGeneration with default generation kwargs.
        completion = await client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": text}], max_tokens=128, n=1,
            frequency_penalty=0.0, presence_penalty=0.0, temperature=1.0, top_p=1.0,
        )
        return completion.choices[0].message.content

    return _run_bare_clients(args, imported, make_client, close_client, generate)


def _child_aiohttp(args: argparse.Namespace) -> Dict[str, Any]:
    import aiohttp

    imported = time.perf_counter()
    url = args.base_url.rstrip("/") + "/chat/completions"
    headers = {"Authorization": "Bearer bench", "Content-Type": "application/json"}

    def make_client() -> Any:
        return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120),
                                     connector=aiohttp.TCPConnector(limit=args.max_concurrency))

    async def close_client(session: Any) -> None:
        await session.close()

    async def generate(session: Any, model: str, text: str) -> str:
        body = {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 128, "n": 1,
                "frequency_penalty": 0.0, "presence_penalty": 0.0, "temperature": 1.0, "top_p": 1.0}
        async with session.post(url, data=json.dumps(body), headers=headers) as response:
            completion = json.loads(await response.read())
        return completion["choices"][0]["message"]["content"]

    return _run_bare_clients(args, imported, make_client, close_client, generate)


def _one_run(args: argparse.Namespace, beam_options: List[str]) -> None:
    """Child process: one run of one system, one JSON line on stdout."""
    started = time.perf_counter()
    if args.owned_process:
        from beam_distil.owned_process import tune_owned_process

        tune_owned_process()
    if args.child == "sdk":
        times = _child_sdk(args, aiohttp=False)
    elif args.child == "sdk_aiohttp":
        times = _child_sdk(args, aiohttp=True)
    elif args.child == "aiohttp":
        times = _child_aiohttp(args)
    else:
        times = _child_beam_distil(args, beam_options)
    assert times["rows"] == args.rows, f"expected {args.rows} rows, got {times['rows']}"
    result = {
        "rows": times["rows"],
        "run_seconds": times["finished"] - times["run_started"],
        "import_seconds": times["imported"] - started,
        # time.monotonic() at the run's start and return, to set against the server's first request and last answer.
        "run_started_clock": times.get("run_started_clock"),
        "finished_clock": times.get("finished_clock"),
        **_usage(),
    }
    print(json.dumps(result), flush=True)


def _server_stats(stats_url: str, method: str = "GET") -> Dict[str, Any]:
    request = urllib.request.Request(stats_url, method=method)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _tree_rss_kb(root: int) -> int:
    """Sum of VmRSS over ``root`` and its descendants (Linux /proc)."""
    total, stack, seen = 0, [root], set()
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            with open(f"/proc/{pid}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as children:
                    stack.extend(int(child) for child in children.read().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def _process_cpu_seconds(pid: int) -> float:
    """utime + stime of one process (Linux /proc), e.g. the server's."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _run_child(command: List[str], env: Dict[str, str]) -> Dict[str, Any]:
    """Runs one child, sampling its process tree's RSS; returns its JSON line plus process_s and tree_rss_mb."""
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], _tree_rss_kb(child.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = child.communicate()
    process_seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    if child.returncode != 0:
        raise RuntimeError(f"{command[:4]} failed ({child.returncode}):\n{stderr[-3000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result.update(process_seconds=process_seconds, tree_rss_mb=peak[0] / 1024)
    return result


def _command(system: str, args: argparse.Namespace, base_url: str, beam_options: List[str]) -> List[str]:
    common = ["--base-url", base_url, "--rows", str(args.rows), "--models", str(args.models),
              "--max-concurrency", str(args.max_concurrency), "--input-batch-size", str(args.input_batch_size)]
    if system == "distilabel":
        return [str(args.distilabel_python), str(HERE / "distilabel_child.py"), *common]
    common += ["--backend", args.backend,
               *(["--output-dir", "--rows-per-slice", str(args.rows_per_slice)] if args.output_dir else [])]
    child = "beam_distil" if system.startswith("beam_distil") else system
    return [sys.executable, "-m", "benchmarks.docs_pipeline", "--child", child, *common,
            *SYSTEM_CHILD_FLAGS.get(system, []), *SYSTEM_BEAM_OPTIONS.get(system, []), *beam_options]


def _distilabel_available(python: Path) -> Optional[str]:
    """None when distilabel imports with ``python``, else why not."""
    if not python.exists():
        return f"{python} not found (create benchmarks/.venv-distilabel, see benchmarks/README.md)"
    check = subprocess.run([str(python), "-c", "import distilabel; print(distilabel.__version__)"],
                           capture_output=True, text=True)
    return None if check.returncode == 0 else f"distilabel does not import: {check.stderr.strip()[-300:]}"


KEYS = ["rows_per_second", "requests_per_second", "sustained_requests_per_second", "run_seconds", "process_seconds",
        "import_seconds", "seconds_to_first_request", "seconds_after_last_answer", "cpu_ms_per_request",
        "server_cpu_ms_per_request", "peak_rss_mb", "tree_rss_mb", "max_in_flight"]


def _start_and_wind_down(result: Dict[str, Any], stats: Dict[str, Any]) -> Dict[str, float]:
    """From the run's start to the server's first request (graph building, set-up), and from the server's last
    answer to the run's return (joins, writing and collecting the rows): the fixed costs paid around the requests.
    Both clocks are ``time.monotonic()`` of this machine. ``nan`` where a side did not record it."""
    started, finished = result.get("run_started_clock"), result.get("finished_clock")
    first, last = stats.get("first_request_at"), stats.get("last_response_at")
    if None in (started, finished, first, last):
        return {"seconds_to_first_request": float("nan"), "seconds_after_last_answer": float("nan")}
    return {"seconds_to_first_request": first - started, "seconds_after_last_answer": finished - last}


def _format(result: Dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in result.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), help="One of the issue's targets (see SCENARIOS).")
    parser.add_argument("--systems", help=f"Comma-separated, from {','.join(SYSTEMS)}.")
    parser.add_argument("--rows", type=int)
    parser.add_argument("--latency", type=float, help="Server latency per request, seconds.")
    parser.add_argument("--repeats", type=int, help="Runs per system (alternating between systems).")
    parser.add_argument("--models", type=int, choices=[1, 2, 3], help="TextGeneration steps (one model each).")
    parser.add_argument("--max-concurrency", type=int, help="Requests in flight per model (OpenAILLM.max_concurrency).")
    parser.add_argument("--input-batch-size", type=int)
    parser.add_argument("--backend", choices=["openai", "llamacpp"],
                        help="beam_distil's LLM: OpenAILLM on the local server, or the embedded llama.cpp model.")
    parser.add_argument("--output-dir", action="store_true", default=None,
                        help="beam_distil writes the rows into an output_dir (Parquet) instead of returning them only.")
    parser.add_argument("--rows-per-slice", type=int, default=50_000,
                        help="With --output-dir: Pipeline.run(rows_per_slice=...); 0 runs in one Beam job.")
    parser.add_argument("--distilabel-python", type=Path, default=DEFAULT_DISTILABEL_PYTHON)
    parser.add_argument("--json-out", type=Path, help="Append every run and the medians as JSON lines here.")
    parser.add_argument("--child", choices=["beam_distil", "sdk", "sdk_aiohttp", "aiohttp"], help=argparse.SUPPRESS)
    parser.add_argument("--base-url", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--owned-process", action="store_true", help=argparse.SUPPRESS)
    args, beam_options = parser.parse_known_args()
    beam_options = [option for option in beam_options if option != "--"]
    if args.child:
        _one_run(args, beam_options)
        return

    settings = {**DEFAULTS, **(SCENARIOS[args.scenario] if args.scenario else {})}
    for key, value in settings.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    systems = [system.strip() for system in args.systems.split(",") if system.strip()]
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        parser.error(f"unknown systems {sorted(unknown)}; choose from {SYSTEMS}")
    if args.backend == "llamacpp" and any(not system.startswith("beam_distil") for system in systems):
        parser.error("--backend llamacpp runs only beam_distil systems (the SDKs and distilabel need the server)")
    if "distilabel" in systems:
        problem = _distilabel_available(args.distilabel_python)
        if problem:
            print(f"distilabel skipped: {problem}", flush=True)
            systems.remove("distilabel")
    print(f"scenario={args.scenario} rows={args.rows} latency={args.latency} models={args.models} "
          f"max_concurrency={args.max_concurrency} repeats={args.repeats} systems={systems} beam_options={beam_options}",
          flush=True)

    server = subprocess.Popen(
        [sys.executable, "-m", "beam_distil.testing.openai_server", "--port", "0", "--latency", str(args.latency)],
        stdout=subprocess.PIPE, text=True, cwd=REPO,
    )
    cache_dir = tempfile.mkdtemp(prefix="distilabel-bench-cache-")
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "DISTILABEL_CACHE_DIR": cache_dir,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    results: Dict[str, List[Dict[str, Any]]] = {system: [] for system in systems}
    try:
        base_url = server.stdout.readline().strip()
        stats_url = base_url.rsplit("/v1", 1)[0] + "/stats"
        for repeat in range(args.repeats):
            for system in systems:  # A B C A B C
                _server_stats(stats_url, method="DELETE")
                server_cpu = _process_cpu_seconds(server.pid)
                result = _run_child(_command(system, args, base_url, beam_options), env)
                stats = _server_stats(stats_url)
                # With llama.cpp nothing reaches the server: a request is one generation.
                requests = stats["request_count"] if args.backend == "openai" else args.rows * args.models
                result.update(
                    rows_per_second=result["rows"] / result["run_seconds"],
                    requests_per_second=requests / result["run_seconds"],
                    # Requests over the server's busy window (first request to last answer): the rate the
                    # client sustained, without its start-up and the building of its results.
                    sustained_requests_per_second=requests / stats["serving_seconds"] if stats["serving_seconds"] else 0.0,
                    cpu_ms_per_request=1000 * result["cpu_seconds"] / max(requests, 1),
                    server_cpu_ms_per_request=1000 * (_process_cpu_seconds(server.pid) - server_cpu) / max(requests, 1),
                    max_in_flight=stats["max_in_flight"],
                    requests=requests,
                    **_start_and_wind_down(result, stats),
                )
                results[system].append(result)
                print(f"run {repeat + 1} {system}: {_format(result)}", flush=True)
                if args.json_out:
                    with args.json_out.open("a") as out:
                        out.write(json.dumps({"scenario": args.scenario, "system": system, "repeat": repeat + 1, **result}) + "\n")
        print(f"medians over {args.repeats} runs (scenario={args.scenario}, rows={args.rows}, latency={args.latency}, "
              f"models={args.models}, max_concurrency={args.max_concurrency}):")
        for system in systems:
            medians = {key: statistics.median(r[key] for r in results[system]) for key in KEYS}
            print(f"median {system}: {_format(medians)}", flush=True)
            if args.json_out:
                with args.json_out.open("a") as out:
                    out.write(json.dumps({"scenario": args.scenario, "system": system, "median": True, **medians}) + "\n")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
