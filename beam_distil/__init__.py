"""beam_distil: distilabel's synthetic-data and AI-feedback pipelines on Apache Beam.

Port a distilabel pipeline by renaming its imports (``distilabel.pipeline`` -> ``beam_distil.pipeline``, and
likewise ``steps``, ``steps.tasks``, ``models``), or use any step as a ``PTransform`` in your own Beam job.

Importing the package changes nothing in the importing process (no garbage-collector or logging settings):
the start-up tuning of ``beam_distil.owned_process`` runs only in the processes the project starts itself.
"""

__version__ = "0.1.0"
