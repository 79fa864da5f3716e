"""``python -m beam_distil pipeline info|run ...``: the ``beam-distil`` command (see ``beam_distil.cli``)."""

import sys

from beam_distil.cli import console_main

sys.exit(console_main())
