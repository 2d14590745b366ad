"""``python -m gsa_tutorial.train``: the command line of :mod:`gsa_tutorial.train.cli`."""

from .cli import main

main()
