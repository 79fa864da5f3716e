"""Generator steps: the root steps that produce rows."""

from beam_distil.steps.generators.data import LoadDataFromDicts
from beam_distil.steps.generators.huggingface import (
    LoadDataFromDisk,
    LoadDataFromFileSystem,
    LoadDataFromHub,
    LoadHubDataset,
)
from beam_distil.steps.generators.utils import make_generator_step

__all__ = [
    "LoadDataFromDicts",
    "LoadDataFromDisk",
    "LoadDataFromFileSystem",
    "LoadDataFromHub",
    "LoadHubDataset",
    "make_generator_step",
]
