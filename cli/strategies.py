"""``smartbrum strategy``: the operator sees and changes a household's strategy (what it wants the
platform to trade for it), as ``/v1/participants/{id}/strategy`` does.

Every change is a new version of the strategy, named ``cli``, and a row of the audit log, in one
transaction. ``--json`` prints what the API answers for the same version.
"""

from __future__ import annotations

import json
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from cli.options import fail, iso_utc, market_engine, settings_or_fail

if TYPE_CHECKING:
    from market.strategies import StoredStrategy

strategy_app = typer.Typer(
    help="Households' strategies: what the platform trades for them.", no_args_is_help=True
)
#: Who the versions and the audit log name for a change made here.
ACTOR = "cli"
Household = Annotated[str, typer.Argument(help="The household's id.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON, as the API answers.")]


def _public(stored: StoredStrategy) -> dict[str, Any]:
    from api.routes.strategies import strategy_public

    return strategy_public(stored).model_dump(mode="json")


def _print(stored: StoredStrategy, as_json: bool) -> None:
    """One version: JSON, or a table of its fields."""
    document = _public(stored)
    if as_json:
        print(json.dumps(document, indent=1))
        return
    state = "removed" if stored.removed else "paused" if stored.paused else "active"
    table = Table(
        "field",
        "value",
        title=f"{stored.participant_id}'s strategy, version {stored.version} ({state})",
    )
    for name in ("sell_floor_p_per_kwh", "buy_ceiling_p_per_kwh"):
        if document[name] is not None:
            table.add_row(name, document[name])
    for device in ("pv", "battery", "ev"):
        for name, value in (document[device] or {}).items():
            table.add_row(f"{device}.{name}", str(value))
    table.add_row("created", f"{iso_utc(stored.created_at)} by {stored.created_by}")
    Console().print(table)


def _read(path: Path) -> dict[str, Any]:
    """A strategy file's fields: TOML (``.toml``) or JSON (anything else)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise fail(f"{path}: cannot read it ({error.__class__.__name__})") from None
    try:
        document = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except ValueError as error:
        raise fail(f"{path}: not valid {'TOML' if path.suffix == '.toml' else 'JSON'}: {error}") from None
    if not isinstance(document, dict):
        raise fail(f"{path}: must hold the strategy's fields, not {type(document).__name__}")
    return document


def _change(participant_id: str, what: str, change: Any) -> StoredStrategy:
    """Run ``change(session, rules, now)`` in one transaction with its audit row; errors on stderr."""
    from market.access import record_audit
    from market.database import transaction
    from market.errors import MarketError
    from market.strategies import StrategyInvalidError

    settings = settings_or_fail()
    now = datetime.now(UTC)
    with market_engine(settings) as engine:
        try:
            with transaction(engine) as session:
                stored: StoredStrategy = change(session, settings.market_rules(), now)
                record_audit(
                    session,
                    at=now,
                    actor=ACTOR,
                    method="CLI",
                    path=f"strategy {what} {participant_id}",
                    status_code=200,
                    detail=f"strategy of {participant_id}: version {stored.version}",
                )
        except StrategyInvalidError as error:
            raise fail("; ".join(f"{field}: {reason}" for field, reason in error.problems)) from None
        except MarketError as error:
            raise fail(str(error)) from None
    return stored


@strategy_app.command("show")
def strategy_show(participant_id: Household, as_json: AsJson = False) -> None:
    """The household's strategy in force (paused or not); exit status 2 when it has none."""
    from sqlmodel import Session

    from market.errors import MarketError
    from market.participants import get_participant
    from market.strategies import strategy_of

    with market_engine(settings_or_fail()) as engine, Session(engine) as session:
        try:
            get_participant(session, participant_id)
        except MarketError as error:
            raise fail(str(error)) from None
        found = strategy_of(session, participant_id)
    if found is None:
        raise fail(f"strategy: household {participant_id!r} has no strategy")
    _print(found, as_json)


@strategy_app.command("set")
def strategy_set(
    participant_id: Household,
    file: Annotated[
        Path,
        typer.Option(
            "--file",
            help="The strategy as JSON or TOML (.toml): sell_floor_p_per_kwh, buy_ceiling_p_per_kwh, "
            "and optionally [pv], [battery], [ev] and paused.",
        ),
    ],
    as_json: AsJson = False,
) -> None:
    """State a household's strategy: a new version, in force at once (a paused one stays paused
    unless the file says ``paused``)."""
    from market.strategies import set_strategy

    document = _read(file)
    paused = document.pop("paused", None)
    if paused is not None and not isinstance(paused, bool):
        raise fail(f"paused: must be true or false, not {paused!r}")
    stored = _change(
        participant_id,
        "set",
        lambda session, rules, now: set_strategy(
            session,
            participant_id=participant_id,
            strategy=document,
            rules=rules,
            now=now,
            actor=ACTOR,
            paused=paused,
        ),
    )
    _print(stored, as_json)


def _pause_or_resume(participant_id: str, what: str, as_json: bool) -> None:
    from market.strategies import pause_strategy, resume_strategy

    change = pause_strategy if what == "pause" else resume_strategy
    stored = _change(
        participant_id,
        what,
        lambda session, rules, now: change(
            session, participant_id=participant_id, rules=rules, now=now, actor=ACTOR
        ),
    )
    _print(stored, as_json)


@strategy_app.command("pause")
def strategy_pause(participant_id: Household, as_json: AsJson = False) -> None:
    """Pause a household's strategy: no orders for it, its open ones before their gates cancelled."""
    _pause_or_resume(participant_id, "pause", as_json)


@strategy_app.command("resume")
def strategy_resume(participant_id: Household, as_json: AsJson = False) -> None:
    """Resume a household's paused strategy."""
    _pause_or_resume(participant_id, "resume", as_json)


@strategy_app.command("remove")
def strategy_remove(participant_id: Household) -> None:
    """Remove a household's strategy (its history stays); its open orders before their gates are cancelled."""
    from market.strategies import remove_strategy

    stored = _change(
        participant_id,
        "remove",
        lambda session, rules, now: remove_strategy(
            session, participant_id=participant_id, rules=rules, now=now, actor=ACTOR
        ),
    )
    print(f"strategy of {participant_id} removed (version {stored.version})")


@strategy_app.command("history")
def strategy_history_command(participant_id: Household, as_json: AsJson = False) -> None:
    """Every version of a household's strategy, oldest first: who changed it, when, and how."""
    from sqlmodel import Session

    from market.errors import MarketError
    from market.participants import get_participant
    from market.strategies import strategy_history

    with market_engine(settings_or_fail()) as engine, Session(engine) as session:
        try:
            get_participant(session, participant_id)
        except MarketError as error:
            raise fail(str(error)) from None
        versions = strategy_history(session, participant_id, limit=100_000)
    if as_json:
        print(json.dumps([_public(version) for version in versions], indent=1))
        return
    table = Table(
        "version",
        "state",
        "floor p/kWh",
        "ceiling p/kWh",
        "devices",
        "when (UTC)",
        "by",
        title=f"{len(versions)} version{'' if len(versions) == 1 else 's'} of {participant_id}'s strategy",
    )
    for version in versions:
        stated = version.strategy
        state = "removed" if stated is None else "paused" if version.paused else "active"
        devices = (
            ""
            if stated is None
            else ", ".join(name for name in ("pv", "battery", "ev") if getattr(stated, name) is not None)
        )
        table.add_row(
            str(version.version),
            state,
            "" if stated is None else str(stated.sell_floor_p_per_kwh),
            "" if stated is None else str(stated.buy_ceiling_p_per_kwh),
            devices,
            f"{version.created_at:%Y-%m-%d %H:%M}",
            version.created_by,
        )
    Console().print(table)


@strategy_app.command("plan")
def strategy_plan(participant_id: Household, as_json: AsJson = False) -> None:
    """The platform's latest plan for a household's strategy: when it was made, its expected cost,
    and each period's battery state of charge and EV charging; exit status 2 before the first."""
    from sqlmodel import Session

    from api.routes.strategies import plan_public
    from market.autotrading import stored_plan
    from market.errors import MarketError
    from market.participants import get_participant

    settings = settings_or_fail()
    with market_engine(settings) as engine, Session(engine) as session:
        try:
            get_participant(session, participant_id)
        except MarketError as error:
            raise fail(str(error)) from None
        found = stored_plan(session, participant_id, length_minutes=settings.interval_minutes)
    if found is None:
        raise fail(f"plan: household {participant_id!r} has no plan yet")
    document = plan_public(found).model_dump(mode="json")
    if as_json:
        print(json.dumps(document, indent=1))
        return
    battery = found.battery_start_kwh is not None
    table = Table(
        "date",
        "period",
        "start (UTC)",
        *(["battery at its end, kWh"] if battery else []),
        "EV charged, kWh",
        title=(
            f"{participant_id}'s plan, made {iso_utc(found.planned_at)}: expected cost "
            f"{document['expected_cost_p']} p"
            + (f", battery from {document['battery_start_kwh']} kWh" if battery else "")
        ),
    )
    for period in document["periods"]:
        table.add_row(
            period["settlement_date"],
            str(period["period"]),
            period["start"],
            *([period["battery_soc_kwh"]] if battery else []),
            period["ev_charge_kwh"],
        )
    Console().print(table)
