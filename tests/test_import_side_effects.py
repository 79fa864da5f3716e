"""Importing the library leaves the host process's garbage collector as it was; only the project's own
processes (its command line, launcher and recipes) tune it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import gc, json, sys
before = [gc.isenabled(), gc.get_freeze_count() > 0, gc.get_threshold()]
{imports}
after = [gc.isenabled(), gc.get_freeze_count() > 0, gc.get_threshold()]
print(json.dumps({{"before": before, "after": after}}))
"""


def gc_state_around(imports: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(imports=imports)],
        cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=120,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_importing_the_library_leaves_the_garbage_collector_alone() -> None:
    state = gc_state_around(
        "import beam_distil, beam_distil.pipeline, beam_distil.steps, beam_distil.steps.tasks, beam_distil.models\n"
        "import beam_distil.beam.launch, beam_distil.flex_template, beam_distil.cli"
    )

    assert state["after"] == state["before"]
    assert state["after"][1] is False  # nothing frozen


def test_the_projects_own_processes_freeze_the_heap_after_importing_beam() -> None:
    state = gc_state_around(
        "import sys\nfrom beam_distil.cli import console_main\nsys.argv = ['beam-distil', '--help']\nconsole_main()"
    )

    assert state["before"][1] is False
    assert state["after"][0] is True and state["after"][1] is True


RUN_PROBE = """
import gc, json
from beam_distil.pipeline import Pipeline
from beam_distil.steps import LoadDataFromDicts, KeepColumns

{setup}
seen = {{}}
with Pipeline("p") as pipeline:
    LoadDataFromDicts(data=[{{"a": 1}}]) >> KeepColumns(columns=["a"])
before = [gc.isenabled(), gc.get_freeze_count()]
def callback(phase, info):
    seen["frozen_during_run"] = max(seen.get("frozen_during_run", 0), gc.get_freeze_count())
gc.callbacks.append(callback)
import beam_distil.beam.launch as launch_module
read_rows = launch_module.read_scratch_rows
def read_and_record(directory):
    seen["frozen_while_reading_rows"] = gc.get_freeze_count()
    return read_rows(directory)
launch_module.read_scratch_rows = read_and_record
pipeline.run(use_cache=False)
gc.collect()
gc.callbacks.remove(callback)
after = [gc.isenabled(), gc.get_freeze_count()]
print(json.dumps({{"before": before, "after": after, "frozen_during_run": seen.get("frozen_during_run", 0),
                  "frozen_while_reading_rows": seen.get("frozen_while_reading_rows", 0)}}))
"""


def run_probe(setup: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", RUN_PROBE.format(setup=setup)],
        cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=300,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_run_freezes_the_heap_only_while_it_runs() -> None:
    state = run_probe("")
    assert state["before"] == [True, 0]
    assert state["frozen_during_run"] > 100_000  # the collections during the run skipped the imported heap
    # Reading the rows back allocates as much as the job did: its collections skip the imported heap too.
    assert state["frozen_while_reading_rows"] > 100_000
    assert state["after"] == [True, 0]  # and the collector is as it was once the run returned


def test_a_run_leaves_a_process_that_froze_its_own_heap_as_it_was() -> None:
    state = run_probe("gc.freeze()")
    assert state["before"][0] is True and state["before"][1] > 0
    # Still frozen (the count only drops by the frozen objects the run freed): the run did not unfreeze it.
    assert state["after"][0] is True and state["after"][1] > 0.9 * state["before"][1]
