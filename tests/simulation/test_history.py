"""The days before a scenario: the same homes, weather of their own, metered per period."""

from __future__ import annotations

import tomllib
from datetime import timedelta
from decimal import Decimal

import numpy as np
import pytest

from simulation import ScenarioError, metered_period_wh, parse_scenario, simulate, simulate_history

SCENARIO = """
name = "history"
seed = 7
date = 2026-06-20
history_days = 3
[tariff]
import_p_per_kwh = 24.5
export_p_per_kwh = 4.1
[demand]
pool_size = 2
[network]
root = "GSP"
[[network.nodes]]
id = "FDR-1"
parent = "GSP"
import_capacity_kwh = 400
export_capacity_kwh = 300
[[households]]
count = 3
feeder = "FDR-1"
occupants = [2, 2]
trading = "both"
pv = { share = 1.0, kwp = [3, 4] }
battery = { count = 1, kwh = [5, 5], kw = [2.5, 2.5] }
"""


def _scenario(text: str = SCENARIO):  # type: ignore[no-untyped-def]
    return parse_scenario(tomllib.loads(text, parse_float=Decimal))


def test_the_history_is_the_days_before_for_the_same_homes_run_by_their_agents() -> None:
    scenario = _scenario()
    day = simulate(scenario)
    history = simulate_history(scenario)
    assert history is not None
    assert history.start_utc + timedelta(days=3) == day.start_utc
    assert [p.settlement_date for p in history.periods[::48]] == [
        scenario.date - timedelta(days=d) for d in (3, 2, 1)
    ]
    # The homes as drawn for the day (no twins: every home runs as its agent runs it).
    platform_homes = [home for home in day.households if home.twin_of is None]
    assert [(h.id, h.pv_kwp, h.battery_kwh) for h in history.households] == [
        (h.id, h.pv_kwp, h.battery_kwh) for h in platform_homes
    ]
    assert {home.trading for home in history.households} == {"agents"}
    battery = next(i for i, h in enumerate(history.households) if h.battery_kwh)
    assert np.abs(history.components_w["battery"][battery]).sum() > 0


def test_the_history_has_weather_of_its_own() -> None:
    scenario = _scenario()
    day = simulate(scenario)
    history = simulate_history(scenario)
    assert history is not None
    # The same minute of the day under its own clouds: the day is never repeated in its history.
    last = history.components_w["pv"][0][-1440:]
    assert not np.allclose(last, day.components_w["pv"][0])


def test_no_history_days_no_history() -> None:
    assert simulate_history(_scenario(SCENARIO.replace("history_days = 3", "history_days = 0"))) is None
    with pytest.raises(ScenarioError, match="history_days"):
        _scenario(SCENARIO.replace("history_days = 3", "history_days = 29"))


def test_the_meter_counts_each_step_s_import_and_export_apart() -> None:
    history = simulate_history(_scenario())
    assert history is not None
    imported, exported = metered_period_wh(history, 0)
    parts = history.components_w
    net = parts["demand"][0] + parts["heat_pump"][0] + parts["battery"][0] + parts["ev"][0] - parts["pv"][0]
    # A half-hour of one-minute steps: Wh = W x 60 s / 3600.
    first = net[:30]
    assert imported[0] == round(float(np.clip(first, 0, None).sum()) / 60)
    assert exported[0] == round(float(np.clip(-first, 0, None).sum()) / 60)
    assert int(imported.sum() - exported.sum()) == pytest.approx(float(net.sum()) / 60, abs=len(imported))
    # Without its devices: its own demand and PV only.
    own_import, own_export = metered_period_wh(history, 0, with_devices=False)
    own = parts["demand"][0] + parts["heat_pump"][0] - parts["pv"][0]
    assert int(own_import.sum() - own_export.sum()) == pytest.approx(float(own.sum()) / 60, abs=len(imported))
