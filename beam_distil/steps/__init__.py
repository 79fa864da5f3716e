"""Steps: base classes, generators and column steps (``from beam_distil.steps import LoadDataFromDicts``)."""

from beam_distil.runtime_parameters import RuntimeParameter
from beam_distil.steps.base import (
    GeneratorStep,
    GeneratorStepOutput,
    GlobalStep,
    Step,
    StepColumns,
    StepInput,
    StepOutput,
)
from beam_distil.steps.argilla import PreferenceToArgilla, TextGenerationToArgilla
from beam_distil.steps.columns import CombineOutputs, ExpandColumns, GroupColumns, KeepColumns, MergeColumns
from beam_distil.steps.decorator import step
from beam_distil.steps.dedup import ExactDedup, MinHashDedup
from beam_distil.steps.embeddings import EmbeddingDedup, EmbeddingGeneration
from beam_distil.steps.formatting import (
    ConversationTemplate,
    FormatChatGenerationDPO,
    FormatChatGenerationSFT,
    FormatTextGenerationDPO,
    FormatTextGenerationSFT,
)
from beam_distil.steps.generators import (
    LoadDataFromDicts,
    LoadDataFromDisk,
    LoadDataFromFileSystem,
    LoadDataFromHub,
    LoadHubDataset,
    make_generator_step,
)

__all__ = [
    "CombineOutputs",
    "ConversationTemplate",
    "EmbeddingDedup",
    "EmbeddingGeneration",
    "ExactDedup",
    "ExpandColumns",
    "FormatChatGenerationDPO",
    "FormatChatGenerationSFT",
    "FormatTextGenerationDPO",
    "FormatTextGenerationSFT",
    "GeneratorStep",
    "GeneratorStepOutput",
    "GlobalStep",
    "GroupColumns",
    "KeepColumns",
    "LoadDataFromDicts",
    "LoadDataFromDisk",
    "LoadDataFromFileSystem",
    "LoadDataFromHub",
    "LoadHubDataset",
    "MergeColumns",
    "MinHashDedup",
    "PreferenceToArgilla",
    "RuntimeParameter",
    "Step",
    "StepColumns",
    "StepInput",
    "StepOutput",
    "TextGenerationToArgilla",
    "make_generator_step",
    "step",
]
