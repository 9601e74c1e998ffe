"""The market's domain and persistence: participants, meters, the network, settlement intervals,
orders to gate closure, clearing runs, trades, settlement and the money ledger.

Modules: :mod:`~market.intervals` (Europe/London settlement periods), :mod:`~market.rules` (gate
closure and order bounds), :mod:`~market.participants`, :mod:`~market.network` (versioned network
and tariffs), :mod:`~market.orders`, :mod:`~market.clearing` (exactly-once runs),
:mod:`~market.meter_data` (readings and interval energy), :mod:`~market.meter_files`
(half-hourly data files from the national data service), :mod:`~market.charges` (the pure
settlement rules), :mod:`~market.settlement` (runs and the ledger), :mod:`~market.statements`
(statements and exports), :mod:`~market.access` (tokens and the audit log), :mod:`~market.units`
(Wh, ticks, money and rounding), :mod:`~market.tables` and :mod:`~market.database` (storage).

May import :mod:`optimiser` and :mod:`metering`'s product modules; never the API, the command
line, the demo or :mod:`metering.emulator`.
"""
