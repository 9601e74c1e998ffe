"""The polling job: emulated meters and the poller on one accelerated clock, on both databases."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from sqlmodel import Session, col, func, select

from api.clock import AcceleratedClock
from api.scheduler import MeterPolling
from market.database import transaction
from market.intervals import period_at
from market.participants import register_meter
from market.rules import MarketRules
from market.tables import IntervalEnergyRow, MeterReadingRow
from metering.emulator import Fault, SimulatedMeter
from metering.polling import PollSettings
from metering.registers import MAPS_DIR
from tests.factories import GatewayThread, seed_market

PERIOD = period_at(datetime(2026, 6, 21, 12, 0, tzinfo=UTC))


def wait_for(condition, *, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def readings(engine, meter_id: str | None = None) -> int:
    query = select(func.count()).select_from(MeterReadingRow)
    if meter_id is not None:
        query = query.where(MeterReadingRow.meter_id == meter_id)
    with Session(engine) as session:
        return session.exec(query).one()


def test_polls_on_a_cadence_stores_each_cycle_and_derives_energy(engine):
    # A minute of market time passes in 0.1 s; the clock starts 3 minutes before a period ends.
    clock = AcceleratedClock(PERIOD.end_utc - timedelta(minutes=3), speed=600.0)
    meters = [SimulatedMeter(1, "sdm630", clock=clock.now), SimulatedMeter(2, "em24", clock=clock.now)]
    dead = SimulatedMeter(3, "sdm120", clock=clock.now)
    dead.fault = Fault.NO_ANSWER
    with GatewayThread([*meters, dead]) as gateway:
        with transaction(engine) as session:
            seed_market(session, now=clock.now())
            for meter_id, home, unit, model in (
                ("M1", "H1", 1, "sdm630"),
                ("M2", "H2", 2, "em24"),
                ("M3", "H3", 3, "sdm120"),
            ):
                register_meter(
                    session,
                    meter_id=meter_id,
                    participant_id=home,
                    host="127.0.0.1",
                    port=gateway.port,
                    unit_id=unit,
                    transport="tcp",
                    model=model,
                    now=clock.now(),
                )
        cycles: list[int] = []
        polling = MeterPolling(
            engine,
            MarketRules(),
            clock,
            poll_settings=PollSettings(timeout_s=0.2, retries=0, breaker_failures=2, breaker_cooldown_s=3600),
            poll_seconds=60.0,
            meter_data_delay=timedelta(minutes=1),
            on_polled=lambda results, stored: cycles.append(stored),
        )
        polling.start()
        try:
            wait_for(lambda: len(cycles) >= 5)
            with Session(engine) as session:
                wait_for(
                    lambda: (
                        session.exec(
                            select(func.count())
                            .select_from(IntervalEnergyRow)
                            .where(col(IntervalEnergyRow.is_current))
                        ).one()
                        >= 4
                    )
                )
        finally:
            polling.shutdown()
    assert readings(engine, "M1") >= 5
    assert readings(engine, "M2") >= 5
    assert readings(engine, "M3") == 0  # never answered: nothing stored, never a zero reading
    assert all(stored == 2 for stored in cycles)
    with Session(engine) as session:
        energy = session.exec(
            select(IntervalEnergyRow).where(
                IntervalEnergyRow.meter_id == "M1", IntervalEnergyRow.interval_start_utc == PERIOD.start_utc
            )
        ).all()
    assert energy
    assert energy[-1].import_wh >= 0


def test_a_meter_that_cannot_be_polled_stops_no_other(engine, tmp_path):
    """A meter whose register map has gone (a user's map folder emptied after it was registered)
    is skipped with its reason every cycle; the other meters are read and stored as usual."""
    clock = AcceleratedClock(PERIOD.end_utc - timedelta(minutes=3), speed=600.0)
    maps = tmp_path / "maps"
    maps.mkdir()
    (maps / "mymeter.toml").write_text((MAPS_DIR / "sdm120.toml").read_text())
    with GatewayThread([SimulatedMeter(1, "sdm630", clock=clock.now)]) as gateway:
        with transaction(engine) as session:
            seed_market(session, now=clock.now())
            for meter_id, home, unit, model in (("M1", "H1", 1, "sdm630"), ("M2", "H2", 2, "mymeter")):
                register_meter(
                    session,
                    meter_id=meter_id,
                    participant_id=home,
                    host="127.0.0.1",
                    port=gateway.port,
                    unit_id=unit,
                    transport="tcp",
                    model=model,
                    now=clock.now(),
                    map_dirs=(maps,),
                )
        (maps / "mymeter.toml").unlink()
        cycles: list[tuple[list, int]] = []
        polling = MeterPolling(
            engine,
            MarketRules(),
            clock,
            poll_settings=PollSettings(timeout_s=0.5, retries=0),
            poll_seconds=60.0,
            meter_data_delay=timedelta(minutes=1),
            map_dirs=(maps,),
            on_polled=lambda results, stored: cycles.append((results, stored)),
        )
        polling.start()
        try:
            wait_for(lambda: len(cycles) >= 2)
        finally:
            polling.shutdown()
    for results, stored in cycles:
        outcome = {result.meter_id: result for result in results}
        assert outcome["M1"].ok
        assert outcome["M2"].skipped
        assert "not polled: no usable register map" in (outcome["M2"].error or "")
        assert "mymeter" in (outcome["M2"].error or "")
        assert stored == 1
    assert readings(engine, "M1") == len(cycles)
    assert readings(engine, "M2") == 0
