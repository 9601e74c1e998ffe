"""The settlement job on an accelerated clock: catch-up, then reconciliation when data changes."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlmodel import Session, select

from api.clock import AcceleratedClock
from api.scheduler import SettlementJobs
from market.database import transaction
from market.intervals import period_at
from market.meter_data import store_readings
from market.rules import MarketRules
from market.settlement import SettlementConfig, account_balances, runs_of
from market.tables import MeterReadingRow
from metering.readings import Quality, Reading
from tests.factories import refresh_interval_energy, seed_cleared_metered_interval

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
PERIOD = period_at(NOW + timedelta(hours=1))


def wait_for(condition, *, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_catches_up_then_reconciles_a_revised_reading(engine):
    seed_cleared_metered_interval(engine, PERIOD, now=NOW)
    clock = AcceleratedClock(PERIOD.end_utc + timedelta(minutes=15), speed=1800.0)  # a period a second
    settled: list[str] = []
    jobs = SettlementJobs(
        engine,
        MarketRules(),
        clock,
        config=SettlementConfig(vat_rate=Decimal("0.05")),
        delay=timedelta(minutes=10),
        on_settled=lambda outcomes: settled.extend(f"{o.run.period.key}:{o.run.run_type}" for o in outcomes),
    )
    try:
        caught_up = jobs.start()
        assert [(o.run.period, o.run.run_type) for o in caught_up] == [(PERIOD, "initial")]
        with transaction(engine) as session:  # a corrected reading: M2 used 1.5 kWh, not 1
            reading = Reading(
                "M2", PERIOD.end_utc, None, {"import_kwh": 51.5, "export_kwh": 0.0}, Quality.GOOD
            )
            old = session.exec(
                select(MeterReadingRow).where(
                    MeterReadingRow.meter_id == "M2", MeterReadingRow.polled_at == PERIOD.end_utc
                )
            ).one()
            session.delete(old)
            session.flush()
            store_readings(session, [reading])
            refresh_interval_energy(session, "M2", [PERIOD], now=clock.now())
        wait_for(lambda: f"{PERIOD.key}:reconcile" in settled)
    finally:
        jobs.shutdown()
    with Session(engine) as session:
        assert [r.run_type for r in runs_of(session, PERIOD)] == ["initial", "reconcile"]
        balances = account_balances(session, period=PERIOD)
    assert sum(balances.values()) == 0
    assert balances["pool"] == 0
