"""A node's local prices beside the tariffs in force, period by period, on both databases."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from market.clearing import clear_interval
from market.database import transaction
from market.intervals import periods_of_day
from market.network import set_tariff
from market.prices import node_prices_over
from market.rules import MarketRules
from tests.factories import seed_crossing_orders

DAY = date(2026, 12, 6)
NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def test_each_period_has_its_local_price_once_cleared_and_the_tariff_in_force(engine):
    periods = periods_of_day(DAY)
    seed_crossing_orders(engine, periods[20], now=NOW)
    clear_interval(
        engine, period=periods[20], rules=MarketRules(), now=periods[20].start_utc, triggered_by="test"
    )
    with transaction(engine) as session:
        set_tariff(
            session,
            import_p_per_kwh=Decimal("30"),
            export_p_per_kwh=Decimal("5"),
            effective_from_utc=periods[30].start_utc + timedelta(minutes=10),  # within period 31
            now=NOW,
        )
        found = node_prices_over(session, node_id="F1", periods=periods)
        elsewhere = node_prices_over(session, node_id="NOWHERE", periods=periods[20:21])
    assert [p.period for p in found] == periods
    assert [i for i, p in enumerate(found) if p.local_p_per_kwh is not None] == [20]
    assert Decimal(5) <= found[20].local_p_per_kwh <= Decimal(20)  # type: ignore[operator]
    assert {(p.import_p_per_kwh, p.export_p_per_kwh) for p in found[:31]} == {
        (Decimal("24.5"), Decimal("4.1"))
    }
    assert {(p.import_p_per_kwh, p.export_p_per_kwh) for p in found[31:]} == {(Decimal(30), Decimal(5))}
    assert elsewhere[0].local_p_per_kwh is None
