"""The forecast's history read from a real database (SQLite and PostgreSQL): one query for every
household, only current revisions of 30-minute energy within the forecast's windows, a
household's meters summed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest
import sqlalchemy as sa

from market.database import transaction
from market.forecasts import forecast_windows, read_forecast_histories
from market.intervals import period_at
from market.participants import register_meter, remove_meter
from market.tables import IntervalEnergyRow
from planning.forecast import (
    ForecastSettings,
    HouseholdHistory,
    MeterHistory,
    forecast_households,
)
from planning.strategy import PvArray
from tests.factories import register_street_meters, seed_market

NOW = datetime(2026, 6, 20, 9, 0, tzinfo=UTC)
HALF_HOUR = timedelta(minutes=30)
TARGETS = [NOW + i * HALF_HOUR for i in range(12)]


def energy_row(meter: str, start: datetime, import_wh: int, export_wh: int = 0, **fields) -> dict:  # type: ignore[no-untyped-def]
    period = period_at(start, length_minutes=fields.get("length_minutes", 30))
    return {
        "meter_id": meter,
        "interval_start_utc": period.start_utc,
        "length_minutes": period.length_minutes,
        "settlement_date": period.settlement_date,
        "period": period.period,
        "import_wh": import_wh,
        "export_wh": export_wh,
        "estimated": fields.get("estimated", False),
        "revision": fields.get("revision", 1),
        "is_current": fields.get("is_current", True),
        "computed_at": NOW,
    }


@pytest.fixture
def street(engine):
    """H1..H3 with meters M1..M3; H1 also had M0, replaced (deactivated) but with history."""
    with transaction(engine) as session:
        seed_market(session, now=NOW - timedelta(days=60))
        register_meter(
            session,
            meter_id="M0",
            participant_id="H1",
            host="10.0.0.2",
            port=502,
            unit_id=1,
            transport="tcp",
            model="sdm630",
            now=NOW - timedelta(days=60),
        )
        register_street_meters(session, now=NOW - timedelta(days=60))
    return engine


def insert(engine, rows: list[dict]) -> None:  # type: ignore[no-untyped-def]
    with transaction(engine) as session:
        session.execute(sa.insert(IntervalEnergyRow.__table__), rows)  # type: ignore[attr-defined]


def every_period(days: int) -> list[datetime]:
    return [NOW - (i + 1) * HALF_HOUR for i in range(days * 48)][::-1]


def test_windows_cover_the_last_day_and_each_lag_day_with_a_margin() -> None:
    settings = ForecastSettings(recent_days=2, same_weekday_weeks=1)
    windows = forecast_windows(TARGETS, settings=settings)
    end = TARGETS[-1] + HALF_HOUR
    margin = timedelta(minutes=90)
    assert windows == [
        (NOW - timedelta(days=7) - margin, end - timedelta(days=7) + margin),
        (NOW - timedelta(days=2) - margin, end - timedelta(days=2) + margin),
        (NOW - timedelta(days=1) - margin, NOW),  # lag 1 and the last day, merged
    ]
    assert forecast_windows([]) == []


def test_one_query_reads_every_households_history(street) -> None:  # type: ignore[no-untyped-def]
    starts = every_period(30)
    rows = [energy_row("M1", s, 200) for s in starts]
    rows += [energy_row("M2", s, 300, 10) for s in starts]
    # H1's old meter M0 overlaps M1 for a day (a second supply, say): summed.
    rows += [energy_row("M0", s, 50) for s in starts[-48:]]
    # Ignored: a retired revision, a 15-minute interval, anything from the first target on.
    rows += [energy_row("M3", starts[-1], 9999, revision=1, is_current=False)]
    rows += [energy_row("M3", starts[-1], 100, revision=2, estimated=True)]
    rows += [energy_row("M3", starts[-2], 777, length_minutes=15)]
    rows += [energy_row("M1", NOW + i * HALF_HOUR, 5000) for i in range(4)]
    insert(street, rows)
    with transaction(street) as session:
        remove_meter(session, meter_id="M0")  # deactivated: its history still counts
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        statements.append(statement)

    pv = PvArray(kwp=Decimal(3))
    sa.event.listen(street, "before_cursor_execute", count)
    try:
        with transaction(street) as session:
            histories = read_forecast_histories(
                session, period_starts_utc=TARGETS, pv_by_household={"H2": pv}
            )
    finally:
        sa.event.remove(street, "before_cursor_execute", count)
    reads = [s for s in statements if "interval_energy" in s]
    assert len(reads) == 1
    by_id = {h.household_id: h for h in histories}
    assert list(by_id) == ["H1", "H2", "H3"]
    assert by_id["H2"].pv == pv
    assert by_id["H1"].pv is None

    windows = forecast_windows(TARGETS)
    in_windows = [s for s in starts if any(a <= s < b for a, b in windows)]
    h1 = by_id["H1"].history
    assert [datetime.fromtimestamp(int(s), UTC) for s in h1.start_s] == in_windows
    last_day = set(starts[-48:])
    assert list(h1.import_wh) == [250 if s in last_day else 200 for s in in_windows]
    assert not h1.estimated.any()
    h2 = by_id["H2"].history
    assert set(h2.import_wh) == {300}
    assert set(h2.export_wh) == {10}
    h3 = by_id["H3"].history
    assert list(h3.import_wh) == [100]
    assert list(h3.estimated) == [True]


def test_the_database_gives_the_forecast_of_the_windowed_history(street) -> None:  # type: ignore[no-untyped-def]
    """Forecasting from what the database returned and from the month in memory cut to the
    windows gives the same Wh: nothing is lost or changed on the way."""
    rng = np.random.default_rng(3)
    starts = every_period(30)
    imports = rng.integers(50, 900, len(starts))
    exports = rng.integers(0, 400, len(starts))
    insert(street, [energy_row("M2", s, int(i), int(e)) for s, i, e in zip(starts, imports, exports)])
    pv = PvArray(kwp=Decimal("3.6"))
    with transaction(street) as session:
        (read,) = read_forecast_histories(
            session, period_starts_utc=TARGETS, pv_by_household={"H2": pv}, household_ids=["H2"]
        )
    assert len(read.history) < len(starts)
    whole = HouseholdHistory(
        "H2",
        MeterHistory.from_periods((s, int(i), int(e), False) for s, i, e in zip(starts, imports, exports)),
        pv,
    )
    windows = forecast_windows(TARGETS)
    keep = np.array([any(a <= s < b for a, b in windows) for s in starts])
    windowed = HouseholdHistory(
        "H2",
        MeterHistory(
            whole.history.start_s[keep],
            whole.history.import_wh[keep],
            whole.history.export_wh[keep],
            whole.history.estimated[keep],
        ),
        pv,
    )
    (from_database,) = forecast_households([read], TARGETS)
    assert from_database == forecast_households([windowed], TARGETS)[0]


def test_households_without_data_get_an_empty_history(street) -> None:  # type: ignore[no-untyped-def]
    with transaction(street) as session:
        histories = read_forecast_histories(session, period_starts_utc=TARGETS, household_ids=["H3", "H1"])
    assert [h.household_id for h in histories] == ["H1", "H3"]
    assert all(len(h.history) == 0 for h in histories)
    (forecast, _) = forecast_households(histories, TARGETS)
    assert not forecast.from_history
