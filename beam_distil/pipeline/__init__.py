"""Pipelines: ``Pipeline``, its validation errors, routing, and ``register`` (what a saved pipeline may name)."""

from beam_distil.pipeline.pipeline import Pipeline
from beam_distil.pipeline.registry import register
from beam_distil.pipeline.routing import RoutingBatchFunction, RoutingError, routing_batch_function, sample_n_steps
from beam_distil.pipeline.validation import MissingRequirementsError, PipelineValidationError

__all__ = [
    "MissingRequirementsError",
    "Pipeline",
    "PipelineValidationError",
    "RoutingBatchFunction",
    "RoutingError",
    "register",
    "routing_batch_function",
    "sample_n_steps",
]
