"""Run-time execution on Apache Beam: the launch function (``launch``), the translation of a pipeline's DAG into
a Beam graph, the Task DoFn, the shared per-process LLM clients and event loop, and the sinks.

Modules are imported where used (``from beam_distil.beam.launch import launch``); this package imports nothing
itself, so that a step module importing one helper does not pull in the whole run-time layer.
"""
