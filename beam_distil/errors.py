"""The error every layer raises when a pipeline cannot run as defined, found before anything is paid for.

Raised by validation (``beam_distil.pipeline``) and by the launch checks (``beam_distil.beam.launch``), and
exported as ``beam_distil.pipeline.PipelineValidationError``::

    try:
        pipeline.run()
    except PipelineValidationError as error:
        print(error.problems)     # one message per problem: the step, the column or parameter, what to do
"""

from __future__ import annotations

from typing import List


class PipelineValidationError(ValueError):
    """The pipeline cannot run as defined. ``problems`` lists each reason."""

    def __init__(self, pipeline_name: str, problems: List[str]) -> None:
        self.problems = problems
        listed = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"Pipeline {pipeline_name!r} is not valid:\n{listed}")
