"""The comparison's arithmetic on cases worked by hand (demo.comparison)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from demo.comparison import (
    CarriedOver,
    adjusted_bill_cp,
    battery_grid_wh,
    oracle_bill_cp,
    tariff_bill_cp,
)
from market.charges import SettlementTerms
from planning.plan import HouseholdPlan, PlannedOrder, PlannedPeriod, Purpose, Side

TERMS = SettlementTerms(Decimal("24.5"), Decimal("4.1"), Decimal("0.05"), Decimal("0.1"))
START = datetime(2026, 6, 20, 11, 0, tzinfo=UTC)


def _period(buy_wh: int, sell_wh: int, orders: tuple[PlannedOrder, ...]) -> PlannedPeriod:
    return PlannedPeriod(START, buy_wh, sell_wh, 0, 0, 0, 0, Decimal(0), Decimal(0), Decimal(0), orders)


def test_the_tariff_bill_charges_vat_on_imports_only() -> None:
    # 2 kWh x 24.5 p = 49.00 p + 5% = 51.45 p; 1 kWh exported x 4.1 p = 4.10 p back.
    assert tariff_bill_cp([2000, -1000, 0], TERMS) == 5145 - 410


def test_the_oracle_trades_where_its_limit_clears_and_the_rest_is_imbalance() -> None:
    plan = HouseholdPlan(
        (
            # Buys 2 kWh bid at 20 p; the price was 12.50 p: it trades. 2 x 12.5 = 25.00 p, the fee
            # 2 x 0.1 = 0.20 p, VAT 5% of 25.20 = 1.26 p: 26.46 p.
            _period(2000, 0, (PlannedOrder(Side.BUY, 2000, Decimal("20.00"), Purpose.DEMAND),)),
            # Offers 1 kWh at 10 p; the price was 8 p: no trade, exported to the backstop at 4.1 p.
            _period(0, 1000, (PlannedOrder(Side.SELL, 1000, Decimal("10.00"), Purpose.SURPLUS),)),
            # Offers 1 kWh at 5 p into 8 p: sold for 8.00 p; the fee 0.10 p, its VAT 0.5 cp (half
            # to even: 0).
            _period(0, 1000, (PlannedOrder(Side.SELL, 1000, Decimal("5.00"), Purpose.SURPLUS),)),
        ),
        Decimal("10"),
        0,
    )
    bill = oracle_bill_cp("H1", "F1", plan, [Decimal("12.50"), Decimal("8.00"), Decimal("8.00")], TERMS)
    assert bill == 2646 - 410 + (-800 + 10 + 0)


@pytest.mark.parametrize(
    ("before", "after", "efficiency", "expected"),
    [
        (0, 900, 0.81, 1000),  # charging: 900 Wh stored over sqrt(0.81) = 0.9
        (900, 0, 0.81, -810),  # discharging: 900 Wh taken out x 0.9 reach the meter
        (500, 500, 0.9, 0),
    ],
)
def test_battery_energy_at_the_meter(before: int, after: int, efficiency: float, expected: int) -> None:
    assert battery_grid_wh(before, after, efficiency) == expected


def test_the_adjusted_bill_values_what_is_carried_over_at_the_later_price() -> None:
    # 2 kWh of EV energy still owed at 10 p: +20 p; 0.5 kWh more in the battery: -5 p.
    assert adjusted_bill_cp(10_000, CarriedOver(ev_short_wh=2000), Decimal(10)) == 12_000
    assert adjusted_bill_cp(10_000, CarriedOver(battery_gain_wh=500), Decimal(10)) == 9_500
    assert adjusted_bill_cp(10_000, CarriedOver(2000, 500), Decimal(10)) == 11_500
