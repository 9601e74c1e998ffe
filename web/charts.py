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
from market.orders import BookLevel
from market.prices import PeriodPrices
from market.units import TICKS_PER_P, WH_PER_KWH
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


# --- an interval's supply and demand curves (the operator's Interval page) -------------------


@dataclass(frozen=True)
class CurveLevel:
    """One price of the book with the energy offered at or below it and bid at or above it (in
    the book's integers: price ticks and Wh)."""

    price_ticks: int
    supply_wh: int
    demand_wh: int

    @property
    def price_p_per_kwh(self) -> Decimal:
        return _price(self.price_ticks)

    @property
    def supply_kwh(self) -> Decimal:
        return _energy(self.supply_wh)

    @property
    def demand_kwh(self) -> Decimal:
        return _energy(self.demand_wh)


@dataclass(frozen=True)
class CurvesChart:
    """The book's supply (sells, cheapest first) and demand (buys, dearest first) as step curves,
    with the clearing price as a line across them; ``levels`` is the table equivalent."""

    summary: str
    supply_path: str
    demand_path: str
    clearing_y: float | None
    ticks: list[Tick]
    x_ticks: list[XTick]
    levels: list[CurveLevel]
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


def curves_chart(
    book: Sequence[BookLevel],
    *,
    clearing_price_p_per_kwh: Decimal | None,
    interval: str,
) -> CurvesChart:
    """The curves of one interval's book, given by side and limit price
    (:func:`market.orders.book_levels`); ``interval`` names it in the summary.

    The running sums are the book's own integers (price ticks, Wh): exact, and fast for a book
    of thousands of prices; only the drawing's coordinates are floats.
    """
    offered = _by_price([(level.price_ticks, level.quantity_wh) for level in book if level.side == "sell"])
    bid = _by_price([(level.price_ticks, level.quantity_wh) for level in book if level.side == "buy"])
    sell_orders = sum(level.orders for level in book if level.side == "sell")
    buy_orders = sum(level.orders for level in book if level.side == "buy")
    supply = sorted(offered.items())  # one step per price
    demand = sorted(bid.items(), reverse=True)
    ticks_bid = [*offered, *bid]
    extremes = [_price(min(ticks_bid)), _price(max(ticks_bid))] if ticks_bid else []
    if clearing_price_p_per_kwh is not None:
        extremes.append(clearing_price_p_per_kwh)
    low = min([Decimal(0), *extremes])
    high = max([Decimal(10), *extremes])
    total_supply_wh = sum(offered.values())
    total_demand_wh = sum(bid.values())
    most = max(_energy(total_supply_wh), _energy(total_demand_wh), Decimal(1))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x_of(energy: Decimal) -> float:
        return LEFT + float(energy / most) * plot_w

    def y_of(value: Decimal) -> float:
        return TOP + float((high - value) / (high - low)) * plot_h

    def step_path(steps: Sequence[tuple[int, int]]) -> str:
        """The step curve through ``steps`` (price ticks, Wh) in the plot's coordinates, to a
        tenth of a pixel (the table beside it is exact), leaving out steps too small to see."""
        if not steps:
            return ""
        per_wh = plot_w / float(most * WH_PER_KWH)
        hi, per_tick = float(high), plot_h / float(high - low) / float(TICKS_PER_P)
        total_wh = 0
        y = f"{TOP + (hi * float(TICKS_PER_P) - steps[0][0]) * per_tick:.1f}"
        parts = [f"M{LEFT:.1f},{y}"]
        x = ""
        for ticks, energy_wh in steps:
            step_y = f"{TOP + (hi * float(TICKS_PER_P) - ticks) * per_tick:.1f}"
            if step_y != y:
                parts.append(f"H{x}V{step_y}" if x else f"V{step_y}")
                y, x = step_y, ""
            total_wh += energy_wh
            x = f"{LEFT + total_wh * per_wh:.1f}"
        parts.append(f"H{x}")
        return "".join(parts)

    said = [
        f"{_count(sell_orders, 'sell order offers', 'sell orders offer')} {kwh(_energy(total_supply_wh))}"
        + (
            f" from {p_per_kwh(_price(supply[0][0]))} to {p_per_kwh(_price(supply[-1][0]))}" if supply else ""
        ),
        f"{_count(buy_orders, 'buy order bids', 'buy orders bid')} for {kwh(_energy(total_demand_wh))}"
        + (
            f" from {p_per_kwh(_price(demand[0][0]))} down to {p_per_kwh(_price(demand[-1][0]))}"
            if demand
            else ""
        ),
    ]
    if clearing_price_p_per_kwh is not None:
        said.append(f"it cleared at {p_per_kwh(clearing_price_p_per_kwh)} at the root")
    else:
        said.append("it has not cleared")
    summary = f"Supply and demand for {interval}: {'; '.join(said)}. The table gives every price."
    return CurvesChart(
        summary=summary,
        supply_path=step_path(supply),
        demand_path=step_path(demand),
        clearing_y=None if clearing_price_p_per_kwh is None else y_of(clearing_price_p_per_kwh),
        ticks=[Tick(y_of(v), f"{v.normalize():f}p") for v in _nice_ticks(low, high)],
        x_ticks=[XTick(x_of(v), f"{v.normalize():f}") for v in _round_steps(most)],
        levels=_curve_levels(offered, bid),
    )


def _round_steps(most: Decimal) -> list[Decimal]:
    """Ticks from 0 to ``most`` at a round step (1, 2 or 5 times a power of ten), at most six."""
    size = Decimal(1).scaleb(most.adjusted() - 1)
    factors = (Decimal(2), Decimal("2.5"), Decimal(2))
    i = 0
    while most / size > 5:
        size *= factors[i % 3]
        i += 1
    return [size * n for n in range(int(most / size) + 1)]


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _curve_levels(offered: dict[int, int], bid: dict[int, int]) -> list[CurveLevel]:
    """At each price of the book (ticks), the energy offered at or below it and bid at or above it
    (Wh): running sums in one pass each, as a book may hold thousands of prices."""
    prices = sorted({*offered, *bid})
    supply_at, running = [], 0
    for price in prices:
        running += offered.get(price, 0)
        supply_at.append(running)
    demand_at, running = [], 0
    for price in reversed(prices):
        running += bid.get(price, 0)
        demand_at.append(running)
    demand_at.reverse()
    return [CurveLevel(p, s, d) for p, s, d in zip(prices, supply_at, demand_at, strict=True)]


def _by_price(orders: Sequence[tuple[int, int]]) -> dict[int, int]:
    """The energy (Wh) at each price (ticks), the orders at one price added together."""
    energy_at: dict[int, int] = {}
    for price, energy in orders:
        energy_at[price] = energy_at.get(price, 0) + energy
    return energy_at


def _price(ticks: int) -> Decimal:
    return Decimal(ticks) / TICKS_PER_P


def _energy(energy_wh: int) -> Decimal:
    return Decimal(energy_wh) / WH_PER_KWH
