"""Small books whose answer is worked out on paper, each with the working in its docstring."""

from __future__ import annotations

from decimal import Decimal

import pytest

from optimiser import ClearingOptions, Network, clear_market
from tests.factories import TARIFF, book, node, order, tariff
from tests.optimiser.conditions import assert_optimal

D = Decimal
SINGLE = Network.single_node()
STRATEGIES = [ClearingOptions(strategy="generate"), ClearingOptions(strategy="full")]


def fills(result):
    return dict(result.fills())


@pytest.fixture(params=STRATEGIES, ids=lambda o: o.strategy)
def options(request):
    return request.param


def test_buy_above_import_tariff_takes_backstop_energy(options):
    """1 kWh wanted at up to 30 p, the backstop sells at 24.5 p: filled from the grid.

    Price 24.5 (the backstop is importing); welfare (30 - 24.5) x 1 = 5.5 p.
    """
    orders = book(order("b", "buy", 1, 30))
    result = clear_market(orders, SINGLE, TARIFF, options)
    assert fills(result) == {"b": D("1.000")}
    assert result.grid_import_kwh == D("1.000")
    assert result.node_prices_p_per_kwh == {"GSP": D("24.5")}
    assert result.welfare_p == D("5.5")
    assert_optimal(result, orders, SINGLE, TARIFF)


def test_sell_below_export_tariff_goes_to_the_backstop(options):
    """2 kWh offered at 2 p, the backstop buys at 4.1 p: price 4.1, welfare (4.1 - 2) x 2 = 4.2 p."""
    orders = book(order("s", "sell", 2, 2))
    result = clear_market(orders, SINGLE, TARIFF, options)
    assert fills(result) == {"s": D("2.000")}
    assert result.grid_export_kwh == D("2.000")
    assert result.node_prices_p_per_kwh["GSP"] == D("4.1")
    assert result.welfare_p == D("4.2")


def test_partly_filled_sell_sets_the_price(options):
    """Buy 2 at 15 against sell 3 at 8: 2 kWh trade, the sell is the marginal order.

    Price 8 (the partly filled sell's limit); welfare (15 - 8) x 2 = 14 p.
    """
    orders = book(order("b", "buy", 2, 15), order("s", "sell", 3, 8))
    result = clear_market(orders, SINGLE, TARIFF, options)
    assert fills(result) == {"b": D("2.000"), "s": D("2.000")}
    assert result.node_prices_p_per_kwh["GSP"] == D("8")
    assert result.welfare_p == D("14")


def test_crossing_on_a_step_takes_the_midpoint(options):
    """Buy 2 at 15 and sell 2 at 8 both fill: any price in [8, 15] supports that.

    The rule takes the midpoint, 11.5, not whichever end the solver lands on.
    """
    orders = book(order("b", "buy", 2, 15), order("s", "sell", 2, 8))
    result = clear_market(orders, SINGLE, TARIFF, options)
    assert fills(result) == {"b": D("2.000"), "s": D("2.000")}
    assert result.price_ranges_p_per_kwh["GSP"] == (D("8"), D("15"))
    assert result.node_prices_p_per_kwh["GSP"] == D("11.5")


def test_empty_book_clears_with_zero_welfare(options):
    """Nothing to trade: welfare 0, and the root's price is the middle of the tariffs, 14.3."""
    result = clear_market(book(), SINGLE, TARIFF, options)
    assert result.welfare_p == 0
    assert result.grid_import_wh == result.grid_export_wh == 0
    assert result.node_prices_p_per_kwh == {"GSP": D("14.3")}


def test_time_priority_within_a_price_level(options):
    """Three 1 kWh sells at 8 p, submitted at t+20, t+10, t+30; a buy of 2 kWh at 15 p.

    The two earliest (s2 then s1) fill; s3, latest, does not. It still sets the price: 8.
    """
    orders = book(
        order("s1", "sell", 1, 8, seconds=20),
        order("s2", "sell", 1, 8, seconds=10),
        order("s3", "sell", 1, 8, seconds=30),
        order("b", "buy", 2, 15),
    )
    result = clear_market(orders, SINGLE, TARIFF, options)
    assert fills(result) == {"s1": D("1.000"), "s2": D("1.000"), "s3": D("0.000"), "b": D("2.000")}
    assert result.node_prices_p_per_kwh["GSP"] == D("8")


def test_equal_times_fall_back_to_order_id():
    """Two sells at the same price and the same instant: order id decides, 'a' before 'b'."""
    orders = book(order("b", "sell", 1, 8), order("a", "sell", 1, 8), order("x", "buy", "1.5", 15))
    result = clear_market(orders, SINGLE, TARIFF)
    assert fills(result) == {"a": D("1.000"), "b": D("0.500"), "x": D("1.500")}


def test_at_the_money_buys_and_sells_trade_with_each_other(options):
    """Buy 5 at 10 and sell 3 at 10: trading is welfare-neutral; the engine trades 3 (local first)."""
    orders = book(order("b", "buy", 5, 10), order("s", "sell", 3, 10))
    result = clear_market(orders, SINGLE, TARIFF, options)
    assert fills(result) == {"b": D("3.000"), "s": D("3.000")}
    assert result.node_prices_p_per_kwh["GSP"] == D("10")


def test_fee_separates_prices_along_a_flowing_edge(options):
    """A feeder F (fee 0.5) sells 3 kWh at 5 p to a buyer at the root bidding 20 p.

    Energy flows up 3 kWh below capacity, so p_F = p_GSP - 0.5. The sell is filled: p_F >= 5,
    so p_GSP >= 5.5; the buy is filled: p_GSP <= 20. Root range [5.5, 20], midpoint 12.75;
    p_F = 12.25. Welfare 3 x 20 - 3 x 5 - 0.5 x 3 = 43.5 p.
    """
    network = Network("GSP", (node("F", "GSP", 10, 10, "0.5"),))
    orders = book(order("s", "sell", 3, 5, node="F"), order("b", "buy", 3, 20))
    result = clear_market(orders, network, TARIFF, options)
    assert fills(result) == {"s": D("3.000"), "b": D("3.000")}
    assert result.flows_wh == {"F": -3000}
    assert result.node_prices_p_per_kwh == {"GSP": D("12.75"), "F": D("12.25")}
    assert result.welfare_p == D("43.5")
    assert_optimal(result, orders, network, TARIFF)


def test_export_congestion_splits_the_prices(options):
    """As above but F may export only 1 kWh: the edge is full and the prices split.

    F exports 1 kWh; its sell is filled in part, so p_F = 5. The buyer at the root gets only 1 kWh
    (the backstop's 24.5 p is above its 20 p), so it is marginal: p_GSP = 20. Welfare
    20 - 5 - 0.5 = 14.5 p.
    """
    network = Network("GSP", (node("F", "GSP", 10, 1, "0.5"),))
    orders = book(order("s", "sell", 3, 5, node="F"), order("b", "buy", 3, 20))
    result = clear_market(orders, network, TARIFF, options)
    assert fills(result) == {"s": D("1.000"), "b": D("1.000")}
    assert result.node_prices_p_per_kwh == {"GSP": D("20"), "F": D("5")}
    assert result.welfare_p == D("14.5")
    assert_optimal(result, orders, network, TARIFF)


def test_import_congestion_raises_the_feeder_price(options):
    """F may import only 2 kWh; a buyer there wants 5 at 30 p and the backstop sells at 24.5 p.

    2 kWh come in through the full edge (fee 0.2) and the buy is marginal: p_F = 30, while the
    root imports from the backstop: p_GSP = 24.5. Welfare 2 x (30 - 24.5 - 0.2) = 10.6 p.
    """
    network = Network("GSP", (node("F", "GSP", 2, 10, "0.2"),))
    orders = book(order("b", "buy", 5, 30, node="F"))
    result = clear_market(orders, network, TARIFF, options)
    assert fills(result) == {"b": D("2.000")}
    assert result.grid_import_kwh == D("2.000")
    assert result.node_prices_p_per_kwh == {"GSP": D("24.5"), "F": D("30")}
    assert result.welfare_p == D("10.6")


def test_no_fees_no_congestion_one_price_everywhere(options):
    """Two feeders under a primary, free and ample edges: one market, one price (the marginal 9 p)."""
    network = Network(
        "GSP",
        (node("P", "GSP"), node("F1", "P"), node("F2", "P")),
    )
    orders = book(
        order("s1", "sell", 2, 6, node="F1"),
        order("s2", "sell", 2, 9, node="F2"),
        order("b1", "buy", 3, 20, node="F2"),
    )
    result = clear_market(orders, network, TARIFF, options)
    assert set(result.node_prices_p_per_kwh.values()) == {D("9")}
    assert fills(result) == {"s1": D("2.000"), "s2": D("1.000"), "b1": D("3.000")}


def test_zero_capacity_feeder_is_priced_by_its_own_orders(options):
    """F has no connection (capacities 0): its buy at 12 and sell at 7 trade only with each other.

    Both fill (2 kWh each); F's range is [7, 12] with the parent unable to bound it: 9.5.
    """
    network = Network("GSP", (node("F", "GSP", 0, 0, "0.3"),))
    orders = book(order("b", "buy", 2, 12, node="F"), order("s", "sell", 2, 7, node="F"))
    result = clear_market(orders, network, TARIFF, options)
    assert fills(result) == {"b": D("2.000"), "s": D("2.000")}
    assert result.node_prices_p_per_kwh["F"] == D("9.5")


def test_isolated_node_without_orders_takes_its_parents_price():
    """A cut-off node with nothing to trade has no supporting bound at all: it takes its parent's."""
    network = Network("GSP", (node("F", "GSP", 0, 0, "0.3"),))
    result = clear_market(book(), network, tariff(20, 10))
    assert result.node_prices_p_per_kwh == {"GSP": D("15"), "F": D("15")}


def test_strategies_agree_on_welfare_for_a_congested_tree():
    network = Network(
        "GSP",
        (node("P", "GSP", 50, 50, "0.4"), node("F1", "P", 3, 1, "0.2"), node("F2", "P", 5, 5, "0.2")),
    )
    orders = book(
        *[order(f"s{i}", "sell", 1, 3 + i, node="F1", seconds=i) for i in range(6)],
        *[order(f"b{i}", "buy", 1, 25 - i, node="F2", seconds=i) for i in range(8)],
        order("r", "buy", 2, 11),
    )
    generated = clear_market(orders, network, TARIFF, ClearingOptions(strategy="generate"))
    full = clear_market(orders, network, TARIFF, ClearingOptions(strategy="full"))
    assert generated.welfare_p == full.welfare_p
    assert generated.node_prices_p_per_kwh == full.node_prices_p_per_kwh
    assert_optimal(generated, orders, network, TARIFF)
