"""Where distilabel 1.5.3 defines each of its public step, task, LLM and embedding classes, by class name.

A pipeline file names every class by ``type_info: {module, name}``. beam_distil's classes that port a distilabel
class keep its name, so one table serves both directions:

* ``dump`` writes distilabel's module for such a class (``TextGeneration`` ->
  ``distilabel.steps.tasks.text_generation``), so that distilabel 1.5.3 loads the file too;
* loading maps a ``distilabel.*`` module back to beam_distil's class of the same name, found in the registry
  (``beam_distil.steps.registry``): nothing named here is ever imported.

Example::

    DISTILABEL_MODULES["OpenAILLM"]            # "distilabel.models.llms.openai"
    is_distilabel_module("distilabel.steps")   # True

The table is a fact about distilabel 1.5.3, read from its installed package; it lists classes beam_distil does not
have as well, so that a file naming one gets a precise error rather than "not registered".
"""

from __future__ import annotations

from typing import Dict

DISTILABEL_VERSION = "1.5.3"

DISTILABEL_MODULES: Dict[str, str] = {
    "Embeddings": "distilabel.models.embeddings.base",
    "LlamaCppEmbeddings": "distilabel.models.embeddings.llamacpp",
    "SentenceTransformerEmbeddings": "distilabel.models.embeddings.sentence_transformers",
    "vLLMEmbeddings": "distilabel.models.embeddings.vllm",
    "AnthropicLLM": "distilabel.models.llms.anthropic",
    "AnyscaleLLM": "distilabel.models.llms.anyscale",
    "AzureOpenAILLM": "distilabel.models.llms.azure",
    "AsyncLLM": "distilabel.models.llms.base",
    "LLM": "distilabel.models.llms.base",
    "CohereLLM": "distilabel.models.llms.cohere",
    "GroqLLM": "distilabel.models.llms.groq",
    "InferenceEndpointsLLM": "distilabel.models.llms.huggingface.inference_endpoints",
    "TransformersLLM": "distilabel.models.llms.huggingface.transformers",
    "LiteLLM": "distilabel.models.llms.litellm",
    "LlamaCppLLM": "distilabel.models.llms.llamacpp",
    "MistralLLM": "distilabel.models.llms.mistral",
    "MlxLLM": "distilabel.models.llms.mlx",
    "MixtureOfAgentsLLM": "distilabel.models.llms.moa",
    "OllamaLLM": "distilabel.models.llms.ollama",
    "OpenAILLM": "distilabel.models.llms.openai",
    "TogetherLLM": "distilabel.models.llms.together",
    "VertexAILLM": "distilabel.models.llms.vertexai",
    "ClientvLLM": "distilabel.models.llms.vllm",
    "vLLM": "distilabel.models.llms.vllm",
    "ArgillaBase": "distilabel.steps.argilla.base",
    "PreferenceToArgilla": "distilabel.steps.argilla.preference",
    "TextGenerationToArgilla": "distilabel.steps.argilla.text_generation",
    "GeneratorStep": "distilabel.steps.base",
    "GlobalStep": "distilabel.steps.base",
    "Step": "distilabel.steps.base",
    "DBSCAN": "distilabel.steps.clustering.dbscan",
    "TextClustering": "distilabel.steps.clustering.text_clustering",
    "UMAP": "distilabel.steps.clustering.umap",
    "CombineOutputs": "distilabel.steps.columns.combine",
    "ExpandColumns": "distilabel.steps.columns.expand",
    "GroupColumns": "distilabel.steps.columns.group",
    "KeepColumns": "distilabel.steps.columns.keep",
    "MergeColumns": "distilabel.steps.columns.merge",
    "DeitaFiltering": "distilabel.steps.deita",
    "EmbeddingGeneration": "distilabel.steps.embeddings.embedding_generation",
    "FaissNearestNeighbour": "distilabel.steps.embeddings.nearest_neighbour",
    "EmbeddingDedup": "distilabel.steps.filtering.embedding",
    "MinHashDedup": "distilabel.steps.filtering.minhash",
    "ConversationTemplate": "distilabel.steps.formatting.conversation",
    "FormatChatGenerationDPO": "distilabel.steps.formatting.dpo",
    "FormatTextGenerationDPO": "distilabel.steps.formatting.dpo",
    "FormatChatGenerationSFT": "distilabel.steps.formatting.sft",
    "FormatTextGenerationSFT": "distilabel.steps.formatting.sft",
    "LoadDataFromDicts": "distilabel.steps.generators.data",
    "DataSampler": "distilabel.steps.generators.data_sampler",
    "LoadDataFromDisk": "distilabel.steps.generators.huggingface",
    "LoadDataFromFileSystem": "distilabel.steps.generators.huggingface",
    "LoadDataFromHub": "distilabel.steps.generators.huggingface",
    "PushToHub": "distilabel.steps.globals.huggingface",
    "RewardModelScore": "distilabel.steps.reward_model",
    "APIGenExecutionChecker": "distilabel.steps.tasks.apigen.execution_checker",
    "APIGenGenerator": "distilabel.steps.tasks.apigen.generator",
    "APIGenSemanticChecker": "distilabel.steps.tasks.apigen.semantic_checker",
    "PrepareExamples": "distilabel.steps.tasks.apigen.utils",
    "ArgillaLabeller": "distilabel.steps.tasks.argilla_labeller",
    "GeneratorTask": "distilabel.steps.tasks.base",
    "GlobalTask": "distilabel.steps.tasks.base",
    "ImageTask": "distilabel.steps.tasks.base",
    "Task": "distilabel.steps.tasks.base",
    "CLAIR": "distilabel.steps.tasks.clair",
    "ComplexityScorer": "distilabel.steps.tasks.complexity_scorer",
    "EvolInstruct": "distilabel.steps.tasks.evol_instruct.base",
    "EvolComplexity": "distilabel.steps.tasks.evol_instruct.evol_complexity.base",
    "EvolComplexityGenerator": "distilabel.steps.tasks.evol_instruct.evol_complexity.generator",
    "EvolInstructGenerator": "distilabel.steps.tasks.evol_instruct.generator",
    "EvolQuality": "distilabel.steps.tasks.evol_quality.base",
    "GenerateEmbeddings": "distilabel.steps.tasks.generate_embeddings",
    "Genstruct": "distilabel.steps.tasks.genstruct",
    "ImageGeneration": "distilabel.steps.tasks.image_generation",
    "BitextRetrievalGenerator": "distilabel.steps.tasks.improving_text_embeddings",
    "EmbeddingTaskGenerator": "distilabel.steps.tasks.improving_text_embeddings",
    "GenerateLongTextMatchingData": "distilabel.steps.tasks.improving_text_embeddings",
    "GenerateShortTextMatchingData": "distilabel.steps.tasks.improving_text_embeddings",
    "GenerateTextClassificationData": "distilabel.steps.tasks.improving_text_embeddings",
    "GenerateTextRetrievalData": "distilabel.steps.tasks.improving_text_embeddings",
    "MonolingualTripletGenerator": "distilabel.steps.tasks.improving_text_embeddings",
    "InstructionBacktranslation": "distilabel.steps.tasks.instruction_backtranslation",
    "Magpie": "distilabel.steps.tasks.magpie.base",
    "MagpieGenerator": "distilabel.steps.tasks.magpie.generator",
    "MathShepherdCompleter": "distilabel.steps.tasks.math_shepherd.completer",
    "MathShepherdGenerator": "distilabel.steps.tasks.math_shepherd.generator",
    "FormatPRM": "distilabel.steps.tasks.math_shepherd.utils",
    "PairRM": "distilabel.steps.tasks.pair_rm",
    "PrometheusEval": "distilabel.steps.tasks.prometheus_eval",
    "QualityScorer": "distilabel.steps.tasks.quality_scorer",
    "SelfInstruct": "distilabel.steps.tasks.self_instruct",
    "GenerateSentencePair": "distilabel.steps.tasks.sentence_transformers",
    "StructuredGeneration": "distilabel.steps.tasks.structured_generation",
    "TextClassification": "distilabel.steps.tasks.text_classification",
    "ChatGeneration": "distilabel.steps.tasks.text_generation",
    "TextGeneration": "distilabel.steps.tasks.text_generation",
    "TextGenerationWithImage": "distilabel.steps.tasks.text_generation_with_image",
    "UltraFeedback": "distilabel.steps.tasks.ultrafeedback",
    "URIAL": "distilabel.steps.tasks.urial",
    "TruncateTextColumn": "distilabel.steps.truncate",
}


def is_distilabel_module(module: str) -> bool:
    """Whether ``module`` is distilabel's (``distilabel`` or anything under it), as a file written by it names."""
    return module == "distilabel" or module.startswith("distilabel.")


__all__ = ["DISTILABEL_MODULES", "DISTILABEL_VERSION", "is_distilabel_module"]
