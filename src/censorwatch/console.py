"""Where output goes: tables readable in a file or pipe, and one log format for services.

Rich assumes 80 columns when stdout is not a terminal, which folds a wide table (events,
verdicts) into one-word cells in a log or a CI transcript. Off a terminal, tables get 160
columns unless ``COLUMNS`` says otherwise. Long-running services (the control, the testbed's
processes) log with their level named, so trouble can be picked out of a log file.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

PIPED_WIDTH = 160


def table_console(*, stderr: bool = False) -> Console:
    """A console for tables: the terminal's width, or ``PIPED_WIDTH`` when piped."""
    from rich.console import Console  # not at import: the services use this module too

    console = Console(stderr=stderr)
    if console.is_terminal or os.environ.get("COLUMNS"):
        return console
    return Console(stderr=stderr, width=max(console.width, PIPED_WIDTH))


SERVICE_LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


def service_logging() -> None:
    """Log INFO and above to stderr in the services' shared format."""
    logging.basicConfig(level=logging.INFO, format=SERVICE_LOG_FORMAT)
