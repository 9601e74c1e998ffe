"""``smartbrum participant`` and ``smartbrum token``: households, the operator and API tokens."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from cli.options import fail, iso_utc, market_engine, settings_or_fail

participant_app = typer.Typer(help="Households and the operator.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens.", no_args_is_help=True)


@participant_app.command("add")
def participant_add(
    participant_id: Annotated[str, typer.Argument(help="The participant's id.")],
    name: Annotated[str, typer.Option(help="Display name.")],
    mpan: Annotated[str | None, typer.Option(help="A household's 13-digit MPAN core.")] = None,
    node: Annotated[
        str | None,
        typer.Option(help="The network node a household sits on (a node of the network in force)."),
    ] = None,
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


@participant_app.command("list")
def participant_list(
    kind: Annotated[
        str | None, typer.Option(help="Only households or only the operator: household or operator.")
    ] = None,
    inactive: Annotated[bool, typer.Option("--inactive", help="Include deactivated households.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
) -> None:
    """List the participants: id, kind, name, MPAN, node and whether active."""
    from sqlmodel import Session

    from market.participants import HOUSEHOLD, OPERATOR, list_participants

    if kind is not None and kind not in (HOUSEHOLD, OPERATOR):
        raise typer.BadParameter(f"must be {HOUSEHOLD} or {OPERATOR}, not {kind!r}", param_hint="--kind")
    with market_engine(settings_or_fail()) as engine, Session(engine) as session:
        everyone = [p for p in list_participants(session, kind=kind) if p.active or inactive]
    if as_json:
        rows = [
            {
                "id": p.id,
                "kind": p.kind,
                "display_name": p.display_name,
                "mpan": p.mpan,
                "node": p.node_id,
                "active": p.active,
            }
            for p in everyone
        ]
        print(json.dumps(rows, indent=1))
        return
    table = Table(
        "id",
        "kind",
        "name",
        "MPAN",
        "node",
        "active",
        title=f"{len(everyone)} participant{'' if len(everyone) == 1 else 's'}",
    )
    for p in everyone:
        table.add_row(
            p.id, p.kind, p.display_name, p.mpan or "", p.node_id or "", "yes" if p.active else "no"
        )
    Console().print(table)


@participant_app.command("deactivate")
def participant_deactivate(
    participant_id: Annotated[str, typer.Argument(help="The household.")],
    reason: Annotated[str, typer.Option(help="Why, for the audit log.")] = "",
) -> None:
    """Deactivate a household: its tokens are revoked and its open orders cancelled, audited, at once.

    Orders past their gate closure stay in their book; its meters and history stay for settlement.
    """
    from market.database import transaction
    from market.errors import MarketError
    from market.households import deactivate_household

    settings = settings_or_fail()
    with market_engine(settings) as engine:
        try:
            with transaction(engine) as session:
                done = deactivate_household(
                    session,
                    participant_id=participant_id,
                    rules=settings.market_rules(),
                    now=datetime.now(UTC),
                    actor="cli",
                    reason=reason,
                )
        except MarketError as error:
            raise fail(str(error)) from None
    kept = f", {len(done.orders_kept)} past their gate kept" if done.orders_kept else ""
    print(
        f"household {done.participant_id} deactivated: {done.tokens_revoked} token(s) revoked, "
        f"{done.sessions_ended} web session(s) ended, "
        f"{len(done.orders_cancelled)} open order(s) cancelled{kept}"
    )


@token_app.command("list")
def token_list(
    participant_id: Annotated[
        str | None, typer.Option("--participant", help="Only this participant's.")
    ] = None,
    revoked: Annotated[bool, typer.Option("--revoked", help="Include revoked tokens.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
) -> None:
    """List API tokens (never their secrets): id, participant, label, issued and revoked."""
    from sqlmodel import Session

    from market.access import list_tokens

    with market_engine(settings_or_fail()) as engine, Session(engine) as session:
        tokens = list_tokens(session, participant_id=participant_id, include_revoked=revoked)
    if as_json:
        rows = [
            {
                "id": t.id,
                "participant_id": t.participant_id,
                "label": t.label,
                "created_at": iso_utc(t.created_at),
                "revoked_at": None if t.revoked_at is None else iso_utc(t.revoked_at),
            }
            for t in tokens
        ]
        print(json.dumps(rows, indent=1))
        return
    table = Table(
        "id",
        "participant",
        "label",
        "issued (UTC)",
        "revoked (UTC)",
        title=f"{len(tokens)} token{'' if len(tokens) == 1 else 's'}",
    )
    for t in tokens:
        revoked_at = "" if t.revoked_at is None else f"{t.revoked_at:%Y-%m-%d %H:%M}"
        table.add_row(str(t.id), t.participant_id, t.label, f"{t.created_at:%Y-%m-%d %H:%M}", revoked_at)
    Console().print(table)


@token_app.command("revoke")
def token_revoke(token_id: Annotated[int, typer.Argument(help="The token's id (see token list).")]) -> None:
    """Revoke an API token at once; revoking twice is harmless."""
    from market.access import revoke_token
    from market.database import transaction
    from market.errors import MarketError

    if not 1 <= token_id <= 2**31 - 1:
        raise typer.BadParameter(f"{token_id} is not a token id", param_hint="TOKEN_ID")
    with market_engine(settings_or_fail()) as engine:
        try:
            with transaction(engine) as session:
                revoke_token(session, token_id=token_id, now=datetime.now(UTC))
        except MarketError as error:
            raise fail(str(error)) from None
    print(f"token {token_id} revoked")
