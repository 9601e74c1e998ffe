"""A household's Bill: the statement per month (a line per day) and per day (a line per period),
every line explained in plain words, what is still pending, the saving against the tariffs alone
where the statement gives one, and both as CSV.

Built from :mod:`market.statements` exactly as ``GET /v1/statements/{month}`` and
``GET /v1/statements/days/{date}`` build theirs, and the CSV as ``smartbrum settlement
statement`` writes it: one rule, two faces. A household only ever sees its own statement.

May import :mod:`api.deps`, :mod:`market` and :mod:`web`'s own modules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlmodel import Session

from api.deps import PlatformDep
from market.intervals import LONDON
from market.statements import (
    AWAITING_METER_DATA,
    ESTIMATED,
    INTERVAL_STATUSES,
    NOT_SETTLED,
    SETTLED,
    IntervalFigures,
    Statement,
    StatementFigures,
    day_statement,
    day_statement_csv,
    statement,
    statement_csv,
)
from market.units import CP_PER_PENNY
from web.format import pounds
from web.rendering import TEMPLATES, render
from web.sessions import HouseholdPageDep, PageRefusedError

router = APIRouter(include_in_schema=False)
#: The months a statement may be asked for: the API's own pattern.
_MONTH = re.compile(r"(20[0-9]{2}|2100)-(0[1-9]|1[0-2])")
_FIRST_DAY, _LAST_DAY = date(2000, 1, 1), date(2100, 12, 31)

#: How a period stands, in words a household can act on (by :data:`INTERVAL_STATUSES`).
STATUS_WORDS = {
    SETTLED: "settled on your meter's readings",
    ESTIMATED: "settled on an estimate of your meter's energy, to be corrected when the readings arrive",
    AWAITING_METER_DATA: "your trades are settled; the rest waits for your meter's readings",
    NOT_SETTLED: "not settled yet",
}
_STATUS_SHORT = {
    SETTLED: "settled",
    ESTIMATED: "estimated",
    AWAITING_METER_DATA: "awaiting meter data",
    NOT_SETTLED: "not settled",
}


def pence(cp: int) -> Decimal:
    """Hundredths of a penny as pence, exactly."""
    return Decimal(cp) / CP_PER_PENNY


def signed_pounds(cp: int | None) -> str:
    """An amount in the statement's sign convention: ``+£1.20`` the household pays, ``−£0.40`` it
    is paid, ``£0.00`` nothing; ``–`` when there is none."""
    if cp is None:
        return "\u2013"
    text = pounds(pence(cp))
    return f"+{text}" if text[0] == "£" and text != "£0.00" else text


def kwh_of_wh(wh: int) -> str:
    """Energy in Wh as ``1.234 kWh`` (to the Wh, as the CSV has it)."""
    return f"{Decimal(wh) / 1000:.3f} kWh"


def standing(figures: StatementFigures) -> str:
    """How a day's (or a month's) periods stand, in words: ``all 48 periods settled on your
    meter's readings`` or ``46 settled, 2 awaiting meter data``."""
    counts = figures.intervals
    total = sum(counts.values())
    if total and counts[SETTLED] == total:
        return f"all {total} periods settled on your meter's readings"
    parts = [f"{counts[status]} {_STATUS_SHORT[status]}" for status in INTERVAL_STATUSES if counts[status]]
    return ", ".join(parts) if parts else "nothing to settle"


TEMPLATES.env.filters.update({"signed_pounds": signed_pounds, "kwh_of_wh": kwh_of_wh, "standing": standing})


@dataclass(frozen=True)
class Line:
    """One line of a statement, with what it means."""

    name: str
    energy_wh: int | None
    amount_cp: int
    meaning: str


def explained_lines(figures: StatementFigures) -> list[Line]:
    """The statement's lines in the order they add up to its total, each explained."""
    return [
        Line(
            "Bought locally",
            figures.bought_wh,
            figures.bought_cp,
            "Energy you bought from your neighbours through the local market, at the local price "
            "of each period as it cleared.",
        ),
        Line(
            "Sold locally",
            figures.sold_wh,
            figures.sold_cp,
            "Energy you sold to your neighbours through the local market, at the local price: you are paid.",
        ),
        Line(
            "Backstop import (imbalance)",
            figures.imported_wh,
            figures.imported_cp,
            "Where your meter shows you used more than you traded, the difference is bought for you "
            "from the energy company, the backstop supplier, at the import tariff.",
        ),
        Line(
            "Backstop export (imbalance)",
            figures.exported_wh,
            figures.exported_cp,
            "Where your meter shows you sent out more than you traded, the difference is sold for you "
            "to the backstop supplier at the export tariff: you are paid.",
        ),
        Line(
            "Platform fees",
            None,
            figures.fees_cp,
            "The market's fee per kWh you traded locally, bought plus sold.",
        ),
        Line(
            "VAT",
            None,
            figures.vat_cp,
            "VAT on what you are charged: local purchases, backstop imports and fees.",
        ),
    ]


def _refused_date() -> PageRefusedError:
    return PageRefusedError(404, "That is not a date this bill covers: use the links to move between days.")


def _month_of(platform: PlatformDep, month: str) -> tuple[date, date]:
    if not month:
        first = platform.clock.now().astimezone(LONDON).date().replace(day=1)
    elif _MONTH.fullmatch(month):
        first = date.fromisoformat(f"{month}-01")
    else:
        raise PageRefusedError(404, "That is not a month: use the links to move between months.")
    last = (first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
    return first, last


def _day_of(text: str) -> date:
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise _refused_date() from None
    if not _FIRST_DAY <= day <= _LAST_DAY or len(text) != 10:
        raise _refused_date()
    return day


def _statement(platform: PlatformDep, found: HouseholdPageDep, first: date, last: date) -> Statement:
    with Session(platform.engine) as session:
        return statement(
            session,
            found.participant.id,
            first_day=first,
            last_day=last,
            length_minutes=platform.settings.interval_minutes,
        )


def _day_rows(platform: PlatformDep, found: HouseholdPageDep, day: date) -> list[IntervalFigures]:
    rules = platform.settings.market_rules()
    with Session(platform.engine) as session:
        return day_statement(session, found.participant.id, day, length_minutes=rules.interval_minutes)


def _csv(text: str, filename: str) -> Response:
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{filename}"'},
    )


def _month_link(first: date) -> str:
    return f"{first:%Y-%m}"


@router.get("/bill")
def bill_page(
    request: Request,
    platform: PlatformDep,
    found: HouseholdPageDep,
    month: Annotated[str, Query(max_length=7)] = "",
) -> Response:
    """My statement for a month: a line per day, the month's lines explained, what is pending and
    the saving over the days settled on my meter's readings."""
    first, last = _month_of(platform, month)
    found_statement = _statement(platform, found, first, last)
    previous = (first - timedelta(days=1)).replace(day=1)
    following = last + timedelta(days=1)
    return render(
        request,
        "bill.html",
        {
            "title": f"Bill for {first:%B %Y}",
            "nav": "bill",
            "first": first,
            "month": _month_link(first),
            "statement": found_statement,
            "lines": explained_lines(found_statement.total),
            "previous_month": _month_link(previous) if previous >= _FIRST_DAY else None,
            "next_month": _month_link(following) if following <= _LAST_DAY else None,
            "status_words": STATUS_WORDS,
        },
    )


@router.get("/bill.csv")
def bill_csv(
    platform: PlatformDep, found: HouseholdPageDep, month: Annotated[str, Query(max_length=7)] = ""
) -> Response:
    """My month's statement as CSV: the same figures as the page, to a hundredth of a penny."""
    first, last = _month_of(platform, month)
    text = statement_csv(_statement(platform, found, first, last))
    return _csv(text, f"smartbrum-bill-{found.participant.id}-{first:%Y-%m}.csv")


@router.get("/bill/days/{day}")
def bill_day_page(request: Request, platform: PlatformDep, found: HouseholdPageDep, day: str) -> Response:
    """My statement for one day: a line per period, with how each stands and why."""
    on = _day_of(day)
    rows = _day_rows(platform, found, on)
    total = StatementFigures()
    for row in rows:
        total.add(row.figures)
    return render(
        request,
        "bill_day.html",
        {
            "title": f"Bill for {on.day} {on:%B %Y}",
            "nav": "bill",
            "on": on,
            "rows": rows,
            "total": total,
            "lines": explained_lines(total),
            "previous_day": on - timedelta(days=1) if on > _FIRST_DAY else None,
            "next_day": on + timedelta(days=1) if on < _LAST_DAY else None,
            "status_words": STATUS_WORDS,
        },
    )


@router.get("/bill/days/{day}/csv")
def bill_day_csv(platform: PlatformDep, found: HouseholdPageDep, day: str) -> Response:
    """My day's statement as CSV: a row per period, the same figures as the page."""
    on = _day_of(day)
    text = day_statement_csv(_day_rows(platform, found, on))
    return _csv(text, f"smartbrum-bill-{found.participant.id}-{on.isoformat()}.csv")
