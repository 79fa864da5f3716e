"""LLM tasks."""

from beam_distil.steps.tasks.base import GeneratorTask, Task
from beam_distil.steps.tasks.complexity_scorer import ComplexityScorer
from beam_distil.steps.tasks.decorator import task
from beam_distil.steps.tasks.evol_instruct import EvolInstruct, EvolInstructGenerator
from beam_distil.steps.tasks.evol_quality import EvolQuality
from beam_distil.steps.tasks.generate_sentence_pair import GenerateSentencePair
from beam_distil.steps.tasks.instruction_backtranslation import InstructionBacktranslation
from beam_distil.steps.tasks.magpie import Magpie, MagpieGenerator
from beam_distil.steps.tasks.prometheus_eval import PrometheusEval
from beam_distil.steps.tasks.quality_scorer import QualityScorer
from beam_distil.steps.tasks.self_instruct import SelfInstruct
from beam_distil.steps.tasks.structured_generation import StructuredGeneration
from beam_distil.steps.tasks.text_classification import TextClassification
from beam_distil.steps.tasks.text_generation import ChatGeneration, TextGeneration
from beam_distil.steps.tasks.ultrafeedback import UltraFeedback

__all__ = [
    "ChatGeneration",
    "ComplexityScorer",
    "EvolInstruct",
    "EvolInstructGenerator",
    "EvolQuality",
    "GenerateSentencePair",
    "GeneratorTask",
    "InstructionBacktranslation",
    "Magpie",
    "MagpieGenerator",
    "PrometheusEval",
    "QualityScorer",
    "SelfInstruct",
    "StructuredGeneration",
    "Task",
    "TextClassification",
    "TextGeneration",
    "UltraFeedback",
    "task",
]
