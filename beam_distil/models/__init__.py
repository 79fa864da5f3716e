"""LLM clients: ``LLM``/``AsyncLLM`` bases and the backends.

The in-process backends that need an extra (``vLLM``: ``beam-distil[vllm]``, ``TransformersLLM``:
``[transformers]``, ``LiteLLM``: ``[litellm]``) import without it; their ``check_ready`` says what to install.
"""

from beam_distil.models.anthropic import AnthropicLLM
from beam_distil.models.azure_openai import AzureOpenAILLM
from beam_distil.models.base import AsyncLLM, ChatType, FormattedInput, GenerateOutput, LLM
from beam_distil.models.cohere import CohereLLM
from beam_distil.models.inference_endpoints import InferenceEndpointsLLM
from beam_distil.models.litellm import LiteLLM
from beam_distil.models.llamacpp import LlamaCppLLM
from beam_distil.models.ollama import OllamaLLM
from beam_distil.models.openai import OpenAILLM
from beam_distil.models.openai_compatible import AnyscaleLLM, ClientvLLM, GroqLLM, MistralLLM, TogetherLLM
from beam_distil.models.transformers import TransformersLLM
from beam_distil.models.vertexai import VertexAILLM
from beam_distil.models.vllm import vLLM

__all__ = [
    "AnthropicLLM",
    "AnyscaleLLM",
    "AsyncLLM",
    "AzureOpenAILLM",
    "ChatType",
    "ClientvLLM",
    "CohereLLM",
    "FormattedInput",
    "GenerateOutput",
    "GroqLLM",
    "InferenceEndpointsLLM",
    "LLM",
    "LiteLLM",
    "LlamaCppLLM",
    "MistralLLM",
    "OllamaLLM",
    "OpenAILLM",
    "TogetherLLM",
    "TransformersLLM",
    "VertexAILLM",
    "vLLM",
]
