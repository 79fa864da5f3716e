"""Requirements: the packages a pipeline or one of its custom steps needs installed, as in distilabel.

Example::

    from beam_distil.pipeline import Pipeline
    from beam_distil.steps import Step, StepInput, StepOutput
    from beam_distil.utils.requirements import requirements

    @requirements(["nltk>=3.8"])
    class Tokenize(Step):
        ...

    with Pipeline("tokens", requirements=["beam-distil>=0.1"]) as pipeline:
        ...
    pipeline.requirements    # ['beam-distil>=0.1', 'nltk>=3.8']: the pipeline's own and its steps', sorted

Each requirement is a PEP 508 string (``name``, ``name>=1.2``, ``name[extra]; python_version < "3.12"``). A
string that is not one is left out with a warning, as distilabel does. The saved pipeline lists them under the
top-level ``requirements`` key, where distilabel writes them.

Before a run pays for anything, the process that launches it checks each one against the installed distributions
(``importlib.metadata``, so ``scikit-learn`` is found although its module is ``sklearn``) and stops when one is
missing or at a version outside its specifier. Nothing is installed, and remote workers (Dataflow) are not
checked: give them the same packages (``--requirements_file``, ``--setup_file`` or the container image).
"""

from __future__ import annotations

import importlib.metadata
import logging
from typing import Callable, Dict, Iterable, List, TypeVar, Union

from packaging.requirements import InvalidRequirement, Requirement

logger = logging.getLogger("beam_distil")

_Decorated = TypeVar("_Decorated", bound=type)


def requirements(requirements: Union[List[str], str]) -> Callable[[_Decorated], _Decorated]:
    """Class decorator declaring the packages a custom step needs; the pipelines it joins list and check them.

    Example::

        @requirements(["nltk>=3.8"])
        class Tokenize(Step):
            ...

        Tokenize.requirements    # ['nltk>=3.8']

    A string that is not a PEP 508 requirement is left out with a warning.
    """
    declared = [requirements] if isinstance(requirements, str) else list(requirements)

    def decorator(step_class: _Decorated) -> _Decorated:
        step_class.requirements = valid_requirements(declared, owner=step_class.__name__)  # type: ignore[attr-defined]
        return step_class

    return decorator


def valid_requirements(declared: Iterable[str], owner: str) -> List[str]:
    """``declared`` as normalised requirement strings, each once, sorted; invalid ones are left out with a
    warning naming ``owner`` (the pipeline or step that declared them)."""
    parsed = set()
    for text in declared:
        try:
            parsed.add(str(Requirement(str(text))))
        except InvalidRequirement as error:
            logger.warning("%s: requirement %r is not a PEP 508 requirement and is left out: %s", owner, text, error)
    return sorted(parsed)


def unmet_requirements(required: Iterable[str]) -> Dict[str, str]:
    """Each requirement this environment does not meet, with why: not installed, or installed at a version
    outside the specifier. A requirement whose environment marker does not apply here is met."""
    unmet: Dict[str, str] = {}
    for text in required:
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        try:
            installed = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            unmet[text] = "not installed"
            continue
        if requirement.specifier and not requirement.specifier.contains(installed, prereleases=True):
            unmet[text] = f"{requirement.name} {installed} is installed"
    return unmet


__all__ = ["requirements", "unmet_requirements", "valid_requirements"]
