"""``@task``: a formatting function as a ``Task`` class, as distilabel's ``distilabel.steps.tasks.task``.

The function's docstring holds the prompt, as YAML between two ``---`` lines: ``system_prompt`` and
``user_message_template``, with ``{column}`` placeholders naming the task's inputs. The function itself parses
each generation: ``(output, input) -> columns`` (``output`` is ``None`` when the LLM gave no answer).

Example::

    from beam_distil.steps.tasks import task

    @task(inputs=["text"], outputs=["summary"])
    def Summarize(output: Optional[str], input: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        '''
        ---
        system_prompt: |
          You summarize texts in one sentence.
        user_message_template: |
          Summarize this text: {text}
        ---
        '''
        return {"summary": output.strip() if output else None}

    with Pipeline("summaries") as pipeline:
        load >> Summarize(llm=OpenAILLM(model="gpt-4o-mini"))

The class is a ``Task`` like any other (batched requests, cache, retries, dead letters), travels to Beam workers by
name like a class defined at the top level of a module, and is registered for ``Pipeline.from_file`` by its
decorator. Placeholders are filled with ``str.format``, as in distilabel.
"""

from __future__ import annotations

import inspect
import re
from typing import Any, Callable, Dict, List, Optional, Tuple, Type

import yaml

from beam_distil.models.base import ChatType
from beam_distil.steps.base import StepColumns
from beam_distil.steps.registry import REGISTRY
from beam_distil.steps.tasks.base import Task

_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_FORMAT_HELP = (
    "put the prompt in the docstring of the decorated function as YAML between two `---` lines, with the keys"
    " `system_prompt` and `user_message_template`"
)


def task(inputs: Optional[StepColumns] = None, outputs: Optional[StepColumns] = None) -> Callable[..., Type[Task]]:
    """Makes a ``Task`` class of the decorated formatting function (see the module docstring).

    Args:
        inputs: the columns the prompt uses, as a list or a dict ``column -> required``; none if omitted.
        outputs: the columns the function returns, likewise (``model_name`` is added to every row, as by any task).

    Raises:
        ValueError: when decorating, a docstring without the prompt, or a placeholder that is not an input.
    """
    declared_inputs: StepColumns = dict(inputs) if isinstance(inputs, dict) else list(inputs or [])
    declared_outputs: StepColumns = dict(outputs) if isinstance(outputs, dict) else list(outputs or [])

    def decorator(function: Callable[..., Dict[str, Any]]) -> Type[Task]:
        system_prompt, user_message_template = prompt_templates(function)
        input_names = list(declared_inputs)
        for what, template in (("system_prompt", system_prompt), ("user_message_template", user_message_template)):
            unknown = sorted(set(_PLACEHOLDER.findall(template)) - set(input_names))
            if unknown:
                raise ValueError(
                    f"@task {function.__name__!r}: the {what} of its docstring has placeholders {unknown} that are"
                    f" not inputs of the task; the valid ones are {input_names}. Add them to `inputs` or remove them."
                )

        def format_input(self: Task, input: Dict[str, Any]) -> ChatType:
            return [
                {"role": "system", "content": system_prompt.format(**input)},
                {"role": "user", "content": user_message_template.format(**input)},
            ]

        def format_output(self: Task, output: Optional[str], input: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
            return function(output, input)

        namespace: Dict[str, Any] = {
            "__module__": function.__module__,
            "__qualname__": function.__qualname__,
            "__doc__": function.__doc__,
            "inputs": property(lambda self: _copy(declared_inputs)),
            "outputs": property(lambda self: _copy(declared_outputs)),
            "format_input": format_input,
            "format_output": format_output,
        }
        cls = type(function.__name__, (Task,), namespace)
        # Decorating declares a step as `@register` does: a saved pipeline naming it loads where this module ran.
        REGISTRY.register(cls)
        return cls

    return decorator


def _copy(columns: StepColumns) -> StepColumns:
    return dict(columns) if isinstance(columns, dict) else list(columns)


def prompt_templates(function: Callable[..., Any]) -> Tuple[str, str]:
    """``(system_prompt, user_message_template)`` from the YAML between the two ``---`` lines of the docstring."""
    docstring = inspect.getdoc(function)
    if docstring is None:
        raise ValueError(f"@task {function.__name__!r} has no docstring: {_FORMAT_HELP}.")
    parts: List[str] = docstring.split("---")
    if len(parts) != 3:
        raise ValueError(f"@task {function.__name__!r}: its docstring does not have the prompt; {_FORMAT_HELP}.")
    try:
        prompt = yaml.safe_load(parts[1])
    except yaml.YAMLError as error:
        raise ValueError(f"@task {function.__name__!r}: the prompt in its docstring is not valid YAML ({error}).") from None
    if not isinstance(prompt, dict) or prompt.get("system_prompt") is None or prompt.get("user_message_template") is None:
        raise ValueError(
            f"@task {function.__name__!r}: its docstring's YAML needs both `system_prompt` and"
            f" `user_message_template`; {_FORMAT_HELP}."
        )
    return str(prompt["system_prompt"]).strip(), str(prompt["user_message_template"]).strip()


__all__ = ["prompt_templates", "task"]
