"""Ready-made pipelines, each run as its own process: ``python -m pipelines.<name>``."""
