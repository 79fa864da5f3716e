"""The error every layer raises when a pipeline cannot run as defined, found before anything is paid for.

Raised by validation (``beam_distil.pipeline``) and by the launch checks (``beam_distil.beam.launch``), and
exported as ``beam_distil.pipeline.PipelineValidationError``::

    try:
        pipeline.run()
    except PipelineValidationError as error:
        print(error.problems)     # one message per problem: the step, the column or parameter, what to do

It also has distilabel's errors (``distilabel.errors``), so code that raises or catches them keeps working when
ported. Each takes a message and, optionally, the ``page`` of the distilabel documentation that explains more::

    raise DistilabelUserError("`columns` must not be empty", page="components-gallery/steps/groupcolumns/")
    # `columns` must not be empty
    #
    # For further information visit 'https://distilabel.argilla.io/latest/components-gallery/steps/groupcolumns/'
"""

from __future__ import annotations

from typing import Final, List, Optional

DISTILABEL_DOCS_URL: Final[str] = "https://distilabel.argilla.io/latest/"
"""The documentation the ``page`` of a ``DistilabelError`` is in (beam_distil mirrors distilabel's API)."""


class PipelineValidationError(ValueError):
    """The pipeline cannot run as defined. ``problems`` lists each reason."""

    def __init__(self, pipeline_name: str, problems: List[str]) -> None:
        self.problems = problems
        listed = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"Pipeline {pipeline_name!r} is not valid:\n{listed}")


class DistilabelError:
    """What distilabel's errors share: a message, and an optional documentation ``page`` appended as a link.

    A mixin: each concrete error also derives from the built-in exception it stands for, so ``except ValueError``
    catches a ``DistilabelUserError``.
    """

    def __init__(self, message: str, *, page: Optional[str] = None) -> None:
        self.message = message
        self.page = page
        if isinstance(self, BaseException):  # the message in `args` too, so the error pickles (Beam workers)
            super().__init__(message)

    def __str__(self) -> str:
        if self.page is None:
            return self.message
        return f"{self.message}\n\nFor further information visit '{DISTILABEL_DOCS_URL}{self.page}'"


class DistilabelUserError(DistilabelError, ValueError):
    """A ``ValueError`` caused by how the library is used, optionally pointing at a documentation page."""


class DistilabelTypeError(DistilabelError, TypeError):
    """A ``TypeError`` optionally pointing at a documentation page."""


class DistilabelNotImplementedError(DistilabelError, NotImplementedError):
    """A ``NotImplementedError`` optionally pointing at a documentation page."""
