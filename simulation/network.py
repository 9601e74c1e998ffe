"""The scenario's network and tariff in the forms the market takes.

A scenario's ``[network]`` table is in the one network format (:mod:`market.network_format`), so
the scenario already holds the optimiser's validated :class:`~optimiser.Network`;
:func:`network_nodes` gives its nodes below the root as plain dicts with the format's keys (``id``,
``parent``, ``import_capacity_kwh``, ``export_capacity_kwh``, ``fee_p_per_kwh``, capacities in kWh
per settlement interval, Decimals); :func:`build_network` and :func:`build_tariff` give the
:class:`~optimiser.Network` and :class:`~optimiser.Tariff` for
:func:`market.network.publish_network` and :func:`market.network.set_tariff`.

May import :mod:`optimiser` and :mod:`simulation.scenario`.
"""

from __future__ import annotations

from typing import Any

from optimiser import Network, Tariff
from simulation.scenario import Scenario

__all__ = ["build_network", "build_tariff", "network_nodes", "network_root"]


def network_root(scenario: Scenario) -> str:
    """The root node's id: the grid supply point, where the backstop trades."""
    return scenario.network.root


def network_nodes(scenario: Scenario) -> list[dict[str, Any]]:
    """Every node below the root, in file order, as dicts of the network format's keys.

    Returns
    -------
    list of dict
        ``{"id", "parent", "import_capacity_kwh", "export_capacity_kwh", "fee_p_per_kwh"}``, the
        last three :class:`~decimal.Decimal` (kWh per settlement interval, p/kWh).
    """
    return [
        {
            "id": node.id,
            "parent": node.parent,
            "import_capacity_kwh": node.import_capacity_kwh,
            "export_capacity_kwh": node.export_capacity_kwh,
            "fee_p_per_kwh": node.fee_p_per_kwh,
        }
        for node in scenario.network.nodes
    ]


def build_network(scenario: Scenario) -> Network:
    """The scenario's network as the optimiser's validated tree."""
    return scenario.network


def build_tariff(scenario: Scenario) -> Tariff:
    """The scenario's backstop tariff as the optimiser's :class:`~optimiser.Tariff`."""
    return Tariff(scenario.tariff.import_p_per_kwh, scenario.tariff.export_p_per_kwh)
