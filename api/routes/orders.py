"""Orders: households place, amend and cancel their own; the energy company sees them all."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Header, Path, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from sqlmodel import Session

from api.audit import audit_in
from api.deps import HouseholdDep, ParticipantDep, PlatformDep, in_thread, read_in_thread
from api.group_commit import GroupCommit, OrderChange, placement
from api.problems import PROBLEM_RESPONSES
from api.schemas import (
    NO_NUL,
    PERIOD_KEY,
    IntervalPublic,
    OrderAmend,
    OrderBatchCreate,
    OrderBatchPublic,
    OrderCreate,
    OrderEventPublic,
    OrderPublic,
    OrderStatus,
    Page,
    SettlementDate,
)
from market.database import transaction
from market.errors import MarketError
from market.intervals import InvalidPeriodError, SettlementPeriod, parse_period_key
from market.orders import (
    MarketOrder,
    OrderRequest,
    amend_order,
    cancel_order,
    get_order,
    list_orders,
    order_history,
    place_order,
    place_orders,
)
from market.participants import OPERATOR
from market.rules import MarketRules

T = TypeVar("T")
router = APIRouter(responses=PROBLEM_RESPONSES, tags=["orders"])
Limit = Annotated[int, Query(ge=1, le=1000, description="Items per page.")]
Offset = Annotated[int, Query(ge=0, le=10_000_000, description="Items to skip.")]
#: An order's id (the market writes UUIDs; any other text is simply not found).
OrderId = Annotated[str, Path(max_length=64, pattern=NO_NUL)]


def interval_of(key: str, rules: MarketRules, field: str = "interval") -> SettlementPeriod:
    try:
        return parse_period_key(key, length_minutes=rules.interval_minutes)
    except InvalidPeriodError as error:
        raise MarketError(field, str(error)) from None


async def _committed(request: Request, order_change: OrderChange[T]) -> T:
    """``order_change`` made and committed with the other order changes this worker is writing
    now, with its order event and its request's audit row (:mod:`api.group_commit`)."""
    group_commit: GroupCommit = request.app.state.group_commit
    return await group_commit.write(order_change)


def order_public(order: MarketOrder, rules: MarketRules) -> OrderPublic:
    return OrderPublic(
        id=order.id,
        participant_id=order.participant_id,
        node=order.node_id,
        interval=IntervalPublic.of(order.period, rules.gate_closure_utc(order.period)),
        side=order.side,
        quantity_kwh=order.quantity_kwh,
        price_p_per_kwh=order.price_p_per_kwh,
        status=order.status,
        filled_kwh=order.filled_kwh,
        fill_price_p_per_kwh=order.fill_price_p_per_kwh,
        version=order.version,
        priority_at=order.priority_at,
        created_at=order.created_at,
        updated_at=order.updated_at,
        source=order.source,
    )


@router.post(
    "/orders",
    status_code=status.HTTP_201_CREATED,
    response_model=OrderPublic,
    responses={200: {"description": "The order this Idempotency-Key already placed", "model": OrderPublic}},
)
async def place(
    body: OrderCreate,
    participant: HouseholdDep,
    platform: PlatformDep,
    request: Request,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=128)] = None,
) -> OrderPublic:
    """Place an order for an interval before its gate closes. A retry with the same
    ``Idempotency-Key`` returns the order already placed (200), never a second one."""
    rules = platform.settings.market_rules()
    period = interval_of(body.interval, rules)

    def place(session: Session) -> tuple[MarketOrder, bool]:
        return place_order(
            session,
            rules=rules,
            participant_id=participant.id,
            period=period,
            side=body.side,
            quantity_kwh=body.quantity_kwh,
            price_p_per_kwh=body.price_p_per_kwh,
            now=platform.clock.now(),
            node_id=body.node,
            idempotency_key=idempotency_key,
        )

    order, created = await _committed(request, placement(participant.id, place, request))
    if not created:
        response.status_code = status.HTTP_200_OK
    return order_public(order, rules)


class BatchRoute(APIRoute):
    """A route whose request validation errors name a list's items as the market does:
    ``orders[3].price_p_per_kwh``, not ``orders.3.price_p_per_kwh``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def indexed(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as error:
                errors = [{**item, "loc": _indexed(tuple(item["loc"]))} for item in error.errors()]
                raise RequestValidationError(
                    errors, body=error.body, endpoint_ctx=error.endpoint_ctx
                ) from None

        return indexed


def _indexed(location: tuple[Any, ...]) -> tuple[Any, ...]:
    parts: list[Any] = []
    for part in location:
        if isinstance(part, int) and parts:
            parts[-1] = f"{parts[-1]}[{part}]"
        else:
            parts.append(part)
    return tuple(parts)


async def place_batch(
    body: OrderBatchCreate,
    participant: HouseholdDep,
    platform: PlatformDep,
    request: Request,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=128)] = None,
) -> OrderBatchPublic:
    """Place a household's orders together (its day, or one period): all of them, or none.

    Each order is checked as ``POST /orders`` checks one, and a refusal names the order
    (``orders[3].price_p_per_kwh``) and stores nothing. A retry with the same ``Idempotency-Key``
    returns the orders already placed (200), never a second batch.
    """
    rules = platform.settings.market_rules()
    requests = [
        OrderRequest(
            period=interval_of(item.interval, rules, f"orders[{i}].interval"),
            side=item.side,
            quantity_kwh=item.quantity_kwh,
            price_p_per_kwh=item.price_p_per_kwh,
            node_id=item.node,
        )
        for i, item in enumerate(body.orders)
    ]

    def write() -> tuple[list[MarketOrder], bool]:
        with transaction(platform.engine) as session:
            stored = place_orders(
                session,
                rules=rules,
                participant_id=participant.id,
                requests=requests,
                now=platform.clock.now(),
                idempotency_key=idempotency_key,
            )
            audit_in(session, request, platform, 201 if stored[1] else 200)
        return stored

    placed, created = await in_thread(write)
    if not created:
        response.status_code = status.HTTP_200_OK
    return OrderBatchPublic(orders=[order_public(order, rules) for order in placed])


router.add_api_route(
    "/orders/batch",
    place_batch,
    methods=["POST"],
    status_code=status.HTTP_201_CREATED,
    response_model=OrderBatchPublic,
    responses={
        200: {"description": "The orders this Idempotency-Key already placed", "model": OrderBatchPublic}
    },
    route_class_override=BatchRoute,
)


@router.get("/orders", response_model=Page[OrderPublic])
async def orders(
    participant: ParticipantDep,
    platform: PlatformDep,
    limit: Limit = 100,
    offset: Offset = 0,
    interval: Annotated[str | None, Query(pattern=PERIOD_KEY, description="DATE/PERIOD")] = None,
    settlement_date: Annotated[SettlementDate | None, Query(alias="date")] = None,
    order_status: Annotated[OrderStatus | None, Query(alias="status")] = None,
    participant_id: Annotated[
        str | None, Query(max_length=64, pattern=NO_NUL, description="Operator only.")
    ] = None,
) -> Page[OrderPublic]:
    """A household's own orders (the operator's: everyone's, or one household's)."""
    rules = platform.settings.market_rules()
    owner = participant.id if participant.kind != OPERATOR else participant_id
    period = interval_of(interval, rules) if interval is not None else None
    found = await read_in_thread(
        platform,
        lambda session: list_orders(
            session,
            participant_id=owner,
            period=period,
            settlement_date=settlement_date,
            status=order_status,
            limit=limit + 1,
            offset=offset,
        ),
    )
    return Page[OrderPublic](
        items=[order_public(order, rules) for order in found[:limit]],
        offset=offset,
        limit=limit,
        next_offset=offset + limit if len(found) > limit else None,
    )


def _visible_to(participant_id: str, kind: str) -> str | None:
    return None if kind == OPERATOR else participant_id


@router.get("/orders/{order_id}", response_model=OrderPublic)
async def order(order_id: OrderId, participant: ParticipantDep, platform: PlatformDep) -> OrderPublic:
    """One order; another household's is not found."""
    visible_to = _visible_to(participant.id, participant.kind)
    found = await read_in_thread(
        platform, lambda session: get_order(session, order_id, participant_id=visible_to)
    )
    return order_public(found, platform.settings.market_rules())


@router.get("/orders/{order_id}/history", response_model=list[OrderEventPublic])
async def history(
    order_id: OrderId, participant: ParticipantDep, platform: PlatformDep
) -> list[OrderEventPublic]:
    """Every change to an order, oldest first."""
    visible_to = _visible_to(participant.id, participant.kind)
    events = await read_in_thread(
        platform, lambda session: order_history(session, order_id, participant_id=visible_to)
    )
    return [OrderEventPublic(**event.__dict__) for event in events]


@router.patch("/orders/{order_id}", response_model=OrderPublic)
async def amend(
    order_id: OrderId, body: OrderAmend, participant: HouseholdDep, platform: PlatformDep, request: Request
) -> OrderPublic:
    """Change an open order's quantity or price before its gate closes."""
    rules = platform.settings.market_rules()

    def write(session: Session) -> MarketOrder:
        return amend_order(
            session,
            rules=rules,
            order_id=order_id,
            participant_id=participant.id,
            now=platform.clock.now(),
            quantity_kwh=body.quantity_kwh,
            price_p_per_kwh=body.price_p_per_kwh,
        )

    return order_public(await _committed(request, OrderChange(participant.id, write, request)), rules)


@router.delete("/orders/{order_id}", response_model=OrderPublic)
async def cancel(
    order_id: OrderId, participant: HouseholdDep, platform: PlatformDep, request: Request
) -> OrderPublic:
    """Cancel an open order before its gate closes; it stays in the history."""
    rules = platform.settings.market_rules()

    def write(session: Session) -> MarketOrder:
        return cancel_order(
            session, rules=rules, order_id=order_id, participant_id=participant.id, now=platform.clock.now()
        )

    return order_public(await _committed(request, OrderChange(participant.id, write, request)), rules)
