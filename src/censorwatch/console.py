"""Where tables are printed: rich consoles that stay readable when output goes to a file.

Rich assumes 80 columns when stdout is not a terminal, which folds a wide table (events,
verdicts) into one-word cells in a log or a CI transcript. Off a terminal, tables get 160
columns unless ``COLUMNS`` says otherwise.
"""

from __future__ import annotations

import os

from rich.console import Console

PIPED_WIDTH = 160


def table_console(*, stderr: bool = False) -> Console:
    """A console for tables: the terminal's width, or ``PIPED_WIDTH`` when piped."""
    console = Console(stderr=stderr)
    if console.is_terminal or os.environ.get("COLUMNS"):
        return console
    return Console(stderr=stderr, width=max(console.width, PIPED_WIDTH))
