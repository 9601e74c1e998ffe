"""Independent checks of a clearing result, written from the problem statement, not the engine.

Together, balance, bounds and price support are the LP's optimality conditions: a result that
passes them all is welfare-maximising, whatever the engine did to find it.
"""

from __future__ import annotations

from decimal import Decimal

from optimiser import ClearingResult, Network, OrderBook, Tariff

TICK = Decimal("0.01")


def kwh(wh: int) -> Decimal:
    return Decimal(wh) / 1000


def limit(book: OrderBook, i: int) -> Decimal:
    return Decimal(int(book.price_ticks[i])) * TICK


def assert_feasible(result: ClearingResult, book: OrderBook, network: Network) -> None:
    """Every order within 0..quantity, every flow within capacity, every node balanced to the Wh."""
    surplus = dict.fromkeys(network.node_ids, 0)
    for i, accepted in enumerate(result.accepted_wh.tolist()):
        assert 0 <= accepted <= int(book.quantity_wh[i]), book.order_ids[i]
        surplus[book.nodes[i]] += -accepted if book.is_buy[i] else accepted
    parents = dict(zip(network.node_ids[1:], (network.node_ids[p] for p in network.parent_index[1:])))
    for position, node_id in enumerate(network.node_ids[1:], start=1):
        flow = result.flows_wh[node_id]
        assert -int(network.export_capacity_wh[position]) <= flow <= int(network.import_capacity_wh[position])
        surplus[node_id] += flow
        surplus[parents[node_id]] -= flow
    surplus[network.root] += result.grid_import_wh - result.grid_export_wh
    assert result.grid_import_wh >= 0
    assert result.grid_export_wh >= 0
    assert min(result.grid_import_wh, result.grid_export_wh) == 0
    assert all(value == 0 for value in surplus.values()), surplus


def assert_prices_support(result: ClearingResult, book: OrderBook, network: Network, tariff: Tariff) -> None:
    """At each node's price, orders in the money are filled, orders out of it are not; edge flows
    and the backstop are what a trader facing those prices and the fees would choose."""
    prices = result.node_prices_p_per_kwh
    assert set(prices) == set(network.node_ids)
    for i, accepted in enumerate(result.accepted_wh.tolist()):
        price, quantity = prices[book.nodes[i]], int(book.quantity_wh[i])
        in_money = limit(book, i) > price if book.is_buy[i] else limit(book, i) < price
        out_of_money = limit(book, i) < price if book.is_buy[i] else limit(book, i) > price
        if in_money:
            assert accepted == quantity, (book.order_ids[i], "in the money but not filled")
        if out_of_money:
            assert accepted == 0, (book.order_ids[i], "out of the money but filled")
    for position, node_id in enumerate(network.node_ids[1:], start=1):
        parent = network.node_ids[int(network.parent_index[position])]
        step = prices[node_id] - prices[parent]
        fee = network.fees_p_per_kwh[position]
        flow = result.flows_wh[node_id]
        import_cap = int(network.import_capacity_wh[position])
        export_cap = int(network.export_capacity_wh[position])
        if flow > 0:
            assert step >= fee if flow == import_cap else step == fee, (node_id, step, fee)
        elif flow < 0:
            assert step <= -fee if -flow == export_cap else step == -fee, (node_id, step, fee)
        else:
            if import_cap > 0:
                assert step <= fee, (node_id, "would import more")
            if export_cap > 0:
                assert step >= -fee, (node_id, "would export more")
    root = prices[network.root]
    assert tariff.export_p_per_kwh <= root <= tariff.import_p_per_kwh
    if result.grid_import_wh:
        assert root == tariff.import_p_per_kwh
    if result.grid_export_wh:
        assert root == tariff.export_p_per_kwh


def welfare_of(result: ClearingResult, book: OrderBook, network: Network, tariff: Tariff) -> Decimal:
    """Welfare recomputed from the fills, flows and backstop, in pence."""
    total = Decimal(0)
    for i, accepted in enumerate(result.accepted_wh.tolist()):
        value = limit(book, i) * kwh(accepted)
        total += value if book.is_buy[i] else -value
    for position, node_id in enumerate(network.node_ids[1:], start=1):
        total -= network.fees_p_per_kwh[position] * kwh(abs(result.flows_wh[node_id]))
    total -= tariff.import_p_per_kwh * kwh(result.grid_import_wh)
    total += tariff.export_p_per_kwh * kwh(result.grid_export_wh)
    return total


def assert_optimal(result: ClearingResult, book: OrderBook, network: Network, tariff: Tariff) -> None:
    assert result.status == "optimal"
    assert_feasible(result, book, network)
    assert_prices_support(result, book, network, tariff)
    assert result.welfare_p == welfare_of(result, book, network, tariff)
