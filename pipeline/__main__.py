"""``python -m pipeline``: the command line (:func:`pipeline.cli.run`)."""

from pipeline.cli import run

run()
