"""``smartbrum participant`` and ``smartbrum token``: households, the operator and API tokens."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from cli.options import fail, market_engine, settings_or_fail

participant_app = typer.Typer(help="Households and the operator.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens.", no_args_is_help=True)


@participant_app.command("add")
def participant_add(
    participant_id: Annotated[str, typer.Argument(help="The participant's id.")],
    name: Annotated[str, typer.Option(help="Display name.")],
    mpan: Annotated[str | None, typer.Option(help="A household's 13-digit MPAN core.")] = None,
    node: Annotated[str | None, typer.Option(help="The network node a household sits on.")] = None,
    operator: Annotated[bool, typer.Option("--operator", help="The energy company's account.")] = False,
) -> None:
    """Register a household (with --mpan and --node), or the operator (--operator)."""
    from market.database import transaction
    from market.errors import MarketError
    from market.participants import register_household, register_operator

    if not operator and (mpan is None or node is None):
        raise typer.BadParameter("a household needs --mpan and --node", param_hint="--mpan")
    now = datetime.now(UTC)
    with market_engine(settings_or_fail()) as engine:
        try:
            with transaction(engine) as session:
                if operator:
                    added = register_operator(
                        session, participant_id=participant_id, display_name=name, now=now
                    )
                else:
                    assert mpan is not None
                    assert node is not None
                    added = register_household(
                        session,
                        participant_id=participant_id,
                        display_name=name,
                        mpan=mpan,
                        node_id=node,
                        now=now,
                    )
        except MarketError as error:
            raise fail(str(error)) from None
    where = "the operator" if operator else f"on {added.node_id}, MPAN {added.mpan}"
    print(f"{added.kind} {added.id} ({added.display_name}) {where}")


@token_app.command("issue")
def token_issue(
    participant_id: Annotated[str, typer.Argument(help="The participant (a household or the operator).")],
    label: Annotated[str, typer.Option(help="What the token is for.")] = "",
) -> None:
    """Issue an API token; it is printed once and only its hash is kept."""
    from market.access import issue_token
    from market.database import transaction
    from market.errors import MarketError

    with market_engine(settings_or_fail()) as engine:
        try:
            with transaction(engine) as session:
                issued = issue_token(
                    session, participant_id=participant_id, now=datetime.now(UTC), label=label
                )
        except MarketError as error:
            raise fail(str(error)) from None
    print(issued.secret)
