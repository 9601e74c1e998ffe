"""Charts drawn on the server as SVG geometry, for templates to render beside their tables.

A chart is a description (its title and a summary in words for screen readers) and shapes in a
fixed view box, scaled by CSS; colour never carries meaning alone (the tariffs are dashed and
dotted lines, named in the legend). May import :mod:`market`'s pure parts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from market.intervals import SettlementPeriod
from market.prices import PeriodPrices
from web.format import kwh, p_per_kwh, period_times

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


# --- Energy ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PeriodEnergy:
    """One period's metered energy over a household's meters; None where none is known yet."""

    period: SettlementPeriod
    import_kwh: Decimal | None
    export_kwh: Decimal | None
    #: Some of it is an estimate, to be replaced when the meter's readings arrive.
    estimated: bool


@dataclass(frozen=True)
class EnergyChart:
    """Imports as bars above the axis, exports as bars below it; estimated bars hatched (and
    named in their labels), so neither direction nor estimate is told by colour alone."""

    summary: str
    bars: list[Bar]
    estimated: list[bool]
    directions: list[str]
    zero_y: float
    ticks: list[Tick]
    x_ticks: list[XTick]
    width: int = WIDTH
    height: int = HEIGHT


def energy_chart(energy: Sequence[PeriodEnergy], *, day: str) -> EnergyChart:
    """The chart of one day's metered energy per period; ``day`` names it in the summary."""
    imports = [e.import_kwh for e in energy if e.import_kwh is not None]
    exports = [e.export_kwh for e in energy if e.export_kwh is not None]
    high = max([Decimal("0.5"), *imports])
    low = -max([Decimal("0.5"), *exports])
    span = high - low
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / max(len(energy), 1)

    def y_of(value: Decimal) -> float:
        return TOP + float((high - value) / span) * plot_h

    zero = y_of(Decimal(0))
    bars, estimated, directions = [], [], []
    for i, e in enumerate(energy):
        note = ", estimated" if e.estimated else ""
        for direction, value in (("import", e.import_kwh), ("export", e.export_kwh)):
            if value is None or value == 0:
                continue
            top = y_of(value if direction == "import" else -value)
            bars.append(
                Bar(
                    x=LEFT + i * step + step * 0.15,
                    y=min(top, zero),
                    width=step * 0.7,
                    height=max(abs(zero - top), 1.0),
                    label=f"{period_times(e.period)}: {direction} {kwh(value)}{note}",
                )
            )
            estimated.append(e.estimated)
            directions.append(direction)
    ticks = [Tick(y_of(v), f"{v.normalize():f}") for v in _nice_energy_ticks(low, high)]
    x_ticks = [
        XTick(LEFT + i * step, f"{e.period.start_local:%H:%M}")
        for i, e in enumerate(energy)
        if e.period.start_local.minute == 0 and e.period.start_local.hour % 3 == 0
    ]
    known = [e for e in energy if e.import_kwh is not None]
    if known:
        total_in = sum((e.import_kwh or Decimal(0) for e in known), Decimal(0))
        total_out = sum((e.export_kwh or Decimal(0) for e in known), Decimal(0))
        guessed = sum(e.estimated for e in known)
        said = (
            f"energy known for {len(known)} of {len(energy)} periods: {kwh(total_in)} imported, "
            f"{kwh(total_out)} exported"
        )
        if guessed:
            said += f"; {guessed} of those periods estimated"
    else:
        said = f"no energy known yet for any of the {len(energy)} periods"
    summary = f"Your meter's energy on {day}: {said}. The table gives every period."
    return EnergyChart(summary, bars, estimated, directions, zero, ticks, x_ticks)


def _nice_energy_ticks(low: Decimal, high: Decimal) -> list[Decimal]:
    span = high - low
    for size in (Decimal("0.1"), Decimal("0.2"), Decimal("0.5"), Decimal(1), Decimal(2), Decimal(5)):
        if span / size <= 6:
            break
    else:
        size = Decimal(10)
    value = (low / size).to_integral_value(rounding="ROUND_CEILING") * size
    ticks = []
    while value <= high:
        ticks.append(value)
        value += size
    return ticks
