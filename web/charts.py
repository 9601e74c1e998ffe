"""Charts drawn on the server as SVG geometry, for templates to render beside their tables.

A chart is a description (its title and a summary in words for screen readers) and shapes in a
fixed view box, scaled by CSS; colour never carries meaning alone (the tariffs are dashed and
dotted lines, named in the legend). May import :mod:`market`'s pure parts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from market.prices import PeriodPrices
from web.format import p_per_kwh, period_times

WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 56, 8, 12, 28


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str


@dataclass(frozen=True)
class Tick:
    y: float
    label: str


@dataclass(frozen=True)
class XTick:
    x: float
    label: str


@dataclass(frozen=True)
class PriceChart:
    """The local price per period as bars, the import and export tariffs as step lines."""

    summary: str
    bars: list[Bar]
    import_path: str
    export_path: str
    zero_y: float
    ticks: list[Tick]
    x_ticks: list[XTick]
    width: int = WIDTH
    height: int = HEIGHT


def price_chart(prices: Sequence[PeriodPrices], *, node_id: str, day: str) -> PriceChart:
    """The chart of one day's prices at ``node_id``; ``day`` names it in the summary."""
    values = [
        value
        for p in prices
        for value in (p.local_p_per_kwh, p.import_p_per_kwh, p.export_p_per_kwh)
        if value is not None
    ]
    low = min([Decimal(0), *values])
    high = max([Decimal(10), *values])
    span = high - low
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / max(len(prices), 1)

    def y_of(value: Decimal) -> float:
        return TOP + float((high - value) / span) * plot_h

    zero = y_of(Decimal(0))
    bars = []
    for i, p in enumerate(prices):
        if p.local_p_per_kwh is None:
            continue
        top = y_of(p.local_p_per_kwh)
        bars.append(
            Bar(
                x=LEFT + i * step + step * 0.15,
                y=min(top, zero),
                width=step * 0.7,
                height=max(abs(zero - top), 1.0),
                label=f"{period_times(p.period)}: {p_per_kwh(p.local_p_per_kwh)}",
            )
        )

    def step_path(pick: str) -> str:
        parts = []
        for i, p in enumerate(prices):
            value = getattr(p, pick)
            if value is None:
                continue
            y = y_of(value)
            parts.append(f"M{LEFT + i * step:.1f},{y:.1f}H{LEFT + (i + 1) * step:.1f}")
        return "".join(parts)

    ticks = [Tick(y_of(v), f"{v.normalize():f}p") for v in _nice_ticks(low, high)]
    x_ticks = [
        XTick(LEFT + i * step, f"{p.period.start_local:%H:%M}")
        for i, p in enumerate(prices)
        if p.period.start_local.minute == 0 and p.period.start_local.hour % 3 == 0
    ]
    cleared = [p.local_p_per_kwh for p in prices if p.local_p_per_kwh is not None]
    if cleared:
        said = (
            f"cleared in {len(cleared)} of {len(prices)} periods, from {p_per_kwh(min(cleared))} "
            f"to {p_per_kwh(max(cleared))}"
        )
    else:
        said = f"no period of the {len(prices)} has cleared yet"
    tariffs = {(p.import_p_per_kwh, p.export_p_per_kwh) for p in prices}
    if len(tariffs) == 1:
        imp, exp = next(iter(tariffs))
        said += f"; import tariff {p_per_kwh(imp)}, export tariff {p_per_kwh(exp)}"
    summary = f"Local price at {node_id} on {day}: {said}. The table gives every period."
    return PriceChart(
        summary, bars, step_path("import_p_per_kwh"), step_path("export_p_per_kwh"), zero, ticks, x_ticks
    )


def _nice_ticks(low: Decimal, high: Decimal) -> list[Decimal]:
    span = high - low
    for size in (Decimal(1), Decimal(2), Decimal(5), Decimal(10), Decimal(20), Decimal(50), Decimal(100)):
        if span / size <= 6:
            break
    else:
        size = Decimal(200)
    first = (low / size).to_integral_value(rounding="ROUND_CEILING") * size
    ticks = []
    value = first
    while value <= high:
        ticks.append(value)
        value += size
    return ticks
