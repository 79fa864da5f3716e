"""Small utilities at the paths distilabel has them (``beam_distil.utils.requirements`` for
``distilabel.utils.requirements``)."""
