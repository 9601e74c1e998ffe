"""A household's Settings: its trading strategy (stated, paused, resumed, removed) and its API
tokens for programs, listed (never their secrets), issued (the secret shown once) and revoked.

The same market functions as ``/v1/strategy`` and the operator's token routes (``POST
/v1/participants/{id}/tokens``, ``DELETE /v1/tokens/{id}``) and ``smartbrum token``: a household
sees and changes only its own strategy and tokens; another's token is answered as not found.

May import :mod:`api.deps`, :mod:`market` and :mod:`web`'s own modules.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel import Session

from api.deps import PlatformDep
from market.access import IssuedToken, issue_token, list_tokens, revoke_token
from market.autotrading import stored_plan
from market.database import transaction
from market.errors import MarketError
from market.strategies import (
    StoredStrategy,
    StrategyInvalidError,
    pause_strategy,
    remove_strategy,
    resume_strategy,
    set_strategy,
    strategy_of,
)
from web.rendering import render
from web.sessions import HouseholdPageDep, PageRefusedError, check_csrf, refuse_nul_in_forms

router = APIRouter(include_in_schema=False, dependencies=[Depends(refuse_nul_in_forms)])
FormText = Annotated[str, Form()]
#: A token label's longest (the market's limit).
LABEL_CHARACTERS = 100
_NO_SUCH_TOKEN = "There is no such token among yours."


def _settings_page(
    request: Request,
    platform: PlatformDep,
    found: HouseholdPageDep,
    *,
    status: int = 200,
    issued: IssuedToken | None = None,
    **context: Any,
) -> Response:
    with Session(platform.engine) as session:
        tokens = list_tokens(session, participant_id=found.participant.id)
        strategy = strategy_of(session, found.participant.id)
        plan = (
            stored_plan(session, found.participant.id, length_minutes=platform.settings.interval_minutes)
            if strategy is not None and strategy.strategy is not None and not strategy.paused
            else None
        )
    strategy_form = {**_strategy_form(strategy), **context.pop("strategy_form", {})}
    return render(
        request,
        "settings.html",
        {
            "title": "Settings",
            "nav": "settings",
            "tokens": tokens,
            "issued": issued,
            "label_characters": LABEL_CHARACTERS,
            "form": {"label": ""},
            "errors": {},
            "strategy": strategy,
            "plan": plan,
            "strategy_form": strategy_form,
            "strategy_errors": {},
            "strategy_fields": STRATEGY_FIELDS,
            **context,
        },
        status=status,
        # A new token's secret is in this page once: no cache may keep it.
        headers={"cache-control": "no-store"} if issued is not None else None,
    )


@router.get("/settings")
def settings_page(
    request: Request, platform: PlatformDep, found: HouseholdPageDep, revoked: str = "", strategy: str = ""
) -> Response:
    """My strategy and a form to state it, pause, resume or remove it; my API tokens, a form to
    issue one and a button to revoke each."""
    done = strategy if strategy in _STRATEGY_NOTICES else ""
    return _settings_page(
        request, platform, found, revoked=revoked[:20], strategy_done=_STRATEGY_NOTICES.get(done, "")
    )


@router.post("/settings/tokens")
def issue_token_form(
    request: Request,
    platform: PlatformDep,
    found: HouseholdPageDep,
    csrf_token: FormText = "",
    label: FormText = "",
) -> Response:
    """Issue a token for my programs (as ``POST /v1/participants/{id}/tokens`` does); its secret
    is shown in the answer and never again."""
    check_csrf(found, csrf_token)
    label = label.strip()
    errors = {}
    if len(label) > LABEL_CHARACTERS:
        errors["label"] = f"The label is too long: use at most {LABEL_CHARACTERS} characters."
    else:
        try:
            with transaction(platform.engine) as session:
                issued = issue_token(
                    session, participant_id=found.participant.id, now=platform.clock.now(), label=label
                )
        except MarketError as error:
            errors["label"] = error.reason[:1].upper() + error.reason[1:] + "."
        else:
            return _settings_page(request, platform, found, status=201, issued=issued)
    return _settings_page(request, platform, found, status=422, form={"label": label}, errors=errors)


@router.post("/settings/tokens/{token_id}/revoke")
def revoke_token_form(
    platform: PlatformDep, found: HouseholdPageDep, token_id: str, csrf_token: FormText = ""
) -> Response:
    """Revoke one of my tokens at once (as ``DELETE /v1/tokens/{id}`` does)."""
    check_csrf(found, csrf_token)
    if not token_id.isascii() or not token_id.isdigit() or len(token_id) > 18:
        raise PageRefusedError(404, _NO_SUCH_TOKEN)
    with transaction(platform.engine) as session:
        mine = list_tokens(session, participant_id=found.participant.id, include_revoked=True)
        if int(token_id) not in {token.id for token in mine}:
            raise PageRefusedError(404, _NO_SUCH_TOKEN)
        revoke_token(session, token_id=int(token_id), now=platform.clock.now())
    # This worker forgets the tokens it has checked, so the revocation holds here at once (as an
    # operator's revocation does).
    platform.tokens.clear()
    return RedirectResponse(f"/settings?revoked={int(token_id)}", status_code=303)


# --- the strategy ------------------------------------------------------------------------------

#: Each device's form fields: (form name, the strategy's field, label, hint). The form's names are
#: the strategy's paths with ``_`` for ``.``: ``battery_max_soc_percent`` is ``battery.max_soc_percent``.
STRATEGY_FIELDS: dict[str, list[tuple[str, str, str, str]]] = {
    "pv": [
        (
            "pv_kwp",
            "kwp",
            "Peak power (kWp)",
            "more than 0, at most 100; leave empty if you have no solar panels",
        ),
        ("pv_tilt_deg", "tilt_deg", "Tilt (degrees)", "0 lies flat, 90 is a wall; 35 if you leave it empty"),
        (
            "pv_azimuth_deg",
            "azimuth_deg",
            "Direction (degrees from north)",
            "180 faces south, 90 east, 270 west",
        ),
    ],
    "battery": [
        (
            "battery_capacity_kwh",
            "capacity_kwh",
            "Usable capacity (kWh)",
            "leave the battery fields empty if you have none",
        ),
        ("battery_charge_kw", "charge_kw", "Most charging power (kW)", "more than 0, at most 100"),
        ("battery_discharge_kw", "discharge_kw", "Most discharging power (kW)", "more than 0, at most 100"),
        ("battery_min_soc_percent", "min_soc_percent", "Lowest charge (%)", "10 if you leave it empty"),
        (
            "battery_max_soc_percent",
            "max_soc_percent",
            "Highest charge (%)",
            "above the lowest; 100 if empty",
        ),
        (
            "battery_round_trip_efficiency_percent",
            "round_trip_efficiency_percent",
            "Round-trip efficiency (%)",
            "90 if you leave it empty",
        ),
        (
            "battery_reserve_kwh",
            "reserve_kwh",
            "Reserve kept for you (kWh)",
            "never sold, for a power cut; 0 if empty",
        ),
    ],
    "ev": [
        (
            "ev_charge_kw",
            "charge_kw",
            "Charger power (kW)",
            "leave the car fields empty if you have no electric car",
        ),
        ("ev_plugged_in_from", "plugged_in_from", "Plugged in from", "each day, UK time, as HH:MM"),
        ("ev_departure", "departure", "Leaves at", "each day, UK time, as HH:MM; it is charged by then"),
        (
            "ev_energy_needed_kwh",
            "energy_needed_kwh",
            "Energy needed by then (kWh)",
            "what the charger can add while it is plugged in",
        ),
    ],
}
_PRICE_FIELDS = ("sell_floor_p_per_kwh", "buy_ceiling_p_per_kwh")
_TIME_FIELDS = ("ev_plugged_in_from", "ev_departure")
_LABELS = {
    "sell_floor_p_per_kwh": "Lowest price you sell at",
    "buy_ceiling_p_per_kwh": "Highest price you buy at",
    **{name: label for fields in STRATEGY_FIELDS.values() for name, _, label, _ in fields},
}
_NUMBER = re.compile(r"-?[0-9]{1,9}(\.[0-9]{1,9})?")
_TIME = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9](:00)?")
_STRATEGY_NOTICES = {
    "saved": "Your strategy is saved: the platform trades for you from its next plan.",
    "paused": "Your strategy is paused: the platform places no orders for you and cancelled its open ones.",
    "resumed": "Your strategy is running again from the platform's next plan.",
    "removed": "Your strategy is removed, and its open orders are cancelled. Its history is kept.",
}
#: The strategy's field names in refusals, in words.
_FIELD_WORDS = (
    ("plugged_in_from and departure", "plugging in and leaving"),
    ("plugged_in_from", "the time it is plugged in"),
    ("max_soc_percent", "the highest charge"),
    ("min_soc_percent", "the lowest charge"),
)
#: pydantic's words, in plain ones.
_PLAIN = (
    ("input should be greater than or equal to", "must be at least"),
    ("input should be less than or equal to", "must be at most"),
    ("input should be greater than", "must be more than"),
    ("input should be less than", "must be less than"),
    ("field required", "is needed"),
    ("decimal input should have no more than", "use at most"),
)


def _text(value: object) -> str:
    if isinstance(value, Decimal):
        return f"{value.normalize():f}"
    if hasattr(value, "strftime"):
        return str(value.strftime("%H:%M"))
    return "" if value is None else str(value)


def _strategy_form(stored: StoredStrategy | None) -> dict[str, str]:
    """The form's fields filled from the strategy in force (empty without one)."""
    form = dict.fromkeys(_LABELS, "")
    stated = None if stored is None else stored.strategy
    if stated is None:
        return form
    for name in _PRICE_FIELDS:
        form[name] = _text(getattr(stated, name))
    for device, fields in STRATEGY_FIELDS.items():
        part = getattr(stated, device)
        if part is not None:
            for name, attribute, _, _ in fields:
                form[name] = _text(getattr(part, attribute))
    return form


def _strategy_document(
    form: dict[str, str], current: StoredStrategy | None, errors: dict[str, str]
) -> dict[str, Any]:
    """The strategy's fields from the form: a device whose fields are all empty is none; an empty
    optional field takes its default. Refusals of the form itself go into ``errors``."""
    for name, value in form.items():
        if not value:
            continue
        pattern = _TIME if name in _TIME_FIELDS else _NUMBER
        if not pattern.fullmatch(value):
            what = "a time as HH:MM, like 18:30" if name in _TIME_FIELDS else "a number, like 12.5"
            errors[name] = f"{_LABELS[name]}: enter {what}."
    document: dict[str, Any] = {name: form[name] or None for name in _PRICE_FIELDS}
    for name in _PRICE_FIELDS:
        if not form[name]:
            errors[name] = f"{_LABELS[name]}: enter a price in p/kWh, like 12.5."
    for device, fields in STRATEGY_FIELDS.items():
        values = {attribute: form[name] for name, attribute, _, _ in fields if form[name]}
        if values:
            document[device] = values
    pv = document.get("pv")
    stated = None if current is None else current.strategy
    if pv is not None and stated is not None and stated.pv is not None:
        # Where the panels are is not on the form: kept as stated (the API may have set it).
        pv.setdefault("latitude", stated.pv.latitude)
        pv.setdefault("longitude", stated.pv.longitude)
    return document


def _plain_words(field: str, reason: str) -> tuple[str, str]:
    """The form field a refusal of the strategy belongs to, and the refusal in plain words."""
    name = field.replace(".", "_")
    if name not in _LABELS:  # a device as a whole (none of its fields given that it needs)
        device = name.split("_", 1)[0]
        name = next((n for n, _, _, _ in STRATEGY_FIELDS.get(device, []) if n), "sell_floor_p_per_kwh")
    for words, plain in _PLAIN:
        if reason.startswith(words):
            reason = plain + reason[len(words) :]
    for raw, words in _FIELD_WORDS:
        reason = reason.replace(raw, words)
    return name, f"{_LABELS[name]}: {reason}."


@router.post("/settings/strategy")
def set_strategy_form(
    request: Request,
    platform: PlatformDep,
    found: HouseholdPageDep,
    csrf_token: FormText = "",
    sell_floor_p_per_kwh: FormText = "",
    buy_ceiling_p_per_kwh: FormText = "",
    pv_kwp: FormText = "",
    pv_tilt_deg: FormText = "",
    pv_azimuth_deg: FormText = "",
    battery_capacity_kwh: FormText = "",
    battery_charge_kw: FormText = "",
    battery_discharge_kw: FormText = "",
    battery_min_soc_percent: FormText = "",
    battery_max_soc_percent: FormText = "",
    battery_round_trip_efficiency_percent: FormText = "",
    battery_reserve_kwh: FormText = "",
    ev_charge_kw: FormText = "",
    ev_plugged_in_from: FormText = "",
    ev_departure: FormText = "",
    ev_energy_needed_kwh: FormText = "",
) -> Response:
    """State my strategy (as ``PUT /v1/strategy`` does); errors beside their fields, in plain words."""
    check_csrf(found, csrf_token)
    given = locals()  # the form's fields, each a parameter named as in _LABELS
    form = {name: str(given[name]).strip()[:40] for name in _LABELS}
    errors: dict[str, str] = {}
    with Session(platform.engine) as session:
        current = strategy_of(session, found.participant.id)
    document = _strategy_document(form, current, errors)
    if not errors:
        try:
            with transaction(platform.engine) as session:
                set_strategy(
                    session,
                    participant_id=found.participant.id,
                    strategy=document,
                    rules=platform.settings.market_rules(),
                    now=platform.clock.now(),
                    actor=found.participant.id,
                )
        except StrategyInvalidError as error:
            for field, reason in error.problems:
                name, words = _plain_words(field, reason)
                errors.setdefault(name, words)
        except MarketError as error:
            name, words = _plain_words(error.field, error.reason)
            errors.setdefault(name, words)
        else:
            return RedirectResponse("/settings?strategy=saved", status_code=303)
    return _settings_page(request, platform, found, status=422, strategy_form=form, strategy_errors=errors)


def _strategy_change(platform: PlatformDep, found: HouseholdPageDep, change: Any, done: str) -> Response:
    try:
        with transaction(platform.engine) as session:
            change(
                session,
                participant_id=found.participant.id,
                rules=platform.settings.market_rules(),
                now=platform.clock.now(),
                actor=found.participant.id,
            )
    except MarketError:
        raise PageRefusedError(404, "You have no strategy: state one on your Settings page first.") from None
    return RedirectResponse(f"/settings?strategy={done}", status_code=303)


@router.post("/settings/strategy/pause")
def pause_strategy_form(
    platform: PlatformDep, found: HouseholdPageDep, csrf_token: FormText = ""
) -> Response:
    """Pause my strategy (as ``POST /v1/strategy/pause`` does)."""
    check_csrf(found, csrf_token)
    return _strategy_change(platform, found, pause_strategy, "paused")


@router.post("/settings/strategy/resume")
def resume_strategy_form(
    platform: PlatformDep, found: HouseholdPageDep, csrf_token: FormText = ""
) -> Response:
    """Resume my paused strategy (as ``POST /v1/strategy/resume`` does)."""
    check_csrf(found, csrf_token)
    return _strategy_change(platform, found, resume_strategy, "resumed")


@router.post("/settings/strategy/remove")
def remove_strategy_form(
    platform: PlatformDep, found: HouseholdPageDep, csrf_token: FormText = ""
) -> Response:
    """Remove my strategy (as ``DELETE /v1/strategy`` does)."""
    check_csrf(found, csrf_token)
    return _strategy_change(platform, found, remove_strategy, "removed")
