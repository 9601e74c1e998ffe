"""A household's pages: Today (prices, open orders, what cleared) and Orders (place, amend, cancel,
outcomes and history), built from the same market functions the JSON API calls.

May import :mod:`api.deps`, :mod:`market` and :mod:`web`'s own modules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel import Session

from api.deps import PlatformDep
from market.clearing import list_trades
from market.database import transaction
from market.errors import ConflictError, MarketError, NotFoundError
from market.intervals import LONDON, InvalidPeriodError, SettlementPeriod, parse_period_key, periods_of_day
from market.orders import (
    amend_order,
    cancel_order,
    get_order,
    list_orders,
    order_history,
    place_order,
)
from market.prices import node_prices_over
from market.rules import MarketRules
from market.units import CP_PER_PENNY, money_cp
from web.charts import price_chart
from web.format import day_name, period_label
from web.rendering import render
from web.sessions import HouseholdPageDep, PageRefusedError, check_csrf, refuse_nul_in_forms

router = APIRouter(include_in_schema=False, dependencies=[Depends(refuse_nul_in_forms)])
FormText = Annotated[str, Form()]
_NUMBER = re.compile(r"-?[0-9]{1,9}(\.[0-9]{1,9})?")
#: Orders a day's list shows at most (ten open orders per period fill a day's 480).
_DAY_ORDERS = 1000


def _today(platform: PlatformDep) -> date:
    return platform.clock.now().astimezone(LONDON).date()


# --- Today -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TradeLine:
    period: SettlementPeriod
    side: str
    kwh: Decimal
    price_p_per_kwh: Decimal
    #: What the household pays (+) or is paid (-) for it, in pence (exact to 0.01 p).
    amount_p: Decimal


@router.get("/today")
def today_page(request: Request, platform: PlatformDep, found: HouseholdPageDep) -> Response:
    """Prices at my node today and tomorrow against the tariffs; my open orders and their gates;
    what cleared today and what it cost or earned."""
    rules = platform.settings.market_rules()
    now = platform.clock.now()
    me = found.participant
    today = _today(platform)
    days = []
    with Session(platform.engine) as session:
        for day in (today, today + timedelta(days=1)):
            periods = periods_of_day(day, length_minutes=rules.interval_minutes)
            prices = node_prices_over(session, node_id=me.node_id or "", periods=periods)
            days.append(
                {
                    "date": day,
                    "prices": prices,
                    "chart": price_chart(prices, node_id=me.node_id or "", day=day_name(day)),
                }
            )
        open_orders = [
            order
            for day in (today, today + timedelta(days=1))
            for order in list_orders(
                session, participant_id=me.id, settlement_date=day, status="open", limit=_DAY_ORDERS
            )
        ]
        trades = list_trades(session, participant_id=me.id, settlement_date=today, limit=_DAY_ORDERS)
    lines = [
        TradeLine(
            t.period,
            t.side,
            t.accepted_kwh,
            t.price_p_per_kwh,
            Decimal(money_cp(t.accepted_wh, t.price_p_per_kwh) * (1 if t.side == "buy" else -1))
            / CP_PER_PENNY,
        )
        for t in trades
    ]
    return render(
        request,
        "today.html",
        {
            "title": "Today",
            "nav": "today",
            "now": now,
            "days": days,
            "open_orders": [(o, rules.gate_closure_utc(o.period)) for o in open_orders],
            "lines": lines,
            "net_p": sum((line.amount_p for line in lines), Decimal(0)),
        },
    )


# --- Orders ----------------------------------------------------------------------------------


def _open_periods(platform: PlatformDep, rules: MarketRules) -> list[SettlementPeriod]:
    """The periods of today and tomorrow whose gate has not closed."""
    now = platform.clock.now()
    today = _today(platform)
    return [
        period
        for day in (today, today + timedelta(days=1))
        for period in periods_of_day(day, length_minutes=rules.interval_minutes)
        if rules.gate_closure_utc(period) > now
    ]


def _orders_page(
    request: Request,
    platform: PlatformDep,
    found: HouseholdPageDep,
    *,
    on: date | None = None,
    status: int = 200,
    **context: Any,
) -> Response:
    rules = platform.settings.market_rules()
    on = on or _today(platform)
    with Session(platform.engine) as session:
        orders = list_orders(
            session, participant_id=found.participant.id, settlement_date=on, limit=_DAY_ORDERS
        )
    form = {
        "interval": "",
        "side": "buy",
        "quantity_kwh": "",
        "price_p_per_kwh": "",
        **context.pop("form", {}),
    }
    return render(
        request,
        "orders.html",
        {
            "title": "Orders",
            "nav": "orders",
            "rules": rules,
            "on": on,
            "previous_day": on - timedelta(days=1),
            "next_day": on + timedelta(days=1),
            "orders": orders,
            "periods": _open_periods(platform, rules),
            "form": form,
            "errors": {},
            **context,
        },
        status=status,
    )


@router.get("/orders")
def orders_page(
    request: Request,
    platform: PlatformDep,
    found: HouseholdPageDep,
    on: Annotated[str, Query(alias="date", max_length=10)] = "",
    placed: Annotated[str, Query(max_length=40)] = "",
) -> Response:
    """Place an order; a day's orders with their outcomes."""
    day = None
    if on:
        try:
            day = date.fromisoformat(on)
        except ValueError:
            raise PageRefusedError(404, "That is not a date: use the links to move between days.") from None
    return _orders_page(request, platform, found, on=day, placed=placed)


@router.post("/orders")
def place_order_form(
    request: Request,
    platform: PlatformDep,
    found: HouseholdPageDep,
    csrf_token: FormText = "",
    interval: FormText = "",
    side: FormText = "",
    quantity_kwh: FormText = "",
    price_p_per_kwh: FormText = "",
) -> Response:
    """Place an order (as ``POST /v1/orders`` does); errors beside their fields, in plain words."""
    check_csrf(found, csrf_token)
    rules = platform.settings.market_rules()
    form = {
        "interval": interval,
        "side": side,
        "quantity_kwh": quantity_kwh,
        "price_p_per_kwh": price_p_per_kwh,
    }
    errors: dict[str, str] = {}
    period = None
    try:
        period = parse_period_key(interval, length_minutes=rules.interval_minutes)
    except InvalidPeriodError:
        errors["interval"] = "Choose a period."
    if side not in ("buy", "sell"):
        errors["side"] = "Choose whether to buy or sell."
    quantity = _number(quantity_kwh, "quantity_kwh", "an amount in kWh, like 1.5", errors)
    price = _number(price_p_per_kwh, "price_p_per_kwh", "a price in p/kWh, like 12.5", errors)
    if not errors and period is not None and quantity is not None and price is not None:
        try:
            with transaction(platform.engine) as session:
                order, _ = place_order(
                    session,
                    rules=rules,
                    participant_id=found.participant.id,
                    period=period,
                    side=side,
                    quantity_kwh=quantity,
                    price_p_per_kwh=price,
                    now=platform.clock.now(),
                )
        except MarketError as error:
            field, words = order_error_words(error, rules)
            errors[field] = words
        else:
            return RedirectResponse(
                f"/orders?date={order.period.settlement_date.isoformat()}&placed={order.id}", status_code=303
            )
    return _orders_page(request, platform, found, status=422, form=form, errors=errors)


def _number(text: str, field: str, what: str, errors: dict[str, str]) -> Decimal | None:
    text = text.strip()
    if not text:
        errors[field] = f"Enter {what}."
        return None
    if not _NUMBER.fullmatch(text):
        errors[field] = f"Enter {what}: digits, with a decimal point if needed."
        return None
    return Decimal(text)


def order_error_words(error: MarketError, rules: MarketRules) -> tuple[str, str]:
    """The form field a market refusal belongs to, and the refusal in plain words."""
    reason = error.reason
    if error.field == "quantity_kwh":
        return error.field, (
            f"The amount must be from {rules.min_quantity_kwh} to {rules.max_quantity_kwh} kWh, "
            "in steps of 0.001 kWh."
        )
    if error.field == "price_p_per_kwh":
        return error.field, (
            f"The price must be from {rules.min_price_p_per_kwh} to {rules.max_price_p_per_kwh} p/kWh, "
            "in steps of 0.01p."
        )
    if "gate closure" in reason or "has been cleared" in reason or "frozen" in reason:
        return "interval" if error.field == "interval" else "order", (
            "Too late: the gate for that period has closed, so its orders can no longer change."
        )
    if "open orders" in reason:
        return "interval", (
            f"You already have {rules.max_open_orders} open orders for that period, the most allowed. "
            "Amend or cancel one instead."
        )
    if "no network version" in reason:
        return "interval", "Orders for that period are not open yet."
    if isinstance(error, ConflictError):
        return "order", f"This order can no longer be changed: {reason}."
    return error.field if error.field in ("interval", "side") else "order", reason[:1].upper() + reason[
        1:
    ] + "."


def _order_page(
    request: Request,
    platform: PlatformDep,
    found: HouseholdPageDep,
    order_id: str,
    *,
    status: int = 200,
    **context: Any,
) -> Response:
    rules = platform.settings.market_rules()
    try:
        with Session(platform.engine) as session:
            order = get_order(session, order_id, participant_id=found.participant.id)
            history = order_history(session, order_id, participant_id=found.participant.id)
    except NotFoundError:
        raise PageRefusedError(404, "There is no such order among yours.") from None
    gate = rules.gate_closure_utc(order.period)
    now = platform.clock.now()
    form = {
        "quantity_kwh": f"{order.quantity_kwh.normalize():f}",
        "price_p_per_kwh": f"{order.price_p_per_kwh.normalize():f}",
        **context.pop("form", {}),
    }
    return render(
        request,
        "order.html",
        {
            "title": f"Order for {period_label(order.period)}",
            "nav": "orders",
            "order": order,
            "history": history,
            "gate": gate,
            "changeable": order.status == "open" and now < gate,
            "until_gate": gate - now,
            "form": form,
            "errors": {},
            **context,
        },
        status=status,
    )


@router.get("/orders/{order_id}")
def order_page(
    request: Request, platform: PlatformDep, found: HouseholdPageDep, order_id: str, changed: str = ""
) -> Response:
    """One order: its outcome, its history, and while its gate is open, amend and cancel."""
    return _order_page(request, platform, found, order_id[:64], changed=changed[:20])


@router.post("/orders/{order_id}/amend")
def amend_order_form(
    request: Request,
    platform: PlatformDep,
    found: HouseholdPageDep,
    order_id: str,
    csrf_token: FormText = "",
    quantity_kwh: FormText = "",
    price_p_per_kwh: FormText = "",
) -> Response:
    """Change an open order's amount or price (as ``PATCH /v1/orders/{id}`` does)."""
    check_csrf(found, csrf_token)
    rules = platform.settings.market_rules()
    errors: dict[str, str] = {}
    quantity = _number(quantity_kwh, "quantity_kwh", "an amount in kWh, like 1.5", errors)
    price = _number(price_p_per_kwh, "price_p_per_kwh", "a price in p/kWh, like 12.5", errors)
    if not errors:
        try:
            with transaction(platform.engine) as session:
                amend_order(
                    session,
                    rules=rules,
                    order_id=order_id,
                    participant_id=found.participant.id,
                    now=platform.clock.now(),
                    quantity_kwh=quantity,
                    price_p_per_kwh=price,
                )
        except NotFoundError:
            raise PageRefusedError(404, "There is no such order among yours.") from None
        except MarketError as error:
            field, words = order_error_words(error, rules)
            errors[field] = words
        else:
            return RedirectResponse(f"/orders/{order_id}?changed=amended", status_code=303)
    form = {"quantity_kwh": quantity_kwh, "price_p_per_kwh": price_p_per_kwh}
    return _order_page(request, platform, found, order_id, status=422, form=form, errors=errors)


@router.post("/orders/{order_id}/cancel")
def cancel_order_form(
    request: Request, platform: PlatformDep, found: HouseholdPageDep, order_id: str, csrf_token: FormText = ""
) -> Response:
    """Cancel an open order (as ``DELETE /v1/orders/{id}`` does)."""
    check_csrf(found, csrf_token)
    rules = platform.settings.market_rules()
    try:
        with transaction(platform.engine) as session:
            cancel_order(
                session,
                rules=rules,
                order_id=order_id,
                participant_id=found.participant.id,
                now=platform.clock.now(),
            )
    except NotFoundError:
        raise PageRefusedError(404, "There is no such order among yours.") from None
    except MarketError as error:
        _, words = order_error_words(error, rules)
        return _order_page(request, platform, found, order_id, status=409, errors={"order": words})
    return RedirectResponse(f"/orders/{order_id}?changed=cancelled", status_code=303)
