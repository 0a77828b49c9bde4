"""Entry point for ``python -m cfakey``."""

from cfakey.cli import main

main()
