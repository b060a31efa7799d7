"""``python -m crust_clean`` = the ``crust-clean`` command."""

from .cli import main

main()
