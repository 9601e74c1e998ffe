"""Properties every clearing must have, over random trees, tariffs and books."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optimiser import ClearingOptions, Network, OrderBook, clear_market
from tests.factories import networks, order_books, tariffs
from tests.optimiser.conditions import assert_optimal

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def markets(draw, **network_options):
    network = draw(networks(**network_options))
    return network, draw(tariffs()), draw(order_books(network))


@SETTINGS
@given(markets())
def test_result_is_feasible_supported_and_optimal(market):
    """Balance to the Wh, bounds, and prices that support every fill: the optimality conditions."""
    network, tariff, book = market
    result = clear_market(book, network, tariff)
    assert_optimal(result, book, network, tariff)


@SETTINGS
@given(markets())
def test_column_generation_matches_the_full_model(market):
    """Both strategies reach the same welfare and, by the price rule, the same prices."""
    network, tariff, book = market
    generated = clear_market(book, network, tariff, ClearingOptions(strategy="generate"))
    full = clear_market(book, network, tariff, ClearingOptions(strategy="full"))
    assert generated.welfare_p == full.welfare_p
    assert_optimal(full, book, network, tariff)


@SETTINGS
@given(markets(), st.randoms(use_true_random=False))
def test_row_order_does_not_matter(market, random):
    """The same book and tree, shuffled, give the same fills, prices, flows and welfare."""
    network, tariff, book = market
    rows = list(range(len(book)))
    random.shuffle(rows)
    shuffled = OrderBook(
        order_ids=tuple(book.order_ids[i] for i in rows),
        participant_ids=tuple(book.participant_ids[i] for i in rows),
        nodes=tuple(book.nodes[i] for i in rows),
        is_buy=book.is_buy[rows],
        quantity_wh=book.quantity_wh[rows],
        price_ticks=book.price_ticks[rows],
        submitted_at_us=book.submitted_at_us[rows],
    )
    nodes = list(network.nodes)
    random.shuffle(nodes)
    reordered = Network(network.root, tuple(nodes))
    first = clear_market(book, network, tariff)
    second = clear_market(shuffled, reordered, tariff)
    assert dict(first.fills()) == dict(second.fills())
    assert first.node_prices_p_per_kwh == second.node_prices_p_per_kwh
    assert first.flows_wh == second.flows_wh
    assert first.welfare_p == second.welfare_p


@SETTINGS
@given(markets())
def test_time_priority_within_each_level(market):
    """Among orders at one node, side and price, a later order gets energy only when every
    earlier one is full."""
    network, tariff, book = market
    result = clear_market(book, network, tariff)
    levels: dict[tuple, list[tuple[int, str, int, int]]] = {}
    for i in range(len(book)):
        key = (book.nodes[i], bool(book.is_buy[i]), int(book.price_ticks[i]))
        entry = (int(book.submitted_at_us[i]), book.order_ids[i], int(result.accepted_wh[i]))
        levels.setdefault(key, []).append((*entry, int(book.quantity_wh[i])))
    for queue in levels.values():
        queue.sort()
        partly = [accepted < quantity for _, _, accepted, quantity in queue]
        for earlier, (_, _, accepted, _) in enumerate(queue[1:]):
            if accepted > 0:
                assert not any(partly[: earlier + 1]), queue


@SETTINGS
@given(markets(fees=False, congestion=False))
def test_free_uncongested_network_has_one_price(market):
    network, tariff, book = market
    result = clear_market(book, network, tariff)
    assert len(set(result.node_prices_p_per_kwh.values())) == 1


@SETTINGS
@given(markets())
def test_welfare_is_never_negative_and_empty_side_books_clear(market):
    """Doing nothing is always feasible with welfare 0, so the optimum is at least 0."""
    network, tariff, book = market
    result = clear_market(book, network, tariff)
    assert result.welfare_p >= 0
    assert np.all(result.accepted_wh >= 0)
    assert result.price_ranges_p_per_kwh[network.root][0] >= tariff.export_p_per_kwh
    for price in result.node_prices_p_per_kwh.values():
        assert price.is_finite()
        assert price == price.quantize(Decimal("1e-20"))
