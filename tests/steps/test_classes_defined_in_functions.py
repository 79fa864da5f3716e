"""A step class defined inside a function runs on Beam, and nothing of that function's local variables goes
with it: Beam pickles such a class by value, and pydantic would otherwise keep the function's locals on it."""

from __future__ import annotations

import base64
import bz2

from apache_beam.internal import pickler

from beam_distil.pipeline import Pipeline
from beam_distil.steps import LoadDataFromDicts, Step, StepInput


def shipped_bytes(obj: object) -> bytes:
    """What Beam's pickler sends to workers for ``obj``, uncompressed."""
    return bz2.decompress(base64.b64decode(pickler.dumps(obj)))


def test_a_step_class_defined_in_a_function_leaves_the_functions_locals_behind():
    api_secret = "sk-do-not-ship"

    class Doubled(Step):
        @property
        def inputs(self):
            return ["n"]

        @property
        def outputs(self):
            return ["twice"]

        def process(self, inputs: StepInput):
            yield [{**row, "twice": 2 * row["n"]} for row in inputs]

    assert api_secret and b"sk-do-not-ship" not in shipped_bytes(Doubled)
    with Pipeline("local-class") as pipeline:
        LoadDataFromDicts(data=[{"n": i} for i in range(5)]) >> Doubled(name="doubled")
    distiset = pipeline.run(use_cache=False, options={"direct_running_mode": "in_memory"})
    assert distiset["default"]["train"]["twice"] == [0, 2, 4, 6, 8]
