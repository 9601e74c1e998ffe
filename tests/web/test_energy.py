"""The household's Energy on both databases: who may see it, its meter's energy per period of a
day as the market stores it (as ``/v1/energy`` gives it), estimated periods said so, the latest
readings, day links, and the clock-change days."""

from __future__ import annotations

import re
from datetime import date, timedelta
from decimal import Decimal

from sqlmodel import Session

from market.database import transaction
from market.intervals import periods_of_day
from market.meter_data import energy_of_meters, store_readings
from market.participants import register_meter
from metering.readings import Quality, Reading
from tests.factories import refresh_interval_energy
from tests.web.conftest import NOW
from web.charts import PeriodEnergy, energy_chart
from web.format import kwh

DAY = date(2026, 12, 5)
PERIODS = periods_of_day(DAY)
#: The boundaries whose readings never came: more than an hour without one, so the periods
#: between are estimated.
MISSING = (20, 21, 22)


def meter_day(engine) -> None:  # type: ignore[no-untyped-def]
    """Meter M1 for H1 with readings at every boundary of :data:`DAY` but three, its energy
    derived, and three recent readings (one after the clock's now)."""
    with transaction(engine) as session:
        register_meter(
            session,
            meter_id="M1",
            participant_id="H1",
            host="10.0.0.1",
            port=502,
            unit_id=1,
            transport="tcp",
            model="sdm630",
            now=NOW - timedelta(days=3),
        )
        readings, counters = [], [100.0, 10.0]
        for i, period in enumerate([*PERIODS, None]):
            moment = PERIODS[-1].end_utc if period is None else period.start_utc
            if i not in MISSING:
                values = dict(zip(("import_kwh", "export_kwh"), counters, strict=True))
                readings.append(Reading("M1", moment, None, values, Quality.GOOD))
            counters = [round(counters[0] + 0.25, 3), round(counters[1] + (0.5 if 20 < i < 30 else 0), 3)]
        for minutes, quality in ((10, Quality.GOOD), (5, Quality.SUSPECT), (-1, Quality.GOOD)):
            values = {"import_kwh": 200.0 - minutes / 100, "export_kwh": 20.0}
            readings.append(Reading("M1", NOW - timedelta(minutes=minutes), None, values, quality))
        store_readings(session, readings)
        refresh_interval_energy(session, "M1", PERIODS, now=NOW)


def test_the_energy_page_for_each_role(web, engine):
    meter_day(engine)
    wrong = []
    for path in ("/energy", f"/energy?date={DAY}", "/energy?date=2026-10-25"):
        for who, status in {"none": 303, "H2": 200, "H1": 200, "OPS": 403}.items():
            response = web[who].client.get(path)
            if response.status_code != status:
                wrong.append((who, path, response.status_code, status))
    for path in ("/energy?date=2026-02-30", "/energy?date=yesterday", "/energy?date=1999-12-31"):
        if (status := web["H1"].client.get(path).status_code) != 404:
            wrong.append(("H1", path, status, 404))
    assert wrong == []
    # Another household sees none of H1's meter.
    other = web["H2"].client.get(f"/energy?date={DAY}").text
    assert "M1" not in other
    assert "No meter is registered for your home yet" in other
    assert "No data yet" in other


def test_a_days_energy_is_the_markets_with_estimates_said_so(web, engine):
    meter_day(engine)
    with Session(engine) as session:
        stored = energy_of_meters(session, meter_ids=["M1"], settlement_date=DAY, limit=100)
    assert any(e.estimated for e in stored)
    page = web["H1"].client.get(f"/energy?date={DAY}").text
    for e in stored:
        words = "Estimated" if e.estimated else "Measured"
        row = (
            f'<tr><th scope="row">{e.period.period}</th><td>{e.period.start_local:%H:%M}\u2013'
            f"{e.period.end_local:%H:%M}</td><td>{kwh(e.import_kwh)}</td><td>{kwh(e.export_kwh)}</td>"
        )
        assert re.search(re.escape(row) + rf"\s*<td>{words}</td>", page), e.period.period
    assert re.search(r'<rect class="bar-(import|export) estimated"', page)  # hatched (site.css)
    assert "Hatched bars: estimated" in page
    assert f'href="/energy?date={DAY - timedelta(days=1)}"' in page
    assert f'href="/energy?date={DAY + timedelta(days=1)}"' in page
    # The latest readings, newest first, up to the clock's now, with their quality.
    latest = web["H1"].client.get("/energy").text
    readings = re.findall(r'<tr><th scope="row">Sun 6 Dec 2026, (\d\d:\d\d)</th><td>([^<]*)</td>', latest)
    assert readings == [("11:55", "199.95 kWh"), ("11:50", "199.9 kWh")]
    assert "Suspect: the counters are fine" in latest


def test_a_clock_change_day_has_its_fifty_periods_with_their_zones(web):
    page = web["H1"].client.get("/energy?date=2026-10-25").text
    assert '<tr><th scope="row">50</th><td>23:30 GMT\u201300:00 GMT</td>' in page
    assert '<tr><th scope="row">4</th><td>01:30 BST\u201301:00 GMT</td>' in page


def test_the_chart_says_in_words_what_it_shows():
    periods = periods_of_day(DAY)[:3]
    chart = energy_chart(
        [
            PeriodEnergy(periods[0], Decimal("0.25"), Decimal(0), False),
            PeriodEnergy(periods[1], Decimal("0.5"), Decimal("1"), True),
            PeriodEnergy(periods[2], None, None, False),
        ],
        day="Saturday 5 December 2026",
    )
    assert chart.summary == (
        "Your meter's energy on Saturday 5 December 2026: energy known for 2 of 3 periods: 0.75 kWh "
        "imported, 1 kWh exported; 1 of those periods estimated. The table gives every period."
    )
    assert chart.directions == ["import", "import", "export"]
    assert chart.estimated == [False, True, True]
    export = chart.bars[2]
    assert export.y >= chart.zero_y  # below the line
    assert "estimated" in export.label
