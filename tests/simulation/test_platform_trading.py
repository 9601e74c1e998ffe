"""Homes that trade through the platform, and the agents' twins of a ``both`` group's homes."""

from __future__ import annotations

import tomllib
from decimal import Decimal

import numpy as np
import pytest

from simulation import ScenarioError, parse_scenario, simulate

SCENARIO = """
name = "twins"
seed = 5
date = 2026-06-20
[tariff]
import_p_per_kwh = 24.5
export_p_per_kwh = 4.1
[network]
root = "GSP"
[[network.nodes]]
id = "FDR-1"
parent = "GSP"
import_capacity_kwh = 400
export_capacity_kwh = 300
[[households]]
count = 2
feeder = "FDR-1"
[[households]]
count = 3
feeder = "FDR-1"
trading = "both"
pv = { share = 1.0, kwp = [3, 4] }
battery = { count = 1, kwh = [5, 5], kw = [2.5, 2.5] }
ev = { count = 1, kwh_per_day = [8, 8] }
[[households]]
count = 1
feeder = "FDR-1"
trading = "platform"
battery = { count = 1, kwh = [6, 6], kw = [3, 3] }
"""


def _scenario(text: str = SCENARIO):  # type: ignore[no-untyped-def]
    return parse_scenario(tomllib.loads(text, parse_float=Decimal))


def test_a_both_group_has_a_twin_after_each_home_trading_through_the_agents() -> None:
    simulation = simulate(_scenario())
    ids = [home.id for home in simulation.households]
    assert ids == [
        "h0001",
        "h0002",
        "h0003",
        "h0003-agents",
        "h0004",
        "h0004-agents",
        "h0005",
        "h0005-agents",
        "h0006",
    ]
    trading = {home.id: home.trading for home in simulation.households}
    assert [trading[i] for i in ids] == ["agents"] * 2 + ["platform", "agents"] * 3 + ["platform"]
    ordered = {order.household_id for order in simulation.orders}
    assert ordered == {"h0001", "h0002", "h0003-agents", "h0004-agents", "h0005-agents"}
    for index, home in enumerate(simulation.households):
        if home.twin_of is None:
            continue
        original = ids.index(home.twin_of)
        for component in ("demand", "pv", "heat_pump"):
            assert np.array_equal(
                simulation.components_w[component][index], simulation.components_w[component][original]
            )
        assert (home.battery_kwh, home.has_ev, home.pv_kwp) == (
            simulation.households[original].battery_kwh,
            simulation.households[original].has_ev,
            simulation.households[original].pv_kwp,
        )


def test_a_platform_home_has_no_battery_or_ev_power_its_twin_does() -> None:
    simulation = simulate(_scenario())
    rows = {home.id: i for i, home in enumerate(simulation.households)}
    with_devices = [
        h for h in simulation.households if h.trading == "platform" and (h.battery_kwh or h.has_ev)
    ]
    assert {h.id for h in with_devices} >= {"h0006"}
    for home in with_devices:
        row = rows[home.id]
        assert not simulation.components_w["battery"][row].any()
        assert not simulation.components_w["ev"][row].any()
        net = (
            simulation.components_w["demand"][row]
            + simulation.components_w["heat_pump"][row]
            - simulation.components_w["pv"][row]
        )
        assert np.allclose(simulation.net_power_w[row], net)
        twin = rows.get(f"{home.id}-agents")
        if twin is not None:
            assert simulation.components_w["battery"][twin].any() or simulation.components_w["ev"][twin].any()
    assert not any(order.household_id == "h0006" for order in simulation.orders)


def test_an_unknown_way_of_trading_is_refused_naming_the_key() -> None:
    with pytest.raises(ScenarioError, match=r"households\[1\]\.trading"):
        _scenario(SCENARIO.replace('trading = "both"', 'trading = "robots"'))
