"""Emulated meters on loopback: households that draw and export power, served over real Modbus.

A :class:`MeterProfile` says what one household's meter measures over time: demand with a morning
and an evening peak, optional PV export at midday, voltages and frequency around nominal. Net
power is constant over each step (five minutes by default), so the import and export counters
are the exact integrals of the power the meter shows, computed at read time from an injectable
clock: an accelerated clock runs a day in seconds and the counters keep up. Everything is drawn
from a seeded generator, so a meter's values depend only on its seed and the time. A
:class:`SeriesProfile` does the same for an explicit series of net power (a scenario's household,
from :mod:`simulation`).

A :class:`SimulatedMeter` puts a profile into a meter model's registers (``sdm630``, ``sdm120``,
``sdm72``, ``em24``, or a SunSpec device ``sunspec201`` ... ``sunspec214``) and can be told to
misbehave (:class:`Fault`). A :class:`Gateway` is one pymodbus server on one TCP port answering
for all its meters' unit IDs, as an RS485 gateway does; :class:`MeterFleet` describes many
gateways from a few numbers, for the CLI and benchmarks.

Only for tests, demonstrations and benchmarks: nothing in production polls an emulated meter, and
no product module imports this package (an import-linter contract says so).

Modules: :mod:`~metering.emulator.profiles` (what a meter measures), :mod:`~metering.emulator.meters`
(register images, faults), :mod:`~metering.emulator.gateway` (the Modbus server),
:mod:`~metering.emulator.fleet` (many gateways).

May import: the standard library, numpy, pymodbus, and :mod:`metering` (registers, sunspec,
polling for :class:`~metering.polling.MeterEndpoint`). Never :mod:`market`, :mod:`optimiser` or
:mod:`api`.
"""

from __future__ import annotations

from metering.emulator.fleet import GatewaySpec, MeterFleet, MeterSpec, serve_fleet
from metering.emulator.gateway import Gateway, RequestRecord
from metering.emulator.meters import CLASSIC_MODELS, SIMULATED_MODELS, Fault, SimulatedMeter
from metering.emulator.profiles import STANDARD_QUANTITIES, MeterProfile, Profile, SeriesProfile

__all__ = [
    "CLASSIC_MODELS",
    "SIMULATED_MODELS",
    "STANDARD_QUANTITIES",
    "Fault",
    "Gateway",
    "GatewaySpec",
    "MeterFleet",
    "MeterProfile",
    "MeterSpec",
    "Profile",
    "RequestRecord",
    "SeriesProfile",
    "SimulatedMeter",
    "serve_fleet",
]
