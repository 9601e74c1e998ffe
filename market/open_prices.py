"""The public price feed's data: a node's cleared prices and tariffs per period, and what a
household there pays to buy and is paid to sell, for tools outside the platform (evcc, Home
Assistant; ``/open/v1/prices``).

- :func:`published_prices`: each period's price at the node in the interval's *current* clearing
  run (a re-clear replaces it), whether the interval has been cleared at all, and the backstop
  tariffs in force. A period not yet cleared has no price: none is made up.
- :func:`household_rates`: the price a household at the node pays per kWh bought and is paid per
  kWh sold once the platform fee and VAT are charged as settlement charges them
  (:mod:`market.charges`, rules 4 and 6).
- :func:`evcc_slots`: the rates per period, for evcc's forecast: cleared periods at their price,
  the rest at the platform's own outlook (:func:`market.autotrading.price_outlook`, what automatic
  trading plans with), each marked as one or the other.
- :func:`feed_generation`: a few numbers that change whenever a clearing run, a tariff or a
  network version is stored: a cache of the feed is good while they stand.

Which price a node's households trade at: the clearing gives every node of the network its own
nodal price and fills each order at its own node's price (:func:`market.clearing._store_run`), so
a household on a feeder trades at that feeder's price, not at its local market's
(:func:`market.autotrading.local_markets` groups nodes only for the outlook's estimate). The feed
publishes the node's own price.

May import :mod:`market` and SQLModel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

import sqlalchemy as sa
from sqlmodel import Session, col

from market.autotrading import price_outlook
from market.errors import MarketError, NotFoundError
from market.intervals import InvalidPeriodError, SettlementPeriod, period_at, periods_of_day
from market.network import node_sets_from
from market.prices import tariffs_over
from market.tables import ClearingRunRow, NetworkVersionRow, NodePriceRow, TariffRow

#: The longest span one request may ask for: a week of periods (336 at 30 minutes).
MAX_SPAN = timedelta(days=7)
#: What evcc's ``value`` is rounded to (half to even): a millionth of a pound per kWh, a
#: ten-thousandth of a penny, finer than the ledger's hundredth of a penny on any kWh.
EVCC_VALUE_QUANTUM = Decimal("0.000001")
#: The evcc feed's kinds: what a household pays to buy (``grid``), is paid to sell (``feedin``).
EVCC_KINDS = ("grid", "feedin")
_PENCE_PER_POUND = Decimal(100)


@dataclass(frozen=True)
class PublishedPrice:
    """One period at one node, as the feed publishes it (p/kWh).

    ``cleared``: the interval has a current clearing run. ``price_p_per_kwh`` is the node's price
    in it; ``None`` when not cleared (or when the run's network did not have the node yet).
    """

    period: SettlementPeriod
    cleared: bool
    price_p_per_kwh: Decimal | None
    import_p_per_kwh: Decimal | None
    export_p_per_kwh: Decimal | None


@dataclass(frozen=True)
class HouseholdRates:
    """What a household pays per kWh it buys and is paid per kWh it sells (p/kWh, exact)."""

    buy_p_per_kwh: Decimal
    sell_p_per_kwh: Decimal


@dataclass(frozen=True)
class EvccSlot:
    """One period of the evcc feed: its rate (p/kWh, exact) and where it came from."""

    period: SettlementPeriod
    rate_p_per_kwh: Decimal
    #: ``True``: the cleared price; ``False``: the platform's outlook for a period not yet cleared.
    cleared: bool


def periods_requested(
    start: date | datetime | None,
    end: date | datetime | None,
    *,
    today: date,
    length_minutes: int,
) -> list[SettlementPeriod]:
    """The periods a feed request asks for.

    A date ``start`` is the start of that settlement date (Europe/London), a date ``end`` the end
    of that date (so ``from=D&to=D`` is the day D); a datetime ``start`` takes the period that
    contains it, a datetime ``end`` is exclusive (the periods that start before it). Without
    ``start``: the start of ``today``; without ``end``: the end of the day after ``start``'s date
    (today and tomorrow by default).

    Raises
    ------
    MarketError
        ``to`` not after ``from``, a span over :data:`MAX_SPAN`, or a moment outside the dates the
        market holds; each naming the field.
    """
    first = _first_period(start if start is not None else today, length_minutes)
    if end is None:
        end = first.settlement_date + timedelta(days=1)
    end_utc = _end_utc(end, length_minutes)
    if end_utc <= first.start_utc:
        raise MarketError("to", "must be after from")
    if end_utc - first.start_utc > MAX_SPAN:
        raise MarketError("to", f"the feed spans at most {MAX_SPAN.days} days from from")
    periods = [first]
    while periods[-1].end_utc < end_utc:
        periods.append(periods[-1].next())
    return periods


def _first_period(start: date | datetime, length_minutes: int) -> SettlementPeriod:
    try:
        if isinstance(start, datetime):
            return period_at(start, length_minutes=length_minutes)
        return periods_of_day(start, length_minutes=length_minutes)[0]
    except InvalidPeriodError as error:
        raise MarketError("from", str(error)) from None


def _end_utc(end: date | datetime, length_minutes: int) -> datetime:
    try:
        if isinstance(end, datetime):
            # A moment inside a period includes that period.
            return period_at(end - timedelta(microseconds=1), length_minutes=length_minutes).end_utc
        return periods_of_day(end, length_minutes=length_minutes)[-1].end_utc
    except InvalidPeriodError as error:
        raise MarketError("to", str(error)) from None


def check_node(session: Session, node_id: str, periods: Sequence[SettlementPeriod]) -> None:
    """Refuse a node that no network version in force over ``periods`` has.

    Raises
    ------
    NotFoundError
        Naming ``node`` and listing the known nodes (the first 20), as registering a household does.
    """
    last = periods[-1].start_utc
    known: set[str] = set()
    for effective_from, nodes in node_sets_from(session, periods[0].start_utc):
        if effective_from <= last:
            known |= nodes
    if node_id in known:
        return
    if not known:
        raise NotFoundError("node", "no network version is in force over these periods")
    listed = sorted(known)
    more = f" and {len(listed) - 20} more" if len(listed) > 20 else ""
    raise NotFoundError(
        "node", f"{node_id!r} is not a node of the network (its nodes: {', '.join(listed[:20])}{more})"
    )


def published_prices(
    session: Session, *, node_id: str, periods: Sequence[SettlementPeriod]
) -> list[PublishedPrice]:
    """Each of ``periods`` (consecutive, oldest first) at ``node_id``: cleared or not, its price in
    the current run, and the tariffs in force. Two queries, whatever the span."""
    if not periods:
        return []
    cleared = dict(
        session.execute(
            sa.select(col(ClearingRunRow.interval_start_utc), col(NodePriceRow.price_p_per_kwh))
            .outerjoin(
                NodePriceRow,
                sa.and_(
                    col(NodePriceRow.run_id) == col(ClearingRunRow.id),
                    col(NodePriceRow.node_id) == node_id,
                ),
            )
            .where(
                col(ClearingRunRow.is_current).is_(True),
                col(ClearingRunRow.length_minutes) == periods[0].length_minutes,
                col(ClearingRunRow.interval_start_utc) >= periods[0].start_utc,
                col(ClearingRunRow.interval_start_utc) <= periods[-1].start_utc,
            )
        ).all()
    )
    tariffs = tariffs_over(session, periods)
    return [
        PublishedPrice(
            period,
            period.start_utc in cleared,
            cleared.get(period.start_utc),
            imported,
            exported,
        )
        for period, (imported, exported) in zip(periods, tariffs, strict=True)
    ]


def household_rates(
    price_p_per_kwh: Decimal, *, vat_rate: Decimal, platform_fee_p_per_kwh: Decimal
) -> HouseholdRates:
    """What a household pays per kWh bought at ``price_p_per_kwh`` and is paid per kWh sold,
    exactly as settlement charges it (:mod:`market.charges`).

    VAT is charged on what the household pays: its purchases and its platform fees (rules 4, 6).
    Buying at a price ``p >= 0`` costs ``(p + fee)(1 + vat)``; at a negative price the buyer is
    paid ``-p`` (no VAT on that) and pays the fee with VAT: ``p + fee (1 + vat)``. Selling at
    ``p >= 0`` pays ``p - fee (1 + vat)``; at a negative price the seller pays ``-p`` with VAT:
    ``(p - fee)(1 + vat)``. Per kWh, before the ledger rounds each line to a hundredth of a penny.
    """
    gross = 1 + vat_rate
    fee = platform_fee_p_per_kwh * gross
    price = price_p_per_kwh
    buy = (price + platform_fee_p_per_kwh) * gross if price >= 0 else price + fee
    sell = price - fee if price >= 0 else (price - platform_fee_p_per_kwh) * gross
    return HouseholdRates(buy, sell)


def evcc_slots(
    session: Session,
    *,
    node_id: str,
    periods: Sequence[SettlementPeriod],
    kind: str,
    vat_rate: Decimal,
    platform_fee_p_per_kwh: Decimal,
) -> list[EvccSlot]:
    """Each of ``periods`` at ``node_id`` at the household's rate (:func:`household_rates`):
    ``grid`` what it pays to buy, ``feedin`` what it is paid to sell.

    A cleared period takes its price at the node. One not cleared yet takes the platform's outlook
    for it (:func:`market.autotrading.price_outlook`: the node's cleared prices at the same
    half-hour over the last week, blended with the tariffs' middle where fewer days cleared), as
    automatic trading plans with, since evcc plans a car's charging hours ahead and a feed of the
    next half-hour alone would leave it nothing to plan with. The households' forecast net position
    is left out of that outlook (it needs every household's forecast: the planning job's work).
    With no tariff in force the uncleared periods are left out.
    """
    if kind not in EVCC_KINDS:
        raise MarketError("kind", f"must be one of {', '.join(EVCC_KINDS)}")
    published = published_prices(session, node_id=node_id, periods=periods)
    prices: dict[datetime, tuple[Decimal, bool]] = {
        p.period.start_utc: (p.price_p_per_kwh, True) for p in published if p.price_p_per_kwh is not None
    }
    open_periods = [p.period for p in published if p.price_p_per_kwh is None]
    if open_periods:
        try:
            outlook = price_outlook(session, [node_id], open_periods)[node_id]
        except LookupError:  # no tariff in force: nothing to plan on
            outlook = None
        if outlook is not None:
            for period, expected in zip(open_periods, outlook.expected_p_per_kwh, strict=True):
                prices[period.start_utc] = (expected, False)
    slots = []
    for period in periods:
        if period.start_utc not in prices:
            continue
        price, cleared = prices[period.start_utc]
        rates = household_rates(price, vat_rate=vat_rate, platform_fee_p_per_kwh=platform_fee_p_per_kwh)
        slots.append(
            EvccSlot(period, rates.buy_p_per_kwh if kind == "grid" else rates.sell_p_per_kwh, cleared)
        )
    return slots


def pounds_per_kwh(rate_p_per_kwh: Decimal) -> Decimal:
    """``rate_p_per_kwh`` in £/kWh, half to even on :data:`EVCC_VALUE_QUANTUM`."""
    return (rate_p_per_kwh / _PENCE_PER_POUND).quantize(EVCC_VALUE_QUANTUM, rounding=ROUND_HALF_EVEN)


def feed_generation(session: Session) -> tuple[int, ...]:
    """Numbers that change whenever a clearing run, a tariff or a network version is stored.

    One query of three tables' counts and largest ids (the count as well: a run whose
    transaction took a smaller id may commit after one with a larger). A cache of the feed built
    under one generation is good until it changes.
    """
    parts = []
    for table in (ClearingRunRow, TariffRow, NetworkVersionRow):
        parts += [
            sa.select(sa.func.count()).select_from(table).scalar_subquery(),
            sa.select(sa.func.coalesce(sa.func.max(table.id), 0)).scalar_subquery(),
        ]
    row = session.execute(sa.select(*parts)).one()
    return tuple(int(value) for value in row)
