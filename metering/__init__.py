"""Household smart meters over Modbus: register maps as data, decoding, polling, validation and
the energy of each settlement interval.

Imports nothing from :mod:`market`, :mod:`optimiser` or :mod:`api`. (Built in the metering
issue; nothing lives here yet.)
"""
