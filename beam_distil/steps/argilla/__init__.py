"""Argilla steps: push rows to an Argilla dataset for human review, as distilabel's ``steps.argilla``.

The Argilla SDK is an extra (``pip install 'beam-distil[argilla]'``): these classes import and can be made,
validated and saved without it; loading them (on the worker) needs it.

Example::

    from beam_distil.steps.argilla import PreferenceToArgilla

    to_argilla = PreferenceToArgilla(
        dataset_name="preferences", dataset_workspace="team", num_generations=2,
        api_url="http://localhost:6900",          # or ARGILLA_API_URL; the key comes from ARGILLA_API_KEY
    )
    load >> generate >> group >> UltraFeedback(llm=judge) >> to_argilla
"""

from beam_distil.steps.argilla.base import ArgillaBase
from beam_distil.steps.argilla.client import ArgillaConfigurationError, RetryPolicy
from beam_distil.steps.argilla.preference import PreferenceToArgilla
from beam_distil.steps.argilla.text_generation import TextGenerationToArgilla

__all__ = [
    "ArgillaBase",
    "ArgillaConfigurationError",
    "PreferenceToArgilla",
    "RetryPolicy",
    "TextGenerationToArgilla",
]
