"""Household smart meters over Modbus: register maps as data, decoding, polling, validation, and
the energy of each settlement interval.

Modules: :mod:`metering.registers` (maps, block-read planning, bulk decoding),
:mod:`metering.sunspec` (SunSpec discovery), :mod:`metering.readings` (validated readings),
:mod:`metering.polling` (async polling of a fleet), :mod:`metering.emulator` (emulated meters
on loopback) and :mod:`metering.energy` (interval energy from cumulative counters).

Imports nothing from :mod:`market`, :mod:`optimiser` or :mod:`api`.

Glossary
--------
circuit breaker
    Per meter: after a number of failures in a row the meter is skipped until a cool-down has
    passed, so one dead meter never stalls its bus.
gateway, lane
    A Modbus TCP gateway (or an RS485 bus) serves its unit ids one request at a time; the poller
    keeps one connection and one queue (a lane) per gateway and runs lanes concurrently.
register map
    A meter model's registers as data (``metering/maps/*.toml``); a user adds a model by adding
    a file.
"""
