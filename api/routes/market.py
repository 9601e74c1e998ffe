"""Public market data: intervals and their gate closures, cleared prices and volumes per node."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Path, Query

from api.deps import ParticipantDep, PlatformDep, SessionDep
from api.problems import PROBLEM_RESPONSES
from api.schemas import ClearingPublic, IntervalPublic, NodePricePublic, Page, SettlementDate
from market.clearing import current_run, node_prices, trades_of
from market.errors import MarketError, NotFoundError
from market.intervals import InvalidPeriodError, periods_of_day, settlement_period

router = APIRouter(responses=PROBLEM_RESPONSES, tags=["market"])


@router.get("/intervals", response_model=Page[IntervalPublic])
def intervals(
    _: ParticipantDep,
    platform: PlatformDep,
    on: Annotated[SettlementDate, Query(alias="date", description="Settlement date (Europe/London).")],
    limit: Annotated[int, Query(ge=1, le=100)] = 100,
    offset: Annotated[int, Query(ge=0, le=100)] = 0,
) -> Page[IntervalPublic]:
    """A settlement date's periods (46, 48 or 50 at 30 minutes) with UTC times and gate closures."""
    rules = platform.settings.market_rules()
    try:
        periods = periods_of_day(on, length_minutes=rules.interval_minutes)
    except InvalidPeriodError as error:
        raise MarketError("date", str(error)) from None
    page = periods[offset : offset + limit]
    return Page[IntervalPublic](
        items=[IntervalPublic.of(p, rules.gate_closure_utc(p)) for p in page],
        offset=offset,
        limit=limit,
        next_offset=offset + limit if offset + limit < len(periods) else None,
    )


@router.get("/intervals/{day}/{period}/clearing", response_model=ClearingPublic)
def clearing(
    _: ParticipantDep,
    platform: PlatformDep,
    session: SessionDep,
    day: SettlementDate,
    period: Annotated[int, Path(ge=1, le=100)],
) -> ClearingPublic:
    """An interval's cleared prices and volumes per node; not found until it is cleared."""
    rules = platform.settings.market_rules()
    try:
        interval = settlement_period(day, period, length_minutes=rules.interval_minutes)
    except InvalidPeriodError as error:
        raise NotFoundError("period", str(error)) from None
    run = current_run(session, interval)
    if run is None:
        raise NotFoundError("interval", f"{interval.key} has not been cleared")
    traded = sum((t.accepted_kwh for t in trades_of(session, run.id) if t.side == "buy"), Decimal(0))
    return ClearingPublic(
        interval=IntervalPublic.of(interval, rules.gate_closure_utc(interval)),
        run_id=run.id,
        sequence=run.sequence,
        orders=run.orders,
        traded_kwh=traded,
        grid_import_kwh=run.grid_import_kwh,
        grid_export_kwh=run.grid_export_kwh,
        prices=[
            NodePricePublic(
                node=p.node_id, price_p_per_kwh=p.price_p_per_kwh, net_import_kwh=p.net_import_kwh
            )
            for p in node_prices(session, run.id)
        ],
    )
