"""Run the stages in order (work in progress)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the ``pipeline`` command group to the ``tickercast`` app."""
