"""Fixtures for the feature tests: the preprocessing tests' small synthetic market with gaps."""

from __future__ import annotations

from tests.preprocess.conftest import raw_data

__all__ = ["raw_data"]
