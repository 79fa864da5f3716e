"""``RouteBatches``: a routing function as a DoFn with one tagged output per downstream step."""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, Iterator, List

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput

from beam_distil.rows import KeyedRow

if TYPE_CHECKING:
    from beam_distil.pipeline.routing import RoutingBatchFunction

_MAX_REMEMBERED_BATCHES = 4096


class _RouteDoFn(beam.DoFn):
    def __init__(self, upstream: str, routing: "RoutingBatchFunction", downstream: List[str], batch_size: int) -> None:
        self._upstream = upstream
        self._routing = routing
        self._downstream = downstream
        self._batch_size = batch_size
        self._routed = {name: Metrics.counter(upstream, f"rows_routed_to_{name}") for name in downstream}

    def setup(self) -> None:
        self._choices: Dict[int, List[str]] = {}

    def process(self, keyed: KeyedRow) -> Iterator[TaggedOutput]:
        row_id = keyed[0]
        # The batch is named by the row's generator position, never by how Beam bundled it, so the same rows
        # form the same batch on every run and every retry.
        batch_index = row_id[0] // self._batch_size if row_id else 0
        chosen = self._choices.get(batch_index)
        if chosen is None:
            if len(self._choices) >= _MAX_REMEMBERED_BATCHES:
                self._choices.clear()
            chosen = self._choices[batch_index] = self._routing.choose(self._downstream, self._upstream, batch_index)
        for name in chosen:
            self._routed[name].inc()
            yield TaggedOutput(name, keyed)


class RouteBatches(beam.PTransform):
    """Splits ``(row_id, row)`` elements into one output per downstream step, batch by batch."""

    def __init__(self, upstream: str, routing: "RoutingBatchFunction", downstream: List[str], batch_size: int) -> None:
        super().__init__()
        self._dofn = _RouteDoFn(upstream, routing, downstream, batch_size)
        self._downstream = downstream

    def expand(self, pcoll: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        return pcoll | "Route" >> beam.ParDo(self._dofn).with_outputs(*self._downstream)
