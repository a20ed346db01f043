"""Errors whose message is written for the user, not for a developer reading a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix (bad argument, missing input, no network).

    The CLI prints the message on one line and exits with :attr:`exit_code`; it never shows a
    traceback for these.
    """

    exit_code = 2

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class BundleError(Exception):
    """A model bundle that cannot be used: missing, incomplete or tampered with. The message says which."""
