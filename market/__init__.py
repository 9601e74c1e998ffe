"""The market's domain and persistence: participants, meters, the network, settlement intervals,
orders to gate closure, clearing runs, trades, settlement and the money ledger.

May import :mod:`optimiser` and :mod:`metering`; never :mod:`api`. (Built in the market-core
and settlement issues; nothing lives here yet.)
"""
