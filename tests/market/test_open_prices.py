"""The public price feed's rules: a household's rates against what settlement charges, and the
periods a request names."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from itertools import pairwise

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from market.charges import IntervalInputs, SettlementTerms, TradeInput, household_account, settle_interval
from market.errors import MarketError
from market.open_prices import household_rates, periods_requested, pounds_per_kwh

TODAY = date(2026, 11, 21)


@pytest.mark.parametrize(
    ("price", "fee", "vat", "buy", "sell"),
    [
        # (12.5 + 0.1) x 1.05 = 13.23; 12.5 - 0.1 x 1.05 = 12.395
        ("12.5", "0.1", "0.05", "13.23", "12.395"),
        ("12.5", "0", "0.05", "13.125", "12.5"),
        ("12.5", "0.1", "0", "12.6", "12.4"),
        # A negative price: the buyer is paid 2 p (no VAT on that) and pays the fee with VAT; the
        # seller pays 2 p and the fee, with VAT on both.
        ("-2", "0.1", "0.05", "-1.895", "-2.205"),
        ("0", "0.1", "0.2", "0.12", "-0.12"),
    ],
)
def test_household_rates_by_hand(price, fee, vat, buy, sell):
    rates = household_rates(Decimal(price), vat_rate=Decimal(vat), platform_fee_p_per_kwh=Decimal(fee))
    assert (rates.buy_p_per_kwh, rates.sell_p_per_kwh) == (Decimal(buy), Decimal(sell))


def _net_paid_cp(lines, participant_id: str) -> int:  # type: ignore[no-untyped-def]
    account = household_account(participant_id)
    return sum(line.amount_cp for line in lines if line.debit == account) - sum(
        line.amount_cp for line in lines if line.credit == account
    )


@example(price=Decimal("1.10"), fee=Decimal("1.10"), vat=Decimal("0.2"), energy_wh=13150)
@given(
    price=st.decimals(min_value=-100, max_value=1000, places=2),
    fee=st.decimals(min_value=0, max_value=5, places=2),
    vat=st.sampled_from([Decimal(0), Decimal("0.05"), Decimal("0.2")]),
    energy_wh=st.integers(min_value=1, max_value=100_000),
)
def test_rates_are_what_settlement_charges_per_kwh(price, fee, vat, energy_wh):
    """A buyer and a seller at one node, each metered exactly what it traded: settlement's lines
    for each come to the feed's rate times the energy, within the rounding of its three lines.
    The trade and fee lines are each rounded to the hundredth of a penny (half a hundredth at most
    each); VAT is charged on those rounded lines, as an invoice does, so it carries their error
    times the VAT rate, plus half a hundredth of its own rounding: 1.5 + VAT rate hundredths in all
    (1.10 p and a 1.10 p fee at 20% on 13,150 Wh is 1.6 off, and right)."""
    terms = SettlementTerms(Decimal("24.5"), Decimal("4.1"), vat_rate=vat, platform_fee_p_per_kwh=fee)
    settled = settle_interval(
        IntervalInputs(
            trades=[
                TradeInput("B", "F1", "buy", energy_wh, price),
                TradeInput("S", "F1", "sell", energy_wh, price),
            ],
            edges=[],
            grid_import_wh=0,
            grid_export_wh=0,
            metered_wh={"B": energy_wh, "S": -energy_wh},
            estimated=frozenset(),
            terms=terms,
        )
    )
    rates = household_rates(price, vat_rate=vat, platform_fee_p_per_kwh=fee)
    # Wh x p/kWh / 10 = hundredths of a penny
    bound = Decimal("1.5") + vat
    assert abs(_net_paid_cp(settled.lines, "B") - energy_wh * rates.buy_p_per_kwh / 10) <= bound
    assert abs(-_net_paid_cp(settled.lines, "S") - energy_wh * rates.sell_p_per_kwh / 10) <= bound


def test_pounds_per_kwh_rounds_half_to_even_on_a_millionth():
    assert pounds_per_kwh(Decimal("13.23")) == Decimal("0.1323")
    assert pounds_per_kwh(Decimal("12.39505")) == Decimal("0.123950")  # 0.1239505: to even
    assert pounds_per_kwh(Decimal("12.39515")) == Decimal("0.123952")
    assert pounds_per_kwh(Decimal("-1.895")) == Decimal("-0.01895")


@pytest.mark.parametrize(
    ("start", "end", "count", "first", "last_end"),
    [
        (None, None, 96, datetime(2026, 11, 21, 0, tzinfo=UTC), datetime(2026, 11, 23, 0, tzinfo=UTC)),
        (date(2026, 10, 25), date(2026, 10, 25), 50, datetime(2026, 10, 24, 23, tzinfo=UTC), None),
        (date(2027, 3, 28), None, 46 + 48, datetime(2027, 3, 28, 0, tzinfo=UTC), None),
        (
            datetime(2026, 11, 21, 12, 29, 59, tzinfo=UTC),
            datetime(2026, 11, 21, 12, 30, 1, tzinfo=UTC),
            2,
            datetime(2026, 11, 21, 12, 0, tzinfo=UTC),
            datetime(2026, 11, 21, 13, 0, tzinfo=UTC),
        ),
    ],
)
def test_periods_requested(start, end, count, first, last_end):
    periods = periods_requested(start, end, today=TODAY, length_minutes=30)
    assert len(periods) == count
    assert periods[0].start_utc == first
    if last_end is not None:
        assert periods[-1].end_utc == last_end
    assert all(a.end_utc == b.start_utc for a, b in pairwise(periods))


@pytest.mark.parametrize(
    ("start", "end", "field"),
    [
        (date(2026, 11, 22), date(2026, 11, 21), "to"),
        (date(2026, 11, 21), date(2026, 11, 28), "to"),  # eight days
        (datetime(1999, 12, 31, 12, tzinfo=UTC), None, "from"),
        (None, datetime(2101, 1, 1, 12, tzinfo=UTC), "to"),
    ],
)
def test_periods_requested_refuses_naming_the_field(start, end, field):
    with pytest.raises(MarketError) as refused:
        periods_requested(start, end, today=TODAY, length_minutes=30)
    assert refused.value.field == field
