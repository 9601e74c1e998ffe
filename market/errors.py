"""The market's errors: each names the field at fault and the reason, for the API and CLI to show.

May import only the standard library.
"""

from __future__ import annotations


class MarketError(ValueError):
    """A request the market refuses; nothing it would have written is stored.

    Attributes
    ----------
    field:
        The input at fault, as the caller named it (``"quantity_kwh"``, ``"interval"``).
    reason:
        Why, in words.
    """

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class NotFoundError(MarketError):
    """The thing named does not exist (or is not the caller's to see)."""


class ConflictError(MarketError):
    """The request clashes with what is stored: a reused idempotency key, a frozen order."""
