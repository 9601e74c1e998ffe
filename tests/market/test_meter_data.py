"""Meter data on SQLite and PostgreSQL: batches stored once, energy revisions, counter events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise

import pytest
from sqlmodel import Session, func, select

from market.database import transaction
from market.intervals import period_at
from market.meter_data import (
    counter_readings_of_meters,
    derive_meter_energy,
    derive_revisited_estimates,
    energy_of_meters,
    estimates_to_revisit,
    kwh_to_wh,
    store_energy_of_meters,
    store_readings,
)
from market.participants import register_meter
from market.tables import MeterEventRow, MeterReadingRow
from metering.energy import derive_interval_energy
from metering.readings import Quality, Reading
from tests.factories import refresh_interval_energy, seed_market

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
FIRST = period_at(NOW)  # 12:00-12:30 UTC


@pytest.fixture
def metered(engine):
    with transaction(engine) as session:
        seed_market(session, now=NOW)
        register_meter(
            session,
            meter_id="M1",
            participant_id="H1",
            host="127.0.0.1",
            port=5020,
            unit_id=1,
            transport="tcp",
            model="sdm630",
            now=NOW,
        )
    return engine


def reading(minutes: float, import_kwh: float, export_kwh: float = 0.0, quality=Quality.GOOD) -> Reading:
    return Reading(
        meter_id="M1",
        polled_at=NOW + timedelta(minutes=minutes),
        meter_time=None,
        values={"import_kwh": import_kwh, "export_kwh": export_kwh, "power_w": 1200.0},
        quality=quality,
    )


def count(engine, table) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(table)).one()


@pytest.mark.parametrize(
    ("kwh", "wh"), [(1234.5677, 1234568), (0.0005, 0), (0.0015, 2), (100000.0078125, 100000008)]
)
def test_counters_are_kept_to_the_wh_half_even(kwh, wh):
    assert kwh_to_wh(kwh) == wh


def test_a_batch_stored_twice_is_stored_once(metered):
    batch = [reading(0, 100.0), reading(15, 100.25), reading(30, 100.5)]
    with transaction(metered) as session:
        assert store_readings(session, batch) == 3
    with transaction(metered) as session:
        store_readings(session, batch)
    assert count(metered, MeterReadingRow) == 3
    with Session(metered) as session:
        row = session.exec(select(MeterReadingRow).where(MeterReadingRow.import_wh == 100250)).one()
        assert '"power_w": 1200.0' in row.values_json


def test_a_failed_batch_leaves_nothing(metered):
    bad = reading(5, 100.0)
    object.__setattr__(bad, "meter_id", "NO-SUCH-METER")  # breaks the foreign key mid-batch
    with pytest.raises(Exception), transaction(metered) as session:  # noqa: B017, PT011
        store_readings(session, [reading(0, 100.0), bad])
    assert count(metered, MeterReadingRow) == 0


def test_estimates_become_actuals_as_a_new_revision(metered):
    """Readings to 12:40: 12:00-12:30 is measured (0.5 kWh); 12:30-13:00 is estimated, then actual."""
    with transaction(metered) as session:
        store_readings(session, [reading(0, 100.0, 1.0), reading(30, 100.5, 1.0), reading(40, 100.7, 1.1)])
        first = refresh_interval_energy(session, "M1", [FIRST, FIRST.next()], now=NOW)
    assert [(e.import_kwh, e.estimated, e.revision) for e in first] == [
        (Decimal("0.5"), False, 1),
        (first[1].import_kwh, True, 1),
    ]
    with transaction(metered) as session:
        store_readings(session, [reading(60, 101.3, 1.2)])
        second = refresh_interval_energy(session, "M1", [FIRST, FIRST.next()], now=NOW + timedelta(hours=1))
    assert [(e.import_kwh, e.export_kwh, e.estimated, e.revision) for e in second] == [
        (Decimal("0.5"), Decimal(0), False, 1),
        (Decimal("0.8"), Decimal("0.2"), False, 2),
    ]
    with Session(metered) as session:
        assert [e.revision for e in energy_of_meters(session, meter_ids=["M1"])] == [1, 2]


DAY = {"since": NOW - timedelta(hours=1), "before": NOW + timedelta(hours=2)}  # the periods looked at


def current_estimated(session, period) -> bool:
    return [e.estimated for e in energy_of_meters(session, meter_ids=["M1"]) if e.period == period] == [True]


def test_estimates_are_derived_again_once_later_readings_arrive(metered):
    """The meter goes quiet after 12:30: 12:30-13:00 and 13:00-13:30 are stored as estimates.
    Readings from 13:00 and 13:30 arrive late (a slow shard): the estimates are found, derived
    again and stored as measured revisions; an estimate with nothing after it is left alone."""
    second, third = FIRST.next(), FIRST.next().next()
    fourth = third.next()  # 13:30-14:00
    with transaction(metered) as session:
        store_readings(session, [reading(0, 100.0), reading(30, 100.5)])
        refresh_interval_energy(
            session, "M1", [FIRST.previous(), FIRST, second, third, fourth], now=NOW + timedelta(hours=2)
        )
    with Session(metered) as session:
        assert estimates_to_revisit(session, **DAY) == {}
    with transaction(metered) as session:
        store_readings(session, [reading(60, 101.25), reading(90, 101.75, 0.5)])
    with Session(metered) as session:
        revisit = estimates_to_revisit(session, **DAY)
        # 13:30-14:00 has no reading after its end yet, 11:30-12:00 none before its start (the
        # meter's first): nothing can improve them.
        assert revisit == {second: ["M1"], third: ["M1"]}
        assert current_estimated(session, FIRST.previous())
        assert current_estimated(session, fourth)
        derived = derive_revisited_estimates(session, revisit)
    with transaction(metered) as session:
        store_energy_of_meters(session, derived, now=NOW + timedelta(hours=2))
    with Session(metered) as session:
        current = {e.period: e for e in energy_of_meters(session, meter_ids=["M1"])}
        assert [
            (current[p].import_kwh, current[p].export_kwh, current[p].estimated) for p in (second, third)
        ] == [
            (Decimal("0.75"), Decimal(0), False),
            (Decimal("0.5"), Decimal("0.5"), False),
        ]
        assert [current[p].revision for p in (FIRST, second, third, fourth)] == [1, 2, 2, 1]
        assert estimates_to_revisit(session, **DAY) == {}


def test_a_counter_reset_is_recorded_once_and_never_negative(metered):
    with transaction(metered) as session:
        store_readings(session, [reading(0, 500.0), reading(10, 500.2), reading(20, 0.1), reading(30, 0.3)])
        energy = refresh_interval_energy(session, "M1", [FIRST], now=NOW)
        refresh_interval_energy(session, "M1", [FIRST], now=NOW)
    assert energy[0].import_kwh >= 0
    assert energy[0].estimated
    assert count(metered, MeterEventRow) == 1
    with Session(metered) as session:
        event = session.exec(select(MeterEventRow)).one()
    assert (event.counter, event.before_wh, event.after_wh) == ("import", 500200, 100)


def test_deriving_from_the_near_readings_gives_what_all_readings_give(metered):
    # A reading every 10 minutes for a day either side, a reset, and a three-hour gap: the
    # near-window derivation (with its fall-back to the whole rate window for estimates) must
    # agree with deriving from every stored reading.
    minutes = [m for m in range(-24 * 60, 24 * 60, 10) if not 60 <= m < 240]
    counters, batch = 500.0, []
    for m in minutes:
        counters = 0.2 if m == -300 else counters + 0.05 + (m % 70) / 1000
        batch.append(reading(m, round(counters, 3), round(m % 30 / 100, 3) + (m + 1440) / 1000))
    with transaction(metered) as session:
        store_readings(session, batch)
    periods = [period_at(NOW + timedelta(minutes=30 * k)) for k in range(-12, 12)]
    with Session(metered) as session:
        everything = counter_readings_of_meters(
            session, ["M1"], start=NOW - timedelta(days=3), end=NOW + timedelta(days=3)
        )["M1"]
        for pair in pairwise(periods):
            derived = derive_meter_energy(session, "M1", list(pair))
            expected = derive_interval_energy(everything, [(p.start_utc, p.end_utc) for p in pair])
            assert list(derived.energy) == expected, pair[0].key
        assert any(e.estimated for p in periods for e in derive_meter_energy(session, "M1", [p]).energy)
