"""The one error type of the gateway's client commands (a leaf module: no cycle)."""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    """The command cannot do what was asked: `code` is its exit status (2 usage, 1 failed)."""

    def __init__(self, message: str, code: int = 1, *, body: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.body = body
        """What to print with --json (a problem document, a rejected receipt)."""
