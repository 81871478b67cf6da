"""``python -m tools.reproduce``."""

from .cli import main

main()
