"""Commands of this stage (work in progress: registers nothing yet)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the ``tickercast`` app."""
