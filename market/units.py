"""Units, in one place: energy in integer watt-hours, prices in integer ticks, money in integer
hundredths of a penny, and the one rounding policy that turns one into another.

- Energy: ``_wh``, integer Wh. kWh only at the edges (the API, files, display): 1 kWh = 1,000 Wh.
- Prices: ``_ticks``, integer hundredths of a penny per kWh; p/kWh (a ``Decimal``) at the edges.
- Money: ``_cp``, integer hundredths of a penny. An amount is rounded once, half to even, when
  energy meets a price (:func:`money_cp`) or an amount meets a rate (:func:`scale_cp`), by exact
  integer division on the price's or rate's fraction: never through floats.

The energy and price units are the optimiser's (:mod:`optimiser.book`), which imports nothing of
the market; they are defined there and named here.

May import only the standard library and :mod:`optimiser.book`.
"""

from __future__ import annotations

import functools
from decimal import Decimal

from optimiser.book import TICKS_PER_P, WH_PER_KWH

__all__ = ["CP_PER_PENNY", "TICKS_PER_P", "WH_PER_KWH", "money_cp", "scale_cp"]

#: Ledger money unit: hundredths of a penny per unit of ``amount_cp``.
CP_PER_PENNY = 100


def money_cp(energy_wh: int, price_p_per_kwh: Decimal) -> int:
    """``energy_wh`` at ``price_p_per_kwh`` in hundredths of a penny, rounded half to even.

    Exact: the price as a fraction of integers, one integer division (Wh x p/kWh = millipence;
    10 millipence = 1 cp).
    """
    numerator, denominator = _fraction(price_p_per_kwh)
    return _divide_half_even(energy_wh * numerator, denominator * 10)


def scale_cp(amount_cp: int, rate: Decimal) -> int:
    """``amount_cp`` times ``rate`` (a VAT rate, say), rounded half to even, exactly."""
    numerator, denominator = _fraction(rate)
    return _divide_half_even(amount_cp * numerator, denominator)


@functools.lru_cache(maxsize=4096)
def _fraction(value: Decimal) -> tuple[int, int]:
    # An interval has a handful of distinct prices and rates: each is split once.
    if not value.is_finite():
        raise ValueError(f"a price or rate must be finite, not {value!r}")
    return value.as_integer_ratio()


def _divide_half_even(numerator: int, denominator: int) -> int:
    quotient, remainder = divmod(numerator, denominator)  # floor: 0 <= remainder < denominator
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient % 2):
        quotient += 1
    return quotient
