"""Terminal output shared by the commands: one rich console, progress bars, logging set-up."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")

console = Console(stderr=True)


def configure_logging(level: str = "INFO") -> None:
    """Send log records to stderr through rich; called once by the CLI, never at import."""
    logging.basicConfig(
        level=level.upper(),
        format="%(message)s",
        datefmt="[%X]",
        handlers=[RichHandler(console=console, show_path=False, rich_tracebacks=False)],
        force=True,
    )
    for noisy in ("py4j", "urllib3", "alembic", "matplotlib", "PIL", "fsspec"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def progress_bar() -> Progress:
    """Return a progress display for long work (description, bar, count, elapsed, remaining)."""
    return Progress(
        TextColumn("[bold blue]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate over ``items`` while showing a progress bar.

    Args:
        items: What to iterate over.
        description: The label shown next to the bar.
        total: Number of items when ``items`` has no ``len``.

    Yields:
        Each item in turn.

    """
    with progress_bar() as progress:
        task = progress.add_task(description, total=total if total is not None else len(items))  # type: ignore[arg-type]
        for item in items:
            yield item
            progress.advance(task)


def summary(message: str) -> None:
    """Print the closing one-line summary of a command (what was written where)."""
    console.print(f"[bold green]✔[/] {message}")
