"""Command-line entry point (``cfakey`` and ``python -m cfakey``)."""

from __future__ import annotations

import gc
import sys
from collections.abc import Sequence

#: Command groups: alone on the command line, they show their help.
GROUPS = ("cfa", "config", "request", "store")


def main(argv: Sequence[str] | None = None) -> None:
    """Run cfakey; errors become one French line on stderr and a documented exit code."""
    # Start-up is mostly imports, whose objects live as long as the process: the cyclic
    # collector would walk them again and again for nothing (bench/reminders.py: about
    # 0.25x import typer). It is paused while they are made, and they are kept out of
    # every later collection; the command itself runs with the collector as usual.
    gc.disable()
    try:
        _load(args := list(sys.argv[1:] if argv is None else argv))
    finally:
        gc.freeze()
        gc.enable()
    from cfakey.cli.app import app

    app(args=args, prog_name="cfakey")


def _load(args: list[str]) -> None:
    """Import what every command needs (and the French help texts when help is asked)."""
    if not args or "--help" in args or "-h" in args or (len(args) == 1 and args[0] in GROUPS):
        from cfakey.cli.french import prepare_help

        prepare_help()
    import cfakey.cli.app  # noqa: F401 - imported now, while the collector is paused
