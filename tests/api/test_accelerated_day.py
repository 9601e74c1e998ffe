"""The platform end to end on an accelerated clock: households order over HTTP, emulated meters
are polled over loopback Modbus, the jobs clear at each gate closure and settle each period."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from api.app import build_jobs, create_app
from api.clock import AcceleratedClock
from api.deps import Platform
from api.settings import Settings
from market.access import issue_token
from market.database import transaction
from market.intervals import period_at
from market.participants import register_meter
from market.settlement import account_balances, runs_of
from market.tables import ClearingRunRow, MeterReadingRow
from metering.emulator import MeterProfile, SimulatedMeter
from tests.factories import GatewayThread, seed_market

START = datetime(2026, 6, 21, 12, 0, tzinfo=UTC)
PERIODS = [period_at(START + timedelta(hours=1, minutes=30 * i)) for i in range(3)]


def wait_for(condition, *, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_orders_meters_clearing_and_settlement_on_one_clock(engine, database_url):
    clock = AcceleratedClock(START, speed=1200.0)  # a 30-minute period passes in 1.5 s
    meters = [
        SimulatedMeter(1, "sdm630", MeterProfile(seed=1, peak_load_w=4000), clock=clock.now),
        SimulatedMeter(2, "sdm120", MeterProfile(seed=2, peak_load_w=2000, pv_peak_w=4000), clock=clock.now),
        SimulatedMeter(3, "em24", MeterProfile(seed=3, peak_load_w=1500), clock=clock.now),
    ]
    with GatewayThread(meters) as gateway:
        with transaction(engine) as session:
            seed_market(session, now=START)
            tokens = {
                home: issue_token(session, participant_id=home, now=START).secret
                for home in ("H1", "H2", "H3")
            }
            for unit, home in enumerate(("H1", "H2", "H3"), start=1):
                register_meter(
                    session,
                    meter_id=f"M{unit}",
                    participant_id=home,
                    host="127.0.0.1",
                    port=gateway.port,
                    unit_id=unit,
                    transport="tcp",
                    model=meters[unit - 1].model,
                    now=START,
                )
        settings = Settings(database_url=database_url, meter_timeout_s=0.5, poll_seconds=60)
        platform = Platform(engine=engine, settings=settings, clock=clock)
        platform.jobs = build_jobs(platform)
        with TestClient(create_app(platform)) as api:
            for period in PERIODS:
                for home, side, price in (("H1", "buy", "20"), ("H2", "sell", "6"), ("H3", "buy", "15")):
                    order = {
                        "interval": period.key,
                        "side": side,
                        "quantity_kwh": "0.8",
                        "price_p_per_kwh": price,
                    }
                    placed = api.post(
                        "/v1/orders", json=order, headers={"Authorization": f"Bearer {tokens[home]}"}
                    )
                    assert placed.status_code == 201, placed.text

            def settled() -> bool:
                with Session(engine) as session:
                    return all(runs_of(session, period) for period in PERIODS)

            wait_for(settled)
    with Session(engine) as session:
        cleared = session.exec(select(ClearingRunRow).where(col(ClearingRunRow.is_current))).all()
        keys = [f"{run.settlement_date}/{run.period}" for run in cleared]
        assert len(keys) == len(set(keys))  # each interval cleared once
        assert {period.key for period in PERIODS} <= set(keys)
        assert next(run for run in cleared if run.period == PERIODS[0].period).orders == 3
        assert session.exec(select(MeterReadingRow)).first() is not None
        for period in PERIODS:
            runs = runs_of(session, period)
            assert runs[0].run_type == "initial"
            assert runs[0].status == "complete", runs[0].pending
            balances = account_balances(session, period=period)
            assert sum(balances.values()) == 0
            assert balances.get("pool", 0) == 0
