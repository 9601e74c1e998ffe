"""A scenario on the whole platform (:mod:`demo.scenario_run`) and its summary and report
(:mod:`demo.report`): what ``smartbrum demo`` and ``smartbrum scenario run`` show.

May import the API (the platform's app and jobs), the simulation, the market and metering's
emulator; nothing below imports it.
"""
