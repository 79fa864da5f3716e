"""Ready-made pipelines, each run as its own process: ``python -m pipelines.<name>``.

These processes are the project's own, so the package gets ``beam_distil.owned_process``'s start-up tuning
before any recipe imports Apache Beam (``import beam_distil`` alone never applies it).
"""

from beam_distil.owned_process import tune_owned_process

tune_owned_process()
