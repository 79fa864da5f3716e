"""Structured output: a JSON schema or a pydantic model that an LLM's answer must follow.

Backends turn the schema into their own constraint (OpenAI ``response_format`` json_schema, Vertex
``response_json_schema``, llama.cpp a JSON grammar); the Task then validates every answer against it, so an
answer that does not fit keeps its row with ``None`` and the validation error in ``distilabel_metadata``::

    class Character(BaseModel):
        name: str
        age: int

    TextGeneration(llm=OpenAILLM(model="gpt-4o-mini", structured_output=Character))

How a schema reaches an LLM (``call_arguments``): the project's backends take it per call, as a
``structured_output`` keyword, so one loaded client serves tasks with different schemas; an LLM written the
distilabel way reads ``self.structured_output`` and gets a ``StructuredGeneration`` row as distilabel's
``(chat, schema)`` input, never the keyword.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple, Type, Union

import jsonschema
from pydantic import BaseModel, ValidationError

if TYPE_CHECKING:
    from beam_distil.models.base import FormattedInput, LLM

StructuredOutputSchema = Union[Dict[str, Any], Type[BaseModel]]


# The keys of distilabel's structured-output dicts: outlines' {"format": "json", "schema": ...} and instructor's
# {"schema": ..., "mode": ..., "max_retries": ...}. Only the schema matters here: every backend constrains its
# answer its own way, and every answer is validated against the schema.
_DISTILABEL_KEYS = {"format", "schema", "mode", "max_retries", "whitespace_pattern"}


def json_schema_of(schema: StructuredOutputSchema) -> Dict[str, Any]:
    """The JSON schema of a pydantic model, or the schema itself; distilabel's wrappers give their schema::

        json_schema_of(Character)                                  # Character.model_json_schema()
        json_schema_of({"format": "json", "schema": Character})    # the same
        json_schema_of({"schema": Character, "mode": "tool_call"}) # the same (instructor's form)
    """
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return schema.model_json_schema()
    if isinstance(schema, dict):
        if "schema" in schema and set(schema) <= _DISTILABEL_KEYS:
            if schema.get("format", "json") != "json":
                raise ValueError(
                    f"structured output format {schema['format']!r} is not supported: only JSON schemas are"
                    ' ({"format": "json", "schema": ...}); write the constraint as a JSON schema.'
                )
            return json_schema_of(schema["schema"])
        return schema
    raise TypeError(f"structured output must be a JSON schema (dict) or a pydantic model class, got {schema!r}")


def parse_structured(text: Optional[str], schema: StructuredOutputSchema) -> Tuple[Optional[Any], Optional[str]]:
    """``(parsed value, None)`` when ``text`` follows ``schema``, else ``(None, why not)``."""
    if text is None:
        return None, None
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        try:
            return schema.model_validate_json(text).model_dump(mode="json"), None
        except ValidationError as error:
            return None, f"answer does not match {schema.__name__}: {error.errors(include_url=False)}"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        return None, f"answer is not valid JSON ({error.msg} at position {error.pos})"
    try:
        jsonschema.validate(value, json_schema_of(schema))
    except jsonschema.ValidationError as error:
        return None, f"answer does not match the JSON schema: {error.message}"
    return value, None


def split_structured_input(input: "FormattedInput") -> Tuple[Any, Optional[StructuredOutputSchema]]:
    """distilabel's ``(chat, schema)`` input as its chat and its schema; any other input as it is, with ``None``."""
    if isinstance(input, tuple) and len(input) == 2:
        return input[0], input[1]
    return input, None


def call_arguments(
    llm: "LLM",
    input: "FormattedInput",
    kwargs: Dict[str, Any],
    default_schema: Optional[StructuredOutputSchema] = None,
) -> Tuple["FormattedInput", Dict[str, Any]]:
    """The input and keyword arguments of a call to ``llm`` whose answer must follow ``kwargs["structured_output"]``,
    else the schema of a ``(chat, schema)`` input, else ``default_schema`` (if any).

    A backend that takes the schema per call (``llm.takes_schema_per_call()``) gets the chat and the schema as its
    ``structured_output`` keyword. Any other LLM gets what distilabel gives it: the input as it is (a
    ``(chat, schema)`` tuple included) and no ``structured_output`` keyword, its schema being on the LLM::

        call_arguments(OpenAILLM(model="m"), (chat, schema), {})     # (chat, {"structured_output": schema})
        call_arguments(my_distilabel_style_llm, chat, {"structured_output": schema, "temperature": 0.2})
        # (chat, {"temperature": 0.2})

    ``default_schema`` is for a direct ``llm.generate`` call, where the LLM's own ``structured_output`` applies;
    a task passes its schema in ``kwargs`` instead, because the client it calls may be shared with another task
    whose LLM differs only in its schema.
    """
    if llm.takes_schema_per_call():
        prompt, row_schema = split_structured_input(input)
        schema = kwargs.get("structured_output") or row_schema or default_schema
        if schema is not None:
            kwargs = {**kwargs, "structured_output": json_schema_of(schema)}
        return prompt, kwargs
    return input, {key: value for key, value in kwargs.items() if key != "structured_output"}
