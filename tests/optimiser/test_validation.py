"""Invalid input is refused before any solve, with an error naming the order or node and the field."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import numpy as np
import pytest

from optimiser import ClearingInputError, Network, Order, OrderBook, Side, Tariff, clear_market
from tests.factories import GATE, TARIFF, book, node, order


def error_of(call) -> ClearingInputError:
    with pytest.raises(ClearingInputError) as caught:
        call()
    return caught.value


@pytest.mark.parametrize(
    ("quantity", "price", "field", "reason"),
    [
        ("0", "10", "quantity_kwh", "greater than zero"),
        ("-1", "10", "quantity_kwh", "negative"),
        ("NaN", "10", "quantity_kwh", "finite"),
        ("Infinity", "10", "quantity_kwh", "finite"),
        ("1.0005", "10", "quantity_kwh", "finer than 0.001 kWh"),
        ("1", "NaN", "price_p_per_kwh", "finite"),
        ("1", "-Infinity", "price_p_per_kwh", "finite"),
        ("1", "10.005", "price_p_per_kwh", "0.01 p/kWh tick"),
        ("1", "1e9", "price_p_per_kwh", "beyond"),
    ],
)
def test_bad_order_values_name_the_order_and_field(quantity, price, field, reason):
    bad = Order("o-7", "HH-1", "GSP", Side.BUY, Decimal(quantity), Decimal(price), GATE)
    error = error_of(lambda: book(order("ok", "sell", 1, 5), bad))
    assert (error.subject, error.field, error.index) == ("order 'o-7'", field, 1)
    assert reason in error.reason


def test_duplicate_order_ids_are_refused():
    error = error_of(lambda: book(order("o-1", "buy", 1, 10), order("o-1", "sell", 1, 5)))
    assert (error.subject, error.field) == ("order 'o-1'", "order_id")
    assert "more than once" in str(error)


def test_naive_submission_time_is_refused():
    naive = Order("o-1", "HH", "GSP", Side.BUY, Decimal(1), Decimal(10), datetime(2026, 11, 21, 12))
    error = error_of(lambda: book(naive))
    assert error.field == "submitted_at"


def test_float_columns_must_be_whole_units():
    error = error_of(
        lambda: OrderBook.from_columns(
            order_ids=["a", "b"],
            participant_ids=["p", "p"],
            nodes=["GSP", "GSP"],
            is_buy=[True, False],
            quantity_kwh=[1.0, 2.5],
            price_p_per_kwh=[10.0, 10.001],
            submitted_at_us=np.zeros(2, np.int64),
        )
    )
    assert (error.subject, error.field, error.index) == ("order 'b'", "price_p_per_kwh", 1)


def test_unknown_node_is_refused_before_solving():
    error = error_of(
        lambda: clear_market(book(order("o-1", "buy", 1, 10, node="F-9")), Network("GSP"), TARIFF)
    )
    assert (error.subject, error.field, error.index) == ("order 'o-1'", "node", 0)
    assert "'F-9' is not a node" in error.reason


@pytest.mark.parametrize(
    ("nodes", "subject", "field", "reason"),
    [
        ((node("A", "X"),), "node 'A'", "parent", "'X' is not a node"),
        ((node("A", "B"), node("B", "A")), "node 'A'", "parent", "cycle"),
        ((node("A", "A"),), "node 'A'", "parent", "cycle"),
        ((node("A", "GSP"), node("A", "GSP")), "node 'A'", "id", "more than once"),
        ((node("GSP", "GSP"),), "node 'GSP'", "id", "more than once"),
        ((node("A", "GSP", -1),), "node 'A'", "import_capacity_kwh", "negative"),
        ((node("A", "GSP", 1, "NaN"),), "node 'A'", "export_capacity_kwh", "finite"),
        ((node("A", "GSP", fee=-1),), "node 'A'", "fee_p_per_kwh", "negative"),
        ((node("A", "GSP", fee="Infinity"),), "node 'A'", "fee_p_per_kwh", "finite"),
    ],
)
def test_bad_networks_name_the_node(nodes, subject, field, reason):
    error = error_of(lambda: Network("GSP", nodes))
    assert (error.subject, error.field) == (subject, field)
    assert reason in error.reason


def test_import_tariff_below_export_is_refused():
    error = error_of(lambda: Tariff(Decimal("4"), Decimal("5")))
    assert (error.subject, error.field) == ("tariff", "import_p_per_kwh")


def test_network_order_is_canonical():
    one = Network("GSP", (node("B", "GSP"), node("A", "GSP"), node("C", "A")))
    two = Network("GSP", (node("C", "A"), node("A", "GSP"), node("B", "GSP")))
    assert one.node_ids == two.node_ids == ("GSP", "A", "B", "C")
    assert one.parent_index.tolist() == [-1, 0, 0, 1]
