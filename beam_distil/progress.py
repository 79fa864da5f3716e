"""Live progress of a local run: rows in and out, requests in flight, tokens, failures, rate and ETA per step.

Each run that shows progress has its own board, owned by its ``ProgressReporter``, which redraws it on stderr
about once a second. It is on when stderr is a terminal (``Pipeline.run(show_progress=...)`` decides
otherwise). The run's DoFns carry the board's id and ``report`` to it; they find it only in the launching
process (``FnApiRunner`` in-memory or multi-threading). Elsewhere (``multi_processing`` workers, Dataflow) and
in runs without progress, ``report`` finds no board and returns at once, without taking a lock: there the same
counts are Beam Metrics (``rows_in``, ``rows_out``, ``llm_requests``, ``llm_failures``, ``input_tokens``,
``output_tokens`` per step), shown in the runner's UI::

    with ProgressReporter(["load", "gen"], totals={"load": 100}) as reporter:
        build_beam_graph(..., progress_board_id=reporter.board_id)   # DoFns: report(board_id, step, ...)
        beam_pipeline.run()
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Dict, List, Optional, TextIO

_COUNTERS = (
    "rows_in", "rows_out", "in_flight", "input_tokens", "output_tokens", "failures",
    "batches_open", "batch_requests", "batch_answered",
)


@dataclass
class StepProgress:
    rows_in: int = 0
    rows_out: int = 0
    in_flight: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    failures: int = 0
    batches_open: int = 0
    """Provider batches this step waits on (``use_offline_batch_generation``)."""
    batch_requests: int = 0
    batch_answered: int = 0
    started: float = field(default_factory=time.monotonic)


class ProgressBoard:
    """One run's counters per step, updated from any thread of the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._steps: Dict[str, StepProgress] = {}

    def add(self, step: str, **deltas: int) -> None:
        with self._lock:
            progress = self._steps.setdefault(step, StepProgress())
            for name, delta in deltas.items():
                setattr(progress, name, getattr(progress, name) + delta)

    def snapshot(self) -> Dict[str, StepProgress]:
        with self._lock:
            return {name: StepProgress(**{c: getattr(p, c) for c in _COUNTERS}, started=p.started) for name, p in self._steps.items()}


# The boards of the runs showing progress in this process, by id, so that DoFns (which travel pickled) find
# theirs. Empty outside such runs.
_boards: Dict[str, ProgressBoard] = {}


def report(board_id: Optional[str], step: str, **deltas: int) -> None:
    """Adds ``deltas`` to ``step``'s counters on board ``board_id``, if that board is in this process."""
    board = _boards.get(board_id) if board_id is not None else None
    if board is not None:
        board.add(step, **deltas)


def render(steps: List[str], snapshot: Dict[str, StepProgress], totals: Dict[str, int], now: float) -> List[str]:
    """One line per step, in pipeline order."""
    width = max((len(step) for step in steps), default=0)
    lines = []
    for step in steps:
        progress = snapshot.get(step)
        if progress is None:
            lines.append(f"{step:<{width}}  waiting")
            continue
        elapsed = max(now - progress.started, 1e-6)
        rate = progress.rows_out / elapsed
        total = totals.get(step)
        done = f"{progress.rows_out}/{total}" if total else f"{progress.rows_out}"
        parts = [f"{step:<{width}}", f"rows {done}", f"{rate:.1f} rows/s"]
        if total and rate > 0 and progress.rows_out < total:
            parts.append(f"ETA {int((total - progress.rows_out) / rate)}s")
        if progress.in_flight or progress.input_tokens or progress.failures:
            parts += [
                f"in flight {progress.in_flight}",
                f"tokens {progress.input_tokens}/{progress.output_tokens}",
                f"failures {progress.failures}",
            ]
        if progress.batch_requests:
            parts.append(
                f"batches open {progress.batches_open}, answered {progress.batch_answered}/{progress.batch_requests}"
            )
        lines.append("  ".join(parts))
    return lines


class ProgressReporter:
    """Redraws the board on ``stream`` every ``interval`` seconds until stopped."""

    def __init__(self, steps: List[str], totals: Dict[str, int], stream: Optional[TextIO] = None, interval: float = 1.0) -> None:
        self.board = ProgressBoard()
        self.board_id = uuid.uuid4().hex
        self._steps = steps
        self._totals = totals
        self._stream = stream or sys.stderr
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="beam-distil-progress", daemon=True)
        self._drawn = 0

    def __enter__(self) -> "ProgressReporter":
        _boards[self.board_id] = self.board
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._draw()
        _boards.pop(self.board_id, None)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._draw()

    def _draw(self) -> None:
        lines = render(self._steps, self.board.snapshot(), self._totals, time.monotonic())
        # Move back over the previous drawing and overwrite it in place.
        prefix = f"\x1b[{self._drawn}F" if self._drawn else ""
        self._stream.write(prefix + "".join(f"\x1b[2K{line}\n" for line in lines))
        self._stream.flush()
        self._drawn = len(lines)
