"""The comparison's arithmetic on cases worked by hand (demo.comparison)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from demo.comparison import (
    CarriedOver,
    adjusted_bill_cp,
    oracle_bill_cp,
    tariff_bill_cp,
    trading_band,
)
from market.charges import IntervalInputs, SettlementTerms, TradeInput, household_account, settle_interval
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


def test_the_adjusted_bill_values_what_is_carried_over_at_the_later_price() -> None:
    # 2 kWh of EV energy still owed at 10 p: +20 p; 0.5 kWh more in the battery: -5 p.
    assert adjusted_bill_cp(10_000, CarriedOver(ev_short_wh=2000), Decimal(10)) == 12_000
    assert adjusted_bill_cp(10_000, CarriedOver(battery_gain_wh=500), Decimal(10)) == 9_500
    assert adjusted_bill_cp(10_000, CarriedOver(2000, 500), Decimal(10)) == 11_500


@pytest.mark.parametrize(
    ("fee", "vat", "ceiling", "floor"),
    [
        # 24.5 - 0.1 = 24.40; 4.1 + 0.1 x 1.05 = 4.205, up to 4.21.
        ("0.1", "0.05", "24.40", "4.21"),
        ("0", "0.05", "24.50", "4.10"),
        # 24.5 - 0.333 = 24.167, down to 24.16; 4.1 + 0.333 x 1.2 = 4.4996, up to 4.50.
        ("0.333", "0.2", "24.16", "4.50"),
    ],
)
def test_the_band_is_where_a_local_trade_after_its_charges_meets_the_tariff(
    fee: str, vat: str, ceiling: str, floor: str
) -> None:
    assert trading_band(Decimal("24.5"), Decimal("4.1"), Decimal(fee), Decimal(vat)) == (
        Decimal(ceiling),
        Decimal(floor),
    )


def test_a_fill_at_the_band_s_edges_never_loses_to_the_tariff_by_the_settlement_s_rules() -> None:
    ceiling, floor = trading_band(
        TERMS.import_p_per_kwh, TERMS.export_p_per_kwh, TERMS.platform_fee_p_per_kwh, TERMS.vat_rate
    )
    # 10 kWh bought at the ceiling costs, fee and VAT in, no more than 10 kWh imported on the tariff;
    # 10 kWh sold at the floor earns, its fee's VAT paid, no less than 10 kWh exported.
    bought = _bill(TradeInput("H1", "F1", "buy", 10_000, ceiling), metered_wh=10_000)
    sold = _bill(TradeInput("H1", "F1", "sell", 10_000, floor), metered_wh=-10_000)
    assert bought <= tariff_bill_cp([10_000], TERMS)
    assert sold <= tariff_bill_cp([-10_000], TERMS)


def _bill(trade: TradeInput, *, metered_wh: int) -> int:
    settled = settle_interval(IntervalInputs([trade], (), 0, 0, {"H1": metered_wh}, frozenset(), TERMS))
    account = household_account("H1")
    return sum(
        line.amount_cp if line.debit == account else -line.amount_cp
        for line in settled.lines
        if account in (line.debit, line.credit)
    )
