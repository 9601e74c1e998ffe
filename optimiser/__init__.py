"""smartbrum's market-clearing engine: a welfare-maximising double auction over the feeder tree.

Pure: data in, result out. Built with Pyomo, solved with HiGHS; imports nothing from
the rest of smartbrum, no database and no web framework.

Glossary
--------
backstop
    The energy company at the root of the tree: it sells any amount at the import tariff
    and buys any amount at the export tariff, so every book can clear.
gate closure
    The moment an interval's book is frozen and handed to this engine.
nodal price
    The price of energy at one node (p/kWh): the balance equation's dual. Nodes differ by
    the network fees between them, and more where an edge is full (congestion).
price level
    The orders at one node on one side at one limit price, cleared as one variable and
    shared back to the orders in time priority.
settlement period
    The interval an order book is for (30 minutes by default).
welfare
    What accepted buys are worth to their buyers, less what accepted sells cost their
    sellers, less backstop imports at the import tariff, plus backstop exports at the
    export tariff, less the network fees on every flow (pence).
"""

from optimiser.book import ClearingInputError, Network, Node, Order, OrderBook, Side, Tariff
from optimiser.clearing import ClearingOptions, ClearingResult, ClearingStats, clear_market
from optimiser.solve import SolverError

__all__ = [
    "ClearingInputError",
    "ClearingOptions",
    "ClearingResult",
    "ClearingStats",
    "Network",
    "Node",
    "Order",
    "OrderBook",
    "Side",
    "SolverError",
    "Tariff",
    "clear_market",
]
