"""The summary of a finished run: Beam counters per step, and the tables printed at its end (rows, LLM
requests, failures and tokens per step; then tokens and cost per model, ``beam_distil.run_cost``)."""

from __future__ import annotations

import logging
import sys
from typing import Any, Dict, List, Mapping, Optional, Tuple

from beam_distil.helpers import text_table
from beam_distil.run_cost import ModelPrice, ModelUsage, format_usage

logger = logging.getLogger("beam_distil")

_COLUMNS = ["rows_in", "rows_out", "llm_requests", "llm_failures", "input_tokens", "output_tokens"]


def counters_by_step(result: Any) -> Dict[str, Dict[str, int]]:
    """Beam counters of a finished run as ``{step name: {counter: value}}`` (requests, failures, tokens...)."""
    counters: Dict[str, Dict[str, int]] = {}
    try:
        queried = result.metrics().query()["counters"]
    except (AttributeError, NotImplementedError, KeyError):  # some runners expose no metrics
        return counters
    for counter in queried:
        value = counter.committed if counter.committed is not None else counter.attempted
        step = counters.setdefault(counter.key.metric.namespace, {})
        step[counter.key.metric.name] = step.get(counter.key.metric.name, 0) + (value or 0)
    return counters


def add_counters(total: Dict[str, Dict[str, int]], more: Dict[str, Dict[str, int]]) -> Dict[str, Dict[str, int]]:
    """The sums of two runs' ``counters_by_step``, e.g. of the slices of one local run."""
    summed = {step: dict(counters) for step, counters in total.items()}
    for step, counters in more.items():
        into = summed.setdefault(step, {})
        for name, value in counters.items():
            into[name] = into.get(name, 0) + value
    return summed


def rows_lost_between_steps(
    edges: List[Tuple[str, str]], metrics: Dict[str, Dict[str, int]]
) -> List[str]:
    """Each ``(upstream, step)`` edge whose step received fewer rows than the upstream step sent, as sentences.

    ``edges`` are the pipeline's unrouted edges into steps with a single predecessor: there every row the
    upstream step sends reaches the step, so its ``rows_in`` must equal the upstream ``rows_out``. A shortfall
    means rows were lost on the way, which the run must say rather than return fewer rows in silence."""
    problems = []
    for upstream, step in edges:
        sent = metrics.get(upstream, {}).get("rows_out")
        received = metrics.get(step, {}).get("rows_in")
        if sent is not None and received is not None and received < sent:
            problems.append(f"step {step!r} received {received} rows of the {sent} that {upstream!r} sent")
    return problems


def format_summary(metrics: Dict[str, Dict[str, int]]) -> str:
    """``metrics`` (``{step: {counter: value}}``) as an aligned text table, steps in the given order."""
    header = ["step", *_COLUMNS]
    rows: List[List[str]] = [header]
    for step, counters in metrics.items():
        rows.append([step, *(str(counters[c]) if c in counters else "-" for c in _COLUMNS)])
    return text_table(rows)


def report_summary(
    pipeline_name: str,
    metrics: Dict[str, Dict[str, int]],
    logging_configured: bool,
    usage: Optional[Mapping[str, ModelUsage]] = None,
    prices: Optional[Mapping[str, ModelPrice]] = None,
) -> None:
    """The run summary: through logging when the application configured it, else on stderr.

    With ``usage`` (``run_cost.tokens_by_model``), the per-step table is followed by one of requests, tokens and
    cost per model; ``prices`` (the run's) lets it point out a model name misspelled in them."""
    if not metrics:
        return
    text = f"Pipeline {pipeline_name!r} finished:\n{format_summary(metrics)}"
    if usage:
        text += f"\n\nTokens and cost (US dollars) per model:\n{format_usage(usage, prices)}"
    if logging_configured:
        logger.info(text)
    else:
        print(text, file=sys.stderr)
