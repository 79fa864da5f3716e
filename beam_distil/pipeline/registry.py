"""What a saved pipeline may name: ``register`` your step, task and LLM classes and your routing functions.

The registry itself (``TypeRegistry``, ``REGISTRY``) lives in ``beam_distil.steps.registry``, below the pipeline
layer, so that ``Step.from_dict`` finds classes through the same one as ``Pipeline.from_file``; its docstring says
what a file may name. This module is its public face. (The one kind of callable a file may call with arguments of
its choosing, the project's routing factories such as ``sample_n_steps``, is a fixed table in
``beam_distil.pipeline.routing``.)

Example::

    from beam_distil.pipeline import Pipeline, register, routing_batch_function
    from beam_distil.steps import Step, StepInput, StepOutput

    @register
    class Upper(Step):
        @property
        def inputs(self): return ["text"]
        @property
        def outputs(self): return ["upper"]
        def process(self, inputs: StepInput) -> StepOutput:
            yield [{**row, "upper": row["text"].upper()} for row in inputs]

    @register
    @routing_batch_function
    def first_two(steps: list[str]) -> list[str]:
        return steps[:2]

    Pipeline.from_file("pipeline.yaml")   # may now name my_package.steps.Upper and my_package.steps.first_two

    # or, so that `beam-distil pipeline run` and the Flex Template find them without importing your module
    # first, in the pyproject.toml of the distribution that ships it:
    #   [project.entry-points."beam_distil.registry"]
    #   my_steps = "my_package.steps"          # a module (its @register decorators run), or module:object

``@routing_batch_function`` alone does not register a function: in-process routing (notebooks, local
functions, tests) needs no registration, and one rule, "a file may name only what is registered", covers
classes and functions alike. Registering again under the same name replaces the earlier entry (a notebook
cell run twice).
"""

from __future__ import annotations

from typing import TypeVar

from beam_distil.steps.registry import ENTRY_POINT_GROUP, HOW_TO_REGISTER, REGISTRY, TypeRegistry

_Registered = TypeVar("_Registered")


def register(obj: _Registered) -> _Registered:
    """Lets saved pipelines name ``obj`` (a step, task or LLM class, or a routing function); usable as a
    decorator (``@register``) or called (``register(MyStep)``). Returns ``obj`` unchanged."""
    return REGISTRY.register(obj)


__all__ = ["ENTRY_POINT_GROUP", "HOW_TO_REGISTER", "REGISTRY", "TypeRegistry", "register"]
