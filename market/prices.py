"""A node's prices over a span of periods: the local price each current clearing run set there,
beside the backstop tariffs in force for each period (what a household's Today page shows).

May import :mod:`market` and SQLModel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

import sqlalchemy as sa
from sqlmodel import Session, col

from market.intervals import SettlementPeriod
from market.tables import ClearingRunRow, NodePriceRow, TariffRow


@dataclass(frozen=True)
class PeriodPrices:
    """One period at one node: its local price once cleared (else ``None``) and the tariffs."""

    period: SettlementPeriod
    local_p_per_kwh: Decimal | None
    import_p_per_kwh: Decimal | None
    export_p_per_kwh: Decimal | None


def node_prices_over(
    session: Session, *, node_id: str, periods: Sequence[SettlementPeriod]
) -> list[PeriodPrices]:
    """Each of ``periods`` (consecutive, oldest first) at ``node_id``: two queries, whatever the span.

    A period not yet cleared, or cleared without a price at the node, has no local price; a period
    before any tariff has none either.
    """
    if not periods:
        return []
    first, last = periods[0].start_utc, periods[-1].start_utc
    length = periods[0].length_minutes
    local = dict(
        session.execute(
            sa.select(col(ClearingRunRow.interval_start_utc), col(NodePriceRow.price_p_per_kwh))
            .join(NodePriceRow, col(NodePriceRow.run_id) == col(ClearingRunRow.id))
            .where(
                col(ClearingRunRow.is_current).is_(True),
                col(ClearingRunRow.length_minutes) == length,
                col(ClearingRunRow.interval_start_utc) >= first,
                col(ClearingRunRow.interval_start_utc) <= last,
                col(NodePriceRow.node_id) == node_id,
            )
        ).all()
    )
    tariffs = tariffs_over(session, periods)
    return [
        PeriodPrices(period, local.get(period.start_utc), *tariff)
        for period, tariff in zip(periods, tariffs, strict=True)
    ]


def tariffs_over(
    session: Session, periods: Sequence[SettlementPeriod]
) -> list[tuple[Decimal | None, Decimal | None]]:
    """The backstop's (import, export) tariffs, p/kWh, in force at each of ``periods`` (oldest
    first); (None, None) before any tariff. One query, whatever the span."""
    if not periods:
        return []
    first, last = periods[0].start_utc, periods[-1].start_utc
    # The tariff in force at the first period, and every later one starting within the span.
    in_force = (
        sa.select(col(TariffRow.effective_from_utc))
        .where(col(TariffRow.effective_from_utc) <= first)
        .order_by(col(TariffRow.effective_from_utc).desc())
        .limit(1)
        .scalar_subquery()
    )
    tariffs = session.execute(
        sa.select(
            col(TariffRow.effective_from_utc),
            col(TariffRow.import_p_per_kwh),
            col(TariffRow.export_p_per_kwh),
        )
        .where(col(TariffRow.effective_from_utc) >= sa.func.coalesce(in_force, first))
        .where(col(TariffRow.effective_from_utc) <= last)
        .order_by(col(TariffRow.effective_from_utc))
    ).all()
    found = []
    current: tuple[Decimal | None, Decimal | None] = (None, None)
    upcoming = list(tariffs)
    for period in periods:
        while upcoming and upcoming[0][0] <= period.start_utc:
            current = (upcoming[0][1], upcoming[0][2])
            upcoming.pop(0)
        found.append(current)
    return found
