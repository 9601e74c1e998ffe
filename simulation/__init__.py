"""Simulated Birmingham neighbourhoods: scenario files in, households' power and orders out.

Pure: no database, no HTTP, no Modbus I/O. A scenario file (:mod:`simulation.scenario`) describes
a network tree and groups of households with their assets and bidding strategies; :func:`simulate`
turns it into each household's realised net power over time (which drives its emulated meter) and
its orders for every settlement period (which it places through the API). Everything is seeded:
the same file gives the same output, bit for bit.

Modules: :mod:`~simulation.scenario` (the file format and validation), :mod:`~simulation.demand`
(CREST demand through a profile pool), :mod:`~simulation.weather` (pvlib sunshine, clouds,
temperature), :mod:`~simulation.strategies` (price forecast, bidding, battery and EV plans),
:mod:`~simulation.neighbourhood` (:func:`simulate`), :mod:`~simulation.network` (the network and
tariff for the market).

Glossary
--------
settlement period
    One ``interval_minutes`` slice of a Europe/London settlement date (see :mod:`market.intervals`).
backstop
    The energy company at the root, buying at the export tariff and selling at the import tariff.
position
    A price expressed as a fraction of the way from the export to the import tariff.
leg
    One part of a household's position in a period (base demand less PV, battery, EV), with its
    own limit price.
forecast error
    The relative noise between what a household bids for and what its meter then measures: the
    source of settlement imbalances.
profile pool
    A few CREST day profiles per household size, shared (scaled and shifted) by many homes.

May import :mod:`market` (intervals), :mod:`optimiser` (network types), :mod:`metering`
(the simulated meter models), numpy, pandas, pvlib, richardsonpy and pydantic; never :mod:`api`.
"""

from simulation.neighbourhood import (
    Household,
    Period,
    PlannedOrder,
    Simulation,
    metered_period_wh,
    simulate,
    simulate_history,
)
from simulation.network import build_network, build_tariff, network_nodes, network_root
from simulation.scenario import Scenario, ScenarioError, load_scenario, parse_scenario

__all__ = [
    "Household",
    "Period",
    "PlannedOrder",
    "Scenario",
    "ScenarioError",
    "Simulation",
    "build_network",
    "build_tariff",
    "load_scenario",
    "metered_period_wh",
    "network_nodes",
    "network_root",
    "parse_scenario",
    "simulate",
    "simulate_history",
]
