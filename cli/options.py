"""What every ``smartbrum`` command shares: one-line failures, time options, the settings and the
database engine.

The database stack is imported inside the functions that need it, so that ``smartbrum clear``
starts without it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from api.settings import Settings


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


def settings_or_fail() -> Settings:
    """The settings, or a one-line message naming the variable or file and key at fault."""
    from api.settings import describe_settings_error, get_settings

    try:
        return get_settings()
    except ValueError as error:  # pydantic's ValidationError and tomllib's errors are ValueErrors
        raise fail(f"settings: {describe_settings_error(error)}") from None


@contextmanager
def market_engine(settings: Settings) -> Iterator[Engine]:
    """The database engine, refusing a database whose schema is not up to date; closed after use."""
    from market.database import create_database_engine, head_revision, schema_revision

    engine = create_database_engine(settings.database_url)
    try:
        try:
            current, head = schema_revision(engine), head_revision(engine)
        except Exception as error:
            raise fail(f"database: cannot connect to {engine.url!r} ({type(error).__name__})") from None
        if current != head:
            raise fail(
                f"database: schema is at {current or 'nothing'}, not {head}; run 'smartbrum db upgrade'"
            )
        yield engine
    finally:
        engine.dispose()


def platform_now(value: str | None, name: str, settings: Settings) -> datetime:
    """The platform's time for a command: now, or the ``--now`` option's time.

    A time ahead of the real clock is refused, so that nothing is cleared before its gate closes
    or settled before its meter data is due, unless the settings declare a simulated clock
    (``SMARTBRUM_SIMULATED_CLOCK``).
    """
    real = datetime.now(UTC)
    moment = utc_option(value, name)
    if moment is None:
        return real
    if moment > real and not settings.simulated_clock:
        raise fail(
            f"{name}: {iso_utc(moment)} is ahead of the platform's clock ({iso_utc(real)}); only a "
            "platform on a simulated clock (SMARTBRUM_SIMULATED_CLOCK=true) runs ahead of it"
        )
    return moment
