"""The scenario's network and tariff in the forms the market takes.

:func:`network_nodes` gives the nodes below the root as plain dicts with the fields of
``scenarios/sample-network.toml``'s ``[[node]]`` tables and of the API's ``NodeCreate``
(``id``, ``parent``, ``import_capacity_kwh``, ``export_capacity_kwh``, ``fee_p_per_kwh``, all
capacities in kWh per settlement interval, Decimals); :func:`build_network` and
:func:`build_tariff` give the optimiser's :class:`~optimiser.Network` and :class:`~optimiser.Tariff`,
ready for :func:`market.network.publish_network` and :func:`market.network.set_tariff`.

A capacity the scenario leaves out is unlimited; it is written as :data:`UNLIMITED_CAPACITY_KWH`,
the largest capacity the optimiser accepts (1 GWh per interval).

May import :mod:`optimiser` and :mod:`simulation.scenario`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from optimiser import Network, Node, Tariff
from optimiser.book import MAX_QUANTITY_KWH
from simulation.scenario import Scenario

__all__ = ["UNLIMITED_CAPACITY_KWH", "build_network", "build_tariff", "network_nodes", "network_root"]

UNLIMITED_CAPACITY_KWH = Decimal(MAX_QUANTITY_KWH)


def network_root(scenario: Scenario) -> str:
    """The root node's id: the grid supply point, where the backstop trades."""
    return scenario.network.root


def network_nodes(scenario: Scenario) -> list[dict[str, Any]]:
    """Every node below the root, in file order, as dicts of the sample network file's fields.

    Returns
    -------
    list of dict
        ``{"id", "parent", "import_capacity_kwh", "export_capacity_kwh", "fee_p_per_kwh"}``, the
        last three :class:`~decimal.Decimal` (kWh per settlement interval, p/kWh); an omitted
        capacity is :data:`UNLIMITED_CAPACITY_KWH` and an omitted fee 0.
    """
    return [
        {
            "id": node.id,
            "parent": node.parent,
            "import_capacity_kwh": _capacity(node.import_capacity_kwh),
            "export_capacity_kwh": _capacity(node.export_capacity_kwh),
            "fee_p_per_kwh": Decimal(0) if node.fee_p_per_kwh is None else node.fee_p_per_kwh,
        }
        for node in scenario.network.nodes
        if node.parent is not None
    ]


def _capacity(value: Decimal | None) -> Decimal:
    return UNLIMITED_CAPACITY_KWH if value is None else value


def build_network(scenario: Scenario) -> Network:
    """The scenario's network as the optimiser's validated tree."""
    return Network(root=network_root(scenario), nodes=tuple(Node(**node) for node in network_nodes(scenario)))


def build_tariff(scenario: Scenario) -> Tariff:
    """The scenario's backstop tariff as the optimiser's :class:`~optimiser.Tariff`."""
    return Tariff(scenario.tariff.import_p_per_kwh, scenario.tariff.export_p_per_kwh)
