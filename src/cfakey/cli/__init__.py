"""Command-line entry point (``cfakey`` and ``python -m cfakey``)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

#: Command groups: alone on the command line, they show their help.
GROUPS = ("cfa", "config", "request", "store")


def main(argv: Sequence[str] | None = None) -> None:
    """Run cfakey; errors become one French line on stderr and a documented exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or "--help" in args or "-h" in args or (len(args) == 1 and args[0] in GROUPS):
        from cfakey.cli.french import prepare_help

        prepare_help()
    from cfakey.cli.app import app

    app(args=args, prog_name="cfakey")
