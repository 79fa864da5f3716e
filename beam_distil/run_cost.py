"""What a run's LLM calls used and cost: tokens and requests per model, priced when the user gives prices.

Prices are US dollars per million tokens, per model name (a task's ``llm.model_name``)::

    distiset = pipeline.run(prices={
        "gpt-4o-mini": {"input": 0.15, "output": 0.60},
        "claude-3-5-haiku-latest": {"input": 0.80, "output": 4.00, "batch_input": 0.40, "batch_output": 2.00},
    })
    usage = pipeline.last_run_usage["gpt-4o-mini"]
    usage.online_input_tokens, usage.batch_input_tokens, usage.requests, usage.cost   # cost: USD, or None

The end-of-run summary shows the same figures as a table after the per-step one. ``beam-distil pipeline run
--prices prices.yaml`` reads the same mapping from a file.

Tokens sent through a provider's batch API (the ``batch_input_tokens`` and ``batch_output_tokens`` counters of a
task, included in its ``input_tokens`` and ``output_tokens``) are priced at ``batch_input`` and
``batch_output``. Left out, those are half of ``input`` and ``output``: the batch discount OpenAI, Anthropic and
Google each publish for their batch APIs. Set them when a provider's discount differs.

Models are told apart by name only: one model name reached through two providers gets one price. A price for a
model no task of the pipeline uses is ignored, so that one price list can serve many pipelines; a model the run
used with no price is listed with its tokens and ``no price``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from beam_distil.errors import PipelineValidationError
from beam_distil.helpers import did_you_mean, text_table

TOKENS_PER_PRICE_UNIT = 1_000_000
"""Prices are per million tokens, as providers publish them."""

BATCH_DISCOUNT = 0.5
"""What a batch token costs relative to an online one when the price does not say (providers' usual 50%)."""

_EXAMPLE = "{'input': 0.15, 'output': 0.6}"


class ModelPrice(BaseModel):
    """One model's prices in US dollars per million tokens.

    ``batch_input`` and ``batch_output`` (tokens sent through a provider's batch API) default to half of
    ``input`` and ``output``::

        ModelPrice(input=2.5, output=10).batch_output   # 5.0
    """

    model_config = ConfigDict(extra="forbid")

    input: float = Field(ge=0, allow_inf_nan=False, strict=True, description="USD per million input tokens.")
    output: float = Field(ge=0, allow_inf_nan=False, strict=True, description="USD per million output tokens.")
    batch_input: Optional[float] = Field(
        default=None, ge=0, allow_inf_nan=False, strict=True,
        description="USD per million input tokens sent through a batch API; default half of `input`.",
    )
    batch_output: Optional[float] = Field(
        default=None, ge=0, allow_inf_nan=False, strict=True,
        description="USD per million output tokens answered through a batch API; default half of `output`.",
    )

    @model_validator(mode="after")
    def _batch_prices_default_to_the_discount(self) -> "ModelPrice":
        if self.batch_input is None:
            self.batch_input = self.input * BATCH_DISCOUNT
        if self.batch_output is None:
            self.batch_output = self.output * BATCH_DISCOUNT
        return self


class InvalidPricesError(ValueError):
    """The prices given for a run cannot be used. ``problems`` names each model and field, and what to do."""

    def __init__(self, problems: List[str]) -> None:
        self.problems = problems
        listed = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"Invalid prices:\n{listed}")


def parse_prices(prices: Optional[Mapping[str, Any]]) -> Dict[str, ModelPrice]:
    """``{model name: ModelPrice}`` from a user's ``{model name: {"input": .., "output": .., ...}}`` (values may
    already be ``ModelPrice``). Raises ``InvalidPricesError`` listing every problem at once::

        parse_prices({"gpt-4o-mini": {"input": 0.15, "output": 0.6}})["gpt-4o-mini"].batch_input   # 0.075
    """
    if prices is None:
        return {}
    if not isinstance(prices, Mapping):
        raise InvalidPricesError(
            [
                "prices must map each model name to its prices in US dollars per million tokens, e.g."
                f" {{'gpt-4o-mini': {_EXAMPLE}}}; got a {type(prices).__name__}: {prices!r}"
            ]
        )
    parsed: Dict[str, ModelPrice] = {}
    problems: List[str] = []
    for model, price in prices.items():
        if not isinstance(model, str) or not model:
            problems.append(
                f"prices: model name {model!r} must be a non-empty string, the model's name as its task's"
                f" llm.model_name gives it, e.g. 'gpt-4o-mini'"
            )
            continue
        if isinstance(price, ModelPrice):
            parsed[model] = price
            continue
        if not isinstance(price, Mapping):
            problems.append(
                f"prices for model {model!r} must be a mapping such as {_EXAMPLE} (US dollars per million"
                f" tokens); got {price!r}"
            )
            continue
        try:
            parsed[model] = ModelPrice.model_validate(dict(price))
        except ValidationError as error:
            problems.extend(_price_problem(model, detail) for detail in error.errors())
    if problems:
        raise InvalidPricesError(problems)
    return parsed


def _price_problem(model: str, detail: Dict[str, Any]) -> str:
    """One pydantic error on a model's price as a sentence naming the model, the field and what to do."""
    field = str(detail["loc"][0]) if detail["loc"] else "?"
    fields = list(ModelPrice.model_fields)
    if detail["type"] == "missing":
        return (
            f"prices for model {model!r}: {field!r} is missing; give the US dollars per million {field} tokens,"
            f" e.g. {_EXAMPLE}"
        )
    if detail["type"] == "extra_forbidden":
        return (
            f"prices for model {model!r}: unknown field {field!r}.{did_you_mean(field, fields)} The fields are"
            f" {', '.join(fields)} (US dollars per million tokens)."
        )
    # YAML reads a quoted number, or one like 1e-1 (no dot), as text.
    unquote = "; write it as a plain number such as 0.15" if isinstance(detail["input"], str) else ""
    return (
        f"prices for model {model!r}: {field!r} must be a number of US dollars per million tokens, at least 0"
        f" ({detail['msg']}); got {detail['input']!r}{unquote}"
    )


def prices_for_run(pipeline_name: str, prices: Optional[Mapping[str, Any]]) -> Dict[str, ModelPrice]:
    """``parse_prices`` for a run: its problems raised as the run's ``PipelineValidationError``, before anything
    runs (the error every check before a launch raises)."""
    try:
        return parse_prices(prices)
    except InvalidPricesError as error:
        raise PipelineValidationError(pipeline_name, error.problems) from None


@dataclass(frozen=True)
class ModelUsage:
    """What one model was used for in a run, over every task step that uses it."""

    model: str
    steps: Tuple[str, ...]
    """The task steps using the model, in pipeline order."""
    requests: int
    online_input_tokens: int
    online_output_tokens: int
    batch_input_tokens: int
    """Input tokens sent through a provider's batch API, paid at the batch rate."""
    batch_output_tokens: int
    cost: Optional[float]
    """US dollars at the given prices; ``None`` when the model has no price."""

    @property
    def input_tokens(self) -> int:
        """Every input token, online and batch."""
        return self.online_input_tokens + self.batch_input_tokens

    @property
    def output_tokens(self) -> int:
        """Every output token, online and batch."""
        return self.online_output_tokens + self.batch_output_tokens


def model_of_each_task(steps: Mapping[str, Any]) -> Dict[str, str]:
    """``{task step name: its llm.model_name}`` for the task steps of ``steps`` (a DAG's ``{name: step}``):
    the steps whose Beam counters hold LLM requests and tokens."""
    return {name: step.llm.model_name for name, step in steps.items() if step.is_task}


def tokens_by_model(
    metrics: Mapping[str, Mapping[str, int]],
    model_of_step: Mapping[str, str],
    prices: Optional[Mapping[str, ModelPrice]] = None,
) -> Dict[str, ModelUsage]:
    """Each model's requests and tokens, summed over its steps' counters (``metrics``: ``{step: {counter:
    value}}``, as ``run_summary.counters_by_step`` reads them), and their cost when ``prices`` has the model.

    A step's ``batch_input_tokens``/``batch_output_tokens`` are the part of its ``input_tokens``/``output_tokens``
    paid at batch rates; missing counters count as 0. Models come in the order of their first step::

        tokens_by_model({"gen": {"llm_requests": 2, "input_tokens": 10, "output_tokens": 4}}, {"gen": "m"},
                        {"m": ModelPrice(input=1, output=2)})["m"].cost   # (10 * 1 + 4 * 2) / 1e6
    """
    steps_of_model: Dict[str, List[str]] = {}
    for step, model in model_of_step.items():
        steps_of_model.setdefault(model, []).append(step)
    usage: Dict[str, ModelUsage] = {}
    for model, steps in steps_of_model.items():
        sums = {
            name: sum(metrics.get(step, {}).get(name, 0) for step in steps)
            for name in ("llm_requests", "input_tokens", "output_tokens", "batch_input_tokens", "batch_output_tokens")
        }
        online_input = sums["input_tokens"] - sums["batch_input_tokens"]
        online_output = sums["output_tokens"] - sums["batch_output_tokens"]
        price = (prices or {}).get(model)
        cost = None
        if price is not None:
            cost = (
                online_input * price.input
                + online_output * price.output
                + sums["batch_input_tokens"] * price.batch_input
                + sums["batch_output_tokens"] * price.batch_output
            ) / TOKENS_PER_PRICE_UNIT
        usage[model] = ModelUsage(
            model=model,
            steps=tuple(steps),
            requests=sums["llm_requests"],
            online_input_tokens=online_input,
            online_output_tokens=online_output,
            batch_input_tokens=sums["batch_input_tokens"],
            batch_output_tokens=sums["batch_output_tokens"],
            cost=cost,
        )
    return usage


def format_usage(usage: Mapping[str, ModelUsage], prices: Optional[Mapping[str, Any]] = None) -> str:
    """``usage`` as an aligned text table, one row per model (cost in US dollars, or ``no price``) and a total row
    when there are several models. When ``prices`` (the run's) were given, a note names the models without a
    price, and any name in ``prices`` close to one of them (a misspelled model name)."""
    header = ["model", "requests", "online_input_tokens", "online_output_tokens", "batch_input_tokens",
              "batch_output_tokens", "cost_usd"]
    rows = [header]
    for item in usage.values():
        rows.append([item.model, *_figures(item), _cost_text(item.cost)])
    if len(usage) > 1:
        priced = [item.cost for item in usage.values() if item.cost is not None]
        totals = [sum(column) for column in zip(*(_figures(item) for item in usage.values()))]
        rows.append(["total", *totals, _cost_text(sum(priced) if priced else None)])
    lines = [text_table(rows)]  # names left-aligned, figures right-aligned, as in the per-step table
    unpriced = [item.model for item in usage.values() if item.cost is None]
    if unpriced and prices:  # without any prices, the cost was not asked for
        total_note = " (not in the total)" if len(usage) > 1 and len(unpriced) < len(usage) else ""
        lines.append(
            f"No price for {', '.join(repr(model) for model in unpriced)}{total_note}: add them to the prices"
            f" (US dollars per million tokens, e.g. {_EXAMPLE}) to see their cost."
        )
        unused = [name for name in prices if name not in usage]
        for model in unpriced:
            close = difflib.get_close_matches(model, unused, n=3, cutoff=0.6)
            if close:
                names = ", ".join(repr(name) for name in close)
                lines.append(f"The prices name {names}, which no task uses: is that {model!r} misspelled?")
    return "\n".join(lines)


def _figures(item: ModelUsage) -> List[int]:
    return [item.requests, item.online_input_tokens, item.online_output_tokens, item.batch_input_tokens,
            item.batch_output_tokens]


def _cost_text(cost: Optional[float]) -> str:
    # Micro-dollars: a short test run costs fractions of a cent, and rounding it to 0.00 would hide it.
    return "no price" if cost is None else f"{cost:.6f}"
