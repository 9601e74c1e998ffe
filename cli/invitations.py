"""``smartbrum participant invite``: a one-time link for a household (or the operator) to set its
web password, printed on stdout and built on the public URL setting (SMARTBRUM_PUBLIC_URL)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from cli.options import fail, iso_utc, market_engine, settings_or_fail


def participant_invite(
    participant_id: Annotated[str, typer.Argument(help="The participant to invite.")],
) -> None:
    """Print a one-time invitation link to set a web password; it expires after
    SMARTBRUM_INVITATION_HOURS and a new one replaces it. Only its hash is kept."""
    from market.accounts import invite
    from market.database import transaction
    from market.errors import MarketError
    from web.rendering import invitation_link

    settings = settings_or_fail()
    with market_engine(settings) as engine:
        try:
            with transaction(engine) as session:
                issued = invite(
                    session,
                    participant_id=participant_id,
                    invited_by="cli",
                    now=datetime.now(UTC),
                    policy=settings.account_policy(),
                )
        except MarketError as error:
            raise fail(str(error)) from None
    print(invitation_link(settings.public_url, issued.secret))
    typer.echo(f"smartbrum: usable once, until {iso_utc(issued.expires_at)}", err=True)
