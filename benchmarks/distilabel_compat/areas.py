"""Which of distilabel 1.5.3's unit tests are measured, grouped by area, and how moved modules map."""

# area -> test files (relative to distilabel's tests/unit)
AREAS = {
    "tasks": [
        "steps/tasks/test_text_generation.py",
        "steps/tasks/test_structured_generation.py",
        "steps/tasks/test_text_classification.py",
        "steps/tasks/test_ultrafeedback.py",
        "steps/tasks/test_prometheus_eval.py",
        "steps/tasks/test_self_instruct.py",
        "steps/tasks/test_complexity_scorer.py",
        "steps/tasks/test_quality_scorer.py",
        "steps/tasks/test_instruction_backtranslation.py",
        "steps/tasks/test_sentence_transformers.py",
        "steps/tasks/evol_instruct/test_base.py",
        "steps/tasks/evol_instruct/test_generator.py",
        "steps/tasks/evol_quality/test_base.py",
        "steps/tasks/magpie/test_base.py",
        "steps/tasks/magpie/test_generator.py",
    ],
    "formatting": [
        "steps/formatting/test_conversation.py",
        "steps/formatting/test_dpo.py",
        "steps/formatting/test_sft.py",
    ],
    "columns": [
        "steps/columns/test_combine.py",
        "steps/columns/test_expand.py",
        "steps/columns/test_group.py",
        "steps/columns/test_keep.py",
        "steps/columns/test_merge.py",
        "steps/columns/test_utils.py",
        "steps/filtering/test_minhash.py",
    ],
    "generators": [
        "steps/generators/test_data.py",
        "steps/generators/test_huggingface.py",
        "steps/generators/test_utils.py",
    ],
    "step_task_base": [
        "steps/test_base.py",
        "steps/tasks/test_base.py",
    ],
    "decorators": [
        "steps/test_decorator.py",
        "steps/tasks/test_decorator.py",
    ],
    "runtime_parameters": ["mixins/test_runtime_parameters.py"],
    "routing": ["pipeline/test_routing_batch_function.py"],
    "pipeline": [
        "pipeline/test_base.py",
        "pipeline/test_local.py",
        # distilabel's own run machinery: every test in these files is "internals, not API".
        "pipeline/test_dag.py",
        "pipeline/test_batch.py",
        "pipeline/test_batch_manager.py",
        "pipeline/test_write_buffer.py",
    ],
    "distiset": ["test_distiset.py"],
}

# Files whose every test exercises distilabel internals (private modules, its batch manager, write buffer).
INTERNAL_FILES = {
    "pipeline/test_dag.py",  # distilabel.pipeline._dag (private module)
    "pipeline/test_batch.py",  # _Batch
    "pipeline/test_batch_manager.py",  # _BatchManager, _BatchManagerStep
    "pipeline/test_write_buffer.py",  # _WriteBuffer
}

# Test support files copied with the tests (imports rewritten; a missing name becomes a placeholder class).
SUPPORT_FILES = [
    "__init__.py",
    "conftest.py",
    "helpers.py",
    "pipeline/__init__.py",
    "pipeline/conftest.py",
    "pipeline/utils.py",
    "steps/__init__.py",
    "steps/tasks/__init__.py",
    "steps/tasks/evol_instruct/__init__.py",
    "steps/tasks/evol_quality/__init__.py",
    "steps/tasks/magpie/__init__.py",
    "steps/formatting/__init__.py",
    "steps/columns/__init__.py",
    "steps/filtering/__init__.py",
    "mixins/__init__.py",
]

# distilabel module -> beam_distil module(s) tried first, where the path changed. A name not found there is
# looked up in beam_distil.<same path> and then in its parent packages (e.g. distilabel.steps.tasks.magpie.base ->
# beam_distil.steps.tasks.magpie). A name found nowhere keeps its import, which then fails.
MODULE_MAP = {
    "distilabel.pipeline.local": ["beam_distil.pipeline"],
    "distilabel.pipeline.base": ["beam_distil.pipeline.pipeline", "beam_distil.pipeline"],
    "distilabel.pipeline.routing_batch_function": ["beam_distil.pipeline.routing"],
    "distilabel.pipeline._dag": ["beam_distil.pipeline.dag"],
    "distilabel.models.llms.base": ["beam_distil.models.base", "beam_distil.models"],
    "distilabel.models.llms": ["beam_distil.models"],
    "distilabel.models.llms.openai": ["beam_distil.models.openai", "beam_distil.models"],
    "distilabel.models.llms.huggingface.transformers": ["beam_distil.models.transformers"],
    "distilabel.models.llms.vllm": ["beam_distil.models.vllm"],
    "distilabel.models.llms.azure": ["beam_distil.models.azure_openai"],
    "distilabel.models.mixins.magpie": ["beam_distil.models.base", "beam_distil.models.magpie", "beam_distil.models"],
    "distilabel.mixins.runtime_parameters": ["beam_distil.runtime_parameters"],
    "distilabel.steps.tasks.sentence_transformers": ["beam_distil.steps.tasks.generate_sentence_pair"],
    "distilabel.steps.filtering.minhash": ["beam_distil.steps.dedup.minhash", "beam_distil.steps.dedup"],
    "distilabel.utils.serialization": ["beam_distil.utils.serialization", "beam_distil.steps.serialization",
                                       "beam_distil.pipeline.serialization"],
    "distilabel.constants": ["beam_distil.constants", "beam_distil.rows", "beam_distil.distiset",
                             "beam_distil.steps.base"],
    "distilabel.typing": ["beam_distil.typing", "beam_distil.steps.base", "beam_distil.steps.tasks.base",
                          "beam_distil.models.base"],
}

# Lenient run only: a base class the tests subclass, stood in by beam_distil's nearest public class so the tests
# behind it run at all (distilabel users subclass neither; the tests' DummyPipeline does).
LENIENT_ALIASES = {
    "distilabel.pipeline.base.BasePipeline": "beam_distil.pipeline.Pipeline",
    "distilabel.pipeline.base._PIPELINE_DEFAULT_NAME": "beam_distil.pipeline.pipeline.DEFAULT_PIPELINE_NAME",
}
