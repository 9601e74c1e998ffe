"""The strategy a demo home states is a body the API accepts (api.schemas.StrategyUpdate)."""

from __future__ import annotations

from datetime import time
from decimal import Decimal

from api.schemas import StrategyUpdate
from demo.scenario_run import strategy_body
from planning.strategy import ElectricVehicle, HomeBattery, Strategy


def test_the_body_has_the_ev_s_times_as_hh_mm_and_leaves_pausing_out() -> None:
    strategy = Strategy(
        sell_floor_p_per_kwh=Decimal("4.21"),
        buy_ceiling_p_per_kwh=Decimal("24.40"),
        battery=HomeBattery(
            capacity_kwh=Decimal("6.9"),
            charge_kw=Decimal(3),
            discharge_kw=Decimal(3),
            min_soc_percent=Decimal(0),
        ),
        ev=ElectricVehicle(
            charge_kw=Decimal(7),
            plugged_in_from=time(18, 25),
            departure=time(7, 40),
            energy_needed_kwh=Decimal("9.9"),
        ),
    )
    body = strategy_body(strategy)
    assert "paused" not in body
    assert (body["ev"]["plugged_in_from"], body["ev"]["departure"]) == ("18:25", "07:40")
    stated = StrategyUpdate.model_validate(body)
    assert stated.ev is not None
    assert stated.battery is not None
    assert stated.buy_ceiling_p_per_kwh == Decimal("24.40")
