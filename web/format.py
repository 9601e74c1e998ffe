"""en-GB display: pounds and pence, p/kWh, kWh, and Europe/London dates and times with the
settlement period beside them (the clock-change days named by their zone).

Pure functions over the market's values, registered as the templates' filters. May import
:mod:`market`'s pure parts and the standard library.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from market.intervals import LONDON, SettlementPeriod, periods_in_day

_PENNY = Decimal("0.01")


def pounds(pence: Decimal) -> str:
    """``Decimal("1234.5")`` pence as ``£12.35``; a negative amount as ``−£0.21``."""
    value = (pence / 100).quantize(_PENNY, rounding=ROUND_HALF_EVEN)
    sign = "\u2212" if value < 0 else ""
    return f"{sign}£{abs(value):,.2f}"


def p_per_kwh(price: Decimal | None) -> str:
    """A price as ``12.5p/kWh`` (exact: as many decimals as it has); ``–`` when there is none."""
    if price is None:
        return "\u2013"
    text = f"{price.normalize():f}"
    return f"{text.replace('-', chr(0x2212))}p/kWh"


def kwh(energy: Decimal | None) -> str:
    """Energy as ``1.5 kWh`` (exact, without trailing zeros)."""
    if energy is None:
        return "\u2013"
    return f"{energy.normalize():f} kWh"


def day_name(settlement_date: date) -> str:
    """``Sunday 25 October 2026``."""
    return f"{settlement_date:%A} {settlement_date.day} {settlement_date:%B %Y}"


def _clock_change(settlement_date: date, length_minutes: int) -> bool:
    return periods_in_day(settlement_date, length_minutes=length_minutes) * length_minutes != 24 * 60


def local_time(moment: datetime) -> str:
    """An instant as London wall-clock time: ``14:25``; with its zone on a clock-change day
    (``01:30 BST``, ``01:30 GMT``), where the time alone is ambiguous."""
    local = moment.astimezone(LONDON)
    clock = f"{local:%H:%M}"
    changes = (
        local.utcoffset() != (local + timedelta(hours=12)).utcoffset()
        or local.utcoffset() != (local - timedelta(hours=12)).utcoffset()
    )
    return f"{clock} {local.tzname()}" if changes else clock


def local_datetime(moment: datetime) -> str:
    """An instant as ``Sun 6 Dec 2026, 14:25`` in London time."""
    local = moment.astimezone(LONDON)
    return f"{local:%a} {local.day} {local:%b %Y}, {local_time(moment)}"


def period_times(period: SettlementPeriod) -> str:
    """A period as ``14:30–15:00``; on a clock-change day each time carries its zone."""
    if _clock_change(period.settlement_date, period.length_minutes):
        start, end = period.start_local, period.end_local
        return f"{start:%H:%M} {start.tzname()}\u2013{end:%H:%M} {end.tzname()}"
    return f"{period.start_local:%H:%M}\u2013{period.end_local:%H:%M}"


def period_label(period: SettlementPeriod) -> str:
    """``Sun 6 Dec, 14:30–15:00 (period 30)``."""
    day = period.settlement_date
    return f"{day:%a} {day.day} {day:%b}, {period_times(period)} (period {period.period})"


def duration(span: timedelta) -> str:
    """How long until something, in words: ``1 h 25 min``, ``4 min``, ``under a minute``."""
    minutes = int(span.total_seconds() // 60)
    if minutes < 1:
        return "under a minute"
    hours, minutes = divmod(minutes, 60)
    if hours and minutes:
        return f"{hours} h {minutes} min"
    return f"{hours} h" if hours else f"{minutes} min"


def order_status(status: str, filled_kwh: Decimal | None = None, quantity_kwh: Decimal | None = None) -> str:
    """An order's status in words, with what was filled when it was partly filled."""
    if status == "partly_filled":
        return f"Partly filled: {kwh(filled_kwh)} of {kwh(quantity_kwh)}"
    return {"open": "Open", "cancelled": "Cancelled", "filled": "Filled", "unfilled": "Not filled"}.get(
        status, status
    )


FILTERS = {
    "order_status": order_status,
    "pounds": pounds,
    "p_per_kwh": p_per_kwh,
    "kwh": kwh,
    "day_name": day_name,
    "local_time": local_time,
    "local_datetime": local_datetime,
    "period_times": period_times,
    "period_label": period_label,
    "duration": duration,
}
