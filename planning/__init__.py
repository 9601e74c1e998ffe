"""Automatic trading for a household: what it states (its strategy), what the platform expects of
its meter (forecasts) and what it should buy and sell (the plan).

Pure, as :mod:`optimiser` is: data in, result out; the plan is a Pyomo model solved by HiGHS, the
PV forecast comes from pvlib. Imports nothing from the rest of smartbrum, no database and no web
framework; :mod:`market` stores strategies and turns plans into orders.

Glossary
--------
strategy
    What a household wants, stated once: the floor it sells at, the ceiling it buys at, its PV,
    its home battery and its EV. The platform bids for it every interval.
forecast
    The household's expected demand and generation (kWh) for each coming settlement period,
    from its own metered interval energy.
plan
    For each coming period, the energy the household should buy or sell and at what limit
    price, its battery and EV schedule with it, from the forecast and the expected local price.
state of charge (SoC)
    The energy stored in a battery, as kWh or as a percentage of its capacity.
"""
