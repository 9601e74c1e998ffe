"""The market's rules: interval length, gate closure, order bounds. Explicit values, no environment.

:mod:`api` builds a :class:`MarketRules` from its settings and hands it down.

May import only the standard library and :mod:`market`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from market.intervals import ALLOWED_LENGTHS_MINUTES, SettlementPeriod


@dataclass(frozen=True)
class MarketRules:
    """What an order may be and until when.

    Attributes
    ----------
    interval_minutes:
        Settlement period length: 15, 30 (the default) or 60.
    gate_closure_minutes:
        Orders for a period are frozen this long before it starts.
    min_quantity_kwh, max_quantity_kwh:
        Bounds on one order's quantity (inclusive).
    min_price_p_per_kwh, max_price_p_per_kwh:
        Bounds on one order's limit price (inclusive); negative prices are allowed when the
        minimum is below zero (a seller paying to export).
    max_open_orders:
        Most open orders one household may hold for one period.
    """

    interval_minutes: int = 30
    gate_closure_minutes: int = 5
    min_quantity_kwh: Decimal = Decimal("0.001")
    max_quantity_kwh: Decimal = Decimal("100")
    min_price_p_per_kwh: Decimal = Decimal("-100")
    max_price_p_per_kwh: Decimal = Decimal("1000")
    max_open_orders: int = 10

    def __post_init__(self) -> None:
        if self.interval_minutes not in ALLOWED_LENGTHS_MINUTES:
            raise ValueError(f"interval_minutes must be one of {ALLOWED_LENGTHS_MINUTES}")
        if not 0 <= self.gate_closure_minutes <= 24 * 60:
            raise ValueError("gate_closure_minutes must be between 0 and 1440")
        if not Decimal(0) < self.min_quantity_kwh <= self.max_quantity_kwh:
            raise ValueError("min_quantity_kwh must be positive and at most max_quantity_kwh")
        if self.min_price_p_per_kwh > self.max_price_p_per_kwh:
            raise ValueError("min_price_p_per_kwh must be at most max_price_p_per_kwh")
        if self.max_open_orders < 1:
            raise ValueError("max_open_orders must be at least 1")

    def gate_closure_utc(self, period: SettlementPeriod) -> datetime:
        """The instant ``period``'s book freezes: orders may change strictly before it."""
        return period.start_utc - timedelta(minutes=self.gate_closure_minutes)
