"""What every ``smartbrum`` command shares: one-line failures and time options."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import typer


def fail(message: str) -> typer.Exit:
    """Print ``smartbrum: message`` on stderr; raise the result to exit with status 2."""
    print(f"smartbrum: {message}", file=sys.stderr)
    return typer.Exit(code=2)


def utc_option(value: str | None, name: str) -> datetime | None:
    """An ISO 8601 time option with a UTC offset, as an aware UTC datetime."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO 8601 time", param_hint=name) from None
    if moment.tzinfo is None:
        raise typer.BadParameter(f"{value!r} needs a UTC offset (for example 'Z')", param_hint=name)
    return moment.astimezone(UTC)


def iso_utc(moment: datetime) -> str:
    """An instant as ISO 8601 UTC with 'Z'."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
