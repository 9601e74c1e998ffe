"""A household's Energy: its meters' interval energy per period of a chosen day (import, export,
estimated or actual) as a chart and a table, and the latest readings of its meters.

The same market functions as ``GET /v1/energy`` and ``GET /v1/readings`` (over the household's
own meters, as :func:`market.participants.list_meters` names them): one rule, two faces.

May import :mod:`api.deps`, :mod:`market` and :mod:`web`'s own modules.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlmodel import Session

from api.deps import PlatformDep
from market.intervals import LONDON, periods_of_day
from market.meter_data import StoredEnergy, StoredReading, energy_of_meters, list_readings
from market.participants import list_meters
from web.charts import PeriodEnergy, energy_chart
from web.format import day_name
from web.rendering import render
from web.sessions import HouseholdPageDep, PageRefusedError

router = APIRouter(include_in_schema=False)
_FIRST_DAY, _LAST_DAY = date(2000, 1, 1), date(2100, 12, 31)
#: How far back the latest readings are looked for, and how many of each meter's are shown.
READINGS_WINDOW = timedelta(hours=1)
LATEST_READINGS = 5
#: A day's periods at most (50 on the autumn clock change), per meter.
_DAY_PERIODS = 50


def per_period(day: date, length_minutes: int, stored: list[StoredEnergy]) -> list[PeriodEnergy]:
    """Each period of ``day`` with its energy summed over the meters (None where no meter has any
    yet), estimated if any part of it is."""
    by_period: dict[int, list[StoredEnergy]] = defaultdict(list)
    for energy in stored:
        by_period[energy.period.period].append(energy)
    rows = []
    for period in periods_of_day(day, length_minutes=length_minutes):
        found = by_period.get(period.period, [])
        rows.append(
            PeriodEnergy(
                period,
                sum((e.import_kwh for e in found), Decimal(0)) if found else None,
                sum((e.export_kwh for e in found), Decimal(0)) if found else None,
                any(e.estimated for e in found),
            )
        )
    return rows


@router.get("/energy")
def energy_page(
    request: Request,
    platform: PlatformDep,
    found: HouseholdPageDep,
    on: Annotated[str, Query(alias="date", max_length=10)] = "",
) -> Response:
    """My meters' energy per period of a day, as a chart and a table, and their latest readings."""
    now = platform.clock.now()
    today = now.astimezone(LONDON).date()
    day = today
    if on:
        try:
            day = date.fromisoformat(on)
        except ValueError:
            raise PageRefusedError(404, "That is not a date: use the links to move between days.") from None
        if not _FIRST_DAY <= day <= _LAST_DAY or len(on) != 10:
            raise PageRefusedError(404, "That is not a date: use the links to move between days.")
    length = platform.settings.interval_minutes
    latest: dict[str, list[StoredReading]] = {}
    with Session(platform.engine) as session:
        meters = [meter.id for meter in list_meters(session, participant_id=found.participant.id)]
        stored = energy_of_meters(
            session, meter_ids=meters, settlement_date=day, limit=_DAY_PERIODS * max(len(meters), 1)
        )
        for meter in meters:
            # Oldest first, as the API pages them: the window's last few are the latest.
            recent = list_readings(
                session, meter_ids=[meter], start=now - READINGS_WINDOW, end=now, limit=1000
            )
            latest[meter] = recent[-LATEST_READINGS:][::-1]
    energy = per_period(day, length, stored)
    return render(
        request,
        "energy.html",
        {
            "title": "Energy",
            "nav": "energy",
            "now": now,
            "day": day,
            "today": today,
            "meters": meters,
            "energy": energy,
            "chart": energy_chart(energy, day=day_name(day)),
            "latest": latest,
            "window_minutes": int(READINGS_WINDOW.total_seconds() // 60),
            "previous_day": day - timedelta(days=1) if day > _FIRST_DAY else None,
            "next_day": day + timedelta(days=1) if day < _LAST_DAY else None,
            "quality_words": QUALITY_WORDS,
        },
    )


#: A reading's quality (:class:`metering.readings.Quality`) in words.
QUALITY_WORDS = {
    "good": "good",
    "suspect": "suspect: the counters are fine, another value was dropped",
    "invalid": "invalid: a counter was wrong and is not used",
}
