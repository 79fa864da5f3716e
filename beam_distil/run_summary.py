"""The summary of a finished run: Beam counters per step, and the table printed at its end (rows, LLM
requests, failures and tokens per step)."""

from __future__ import annotations

import logging
import sys
from typing import Any, Dict, List

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


def format_summary(metrics: Dict[str, Dict[str, int]]) -> str:
    """``metrics`` (``{step: {counter: value}}``) as an aligned text table, steps in the given order."""
    header = ["step", *_COLUMNS]
    rows: List[List[str]] = [header]
    for step, counters in metrics.items():
        rows.append([step, *(str(counters[c]) if c in counters else "-" for c in _COLUMNS)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) if i == 0 else cell.rjust(width) for i, (cell, width) in enumerate(zip(row, widths))) for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def report_summary(pipeline_name: str, metrics: Dict[str, Dict[str, int]], logging_configured: bool) -> None:
    """The run summary: through logging when the application configured it, else on stderr."""
    if not metrics:
        return
    text = f"Pipeline {pipeline_name!r} finished:\n{format_summary(metrics)}"
    if logging_configured:
        logger.info(text)
    else:
        print(text, file=sys.stderr)
