"""Strategies: a household states, pauses, resumes and removes its own; the energy company sees and
changes any household's by naming it.

Every change is a new version of the strategy (its history) and, as every state-changing request,
a row of the audit log, committed together. A strategy the market refuses (a field out of its
bounds, a price outside the market's range) is a 422 naming each field, of type
``urn:smartbrum:problem:market-rule``: the schema publishes decimals as text, so it cannot state
those bounds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response, status

from api.audit import audit_in
from api.deps import HouseholdDep, OperatorDep, PlatformDep, SessionDep
from api.problems import MARKET_RULE, PROBLEM_RESPONSES, ApiProblemError, FieldProblem
from api.schemas import (
    NO_NUL,
    ElectricVehiclePublic,
    HomeBatteryPublic,
    Page,
    PlanPeriodPublic,
    PvArrayPublic,
    StrategyPlanPublic,
    StrategyPublic,
    StrategyUpdate,
    page,
)
from market.autotrading import StoredPlan, stored_plan
from market.database import transaction
from market.errors import NotFoundError
from market.participants import get_participant
from market.strategies import (
    StoredStrategy,
    StrategyInvalidError,
    pause_strategy,
    remove_strategy,
    resume_strategy,
    set_strategy,
    strategy_history,
    strategy_of,
)

router = APIRouter(responses=PROBLEM_RESPONSES, tags=["strategies"])
ParticipantId = Annotated[str, Path(max_length=64, pattern=NO_NUL)]
Limit = Annotated[int, Query(ge=1, le=1000, description="Items per page.")]
Offset = Annotated[int, Query(ge=0, le=10_000_000, description="Items to skip.")]
_OPERATOR = "/participants/{participant_id}/strategy"


def strategy_public(stored: StoredStrategy) -> StrategyPublic:
    """A version as the API shows it."""
    stated = stored.strategy
    return StrategyPublic(
        participant_id=stored.participant_id,
        version=stored.version,
        paused=stored.paused,
        removed=stored.removed,
        sell_floor_p_per_kwh=None if stated is None else stated.sell_floor_p_per_kwh,
        buy_ceiling_p_per_kwh=None if stated is None else stated.buy_ceiling_p_per_kwh,
        pv=None if stated is None or stated.pv is None else PvArrayPublic(**stated.pv.model_dump()),
        battery=(
            None
            if stated is None or stated.battery is None
            else HomeBatteryPublic(**stated.battery.model_dump())
        ),
        ev=(
            None
            if stated is None or stated.ev is None
            else ElectricVehiclePublic(
                charge_kw=stated.ev.charge_kw,
                plugged_in_from=stated.ev.plugged_in_from.strftime("%H:%M"),
                departure=stated.ev.departure.strftime("%H:%M"),
                energy_needed_kwh=stated.ev.energy_needed_kwh,
            )
        ),
        created_at=stored.created_at,
        created_by=stored.created_by,
    )


def _current(session: SessionDep, participant_id: str) -> StrategyPublic:
    found = strategy_of(session, participant_id)
    if found is None:
        raise NotFoundError("strategy", f"household {participant_id!r} has no strategy")
    return strategy_public(found)


def _set(
    owner: str, actor: str, body: StrategyUpdate, platform: PlatformDep, request: Request
) -> StrategyPublic:
    try:
        with transaction(platform.engine) as session:
            stored = set_strategy(
                session,
                participant_id=owner,
                strategy=body.model_dump(),
                rules=platform.settings.market_rules(),
                now=platform.clock.now(),
                actor=actor,
            )
            audit_in(session, request, platform, 200)
    except StrategyInvalidError as error:
        problems = [FieldProblem(field=name, reason=reason) for name, reason in error.problems]
        raise ApiProblemError(
            422,
            "; ".join(f"{p.field}: {p.reason}" for p in problems),
            errors=problems,
            type_=MARKET_RULE,
        ) from None
    return strategy_public(stored)


def _change(
    change: Callable[..., StoredStrategy], owner: str, actor: str, platform: PlatformDep, request: Request
) -> StoredStrategy:
    with transaction(platform.engine) as session:
        stored = change(
            session,
            participant_id=owner,
            rules=platform.settings.market_rules(),
            now=platform.clock.now(),
            actor=actor,
        )
        audit_in(session, request, platform, 204 if change is remove_strategy else 200)
    return stored


def _plan(session: SessionDep, platform: PlatformDep, participant_id: str) -> StrategyPlanPublic:
    found = stored_plan(session, participant_id, length_minutes=platform.settings.interval_minutes)
    if found is None:
        raise NotFoundError("plan", f"household {participant_id!r} has no plan yet")
    return plan_public(found)


def plan_public(found: StoredPlan) -> StrategyPlanPublic:
    """A household's latest plan as the API shows it."""
    return StrategyPlanPublic(
        participant_id=found.participant_id,
        planned_at=found.planned_at,
        expected_cost_p=found.expected_cost_p,
        battery_start_kwh=found.battery_start_kwh,
        periods=[
            PlanPeriodPublic(
                settlement_date=p.period.settlement_date,
                period=p.period.period,
                start=p.period.start_utc,
                end=p.period.end_utc,
                battery_soc_kwh=p.battery_soc_kwh,
                ev_charge_kwh=p.ev_charge_kwh,
            )
            for p in found.periods
        ],
    )


def _history(session: SessionDep, owner: str, limit: int, offset: int) -> Page[StrategyPublic]:
    found = strategy_history(session, owner, limit=limit + 1, offset=offset)
    return page([strategy_public(version) for version in found], limit, offset)


# --- the household's own -------------------------------------------------------------------------


@router.get("/strategy", response_model=StrategyPublic)
def my_strategy(participant: HouseholdDep, session: SessionDep) -> StrategyPublic:
    """My strategy in force (paused or not); 404 when I have none."""
    return _current(session, participant.id)


@router.put("/strategy", response_model=StrategyPublic)
def set_my_strategy(
    body: StrategyUpdate, participant: HouseholdDep, platform: PlatformDep, request: Request
) -> StrategyPublic:
    """State my strategy: a new version, in force from now (a paused one stays paused)."""
    return _set(participant.id, participant.id, body, platform, request)


@router.delete("/strategy", status_code=status.HTTP_204_NO_CONTENT)
def remove_my_strategy(participant: HouseholdDep, platform: PlatformDep, request: Request) -> Response:
    """Remove my strategy: a version without one, its history kept, and its open orders before
    their gates cancelled."""
    _change(remove_strategy, participant.id, participant.id, platform, request)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/strategy/pause", response_model=StrategyPublic)
def pause_my_strategy(participant: HouseholdDep, platform: PlatformDep, request: Request) -> StrategyPublic:
    """Pause my strategy: the platform places no orders for it, and cancels its open ones before
    their gates. Pausing a paused strategy changes nothing."""
    return strategy_public(_change(pause_strategy, participant.id, participant.id, platform, request))


@router.post("/strategy/resume", response_model=StrategyPublic)
def resume_my_strategy(participant: HouseholdDep, platform: PlatformDep, request: Request) -> StrategyPublic:
    """Resume my paused strategy. Resuming one that is not paused changes nothing."""
    return strategy_public(_change(resume_strategy, participant.id, participant.id, platform, request))


@router.get("/strategy/history", response_model=Page[StrategyPublic])
def my_strategy_history(
    participant: HouseholdDep, session: SessionDep, limit: Limit = 100, offset: Offset = 0
) -> Page[StrategyPublic]:
    """Every version of my strategy, oldest first: who changed it and when."""
    return _history(session, participant.id, limit, offset)


@router.get("/strategy/plan", response_model=StrategyPlanPublic)
def my_plan(participant: HouseholdDep, session: SessionDep, platform: PlatformDep) -> StrategyPlanPublic:
    """The platform's latest plan for my strategy: my battery's state of charge and my EV's
    charging in each period to come; 404 before the first."""
    return _plan(session, platform, participant.id)


# --- the operator's ------------------------------------------------------------------------------


def _household(session: SessionDep, participant_id: str) -> str:
    """The named household's id; 404 for no such participant (the market says if it is none)."""
    return get_participant(session, participant_id).id


@router.get(_OPERATOR, response_model=StrategyPublic)
def household_strategy(participant_id: ParticipantId, _: OperatorDep, session: SessionDep) -> StrategyPublic:
    """A household's strategy in force; 404 when it has none."""
    return _current(session, _household(session, participant_id))


@router.put(_OPERATOR, response_model=StrategyPublic)
def set_household_strategy(
    participant_id: ParticipantId,
    body: StrategyUpdate,
    operator: OperatorDep,
    platform: PlatformDep,
    request: Request,
) -> StrategyPublic:
    """State a household's strategy for it (the version names the operator)."""
    return _set(participant_id, operator.id, body, platform, request)


@router.delete(_OPERATOR, status_code=status.HTTP_204_NO_CONTENT)
def remove_household_strategy(
    participant_id: ParticipantId, operator: OperatorDep, platform: PlatformDep, request: Request
) -> Response:
    """Remove a household's strategy."""
    _change(remove_strategy, participant_id, operator.id, platform, request)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(f"{_OPERATOR}/pause", response_model=StrategyPublic)
def pause_household_strategy(
    participant_id: ParticipantId, operator: OperatorDep, platform: PlatformDep, request: Request
) -> StrategyPublic:
    """Pause a household's strategy."""
    return strategy_public(_change(pause_strategy, participant_id, operator.id, platform, request))


@router.post(f"{_OPERATOR}/resume", response_model=StrategyPublic)
def resume_household_strategy(
    participant_id: ParticipantId, operator: OperatorDep, platform: PlatformDep, request: Request
) -> StrategyPublic:
    """Resume a household's paused strategy."""
    return strategy_public(_change(resume_strategy, participant_id, operator.id, platform, request))


@router.get(f"{_OPERATOR}/history", response_model=Page[StrategyPublic])
def household_strategy_history(
    participant_id: ParticipantId,
    _: OperatorDep,
    session: SessionDep,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[StrategyPublic]:
    """Every version of a household's strategy, oldest first."""
    return _history(session, _household(session, participant_id), limit, offset)


@router.get(f"{_OPERATOR}/plan", response_model=StrategyPlanPublic)
def household_plan(
    participant_id: ParticipantId, _: OperatorDep, session: SessionDep, platform: PlatformDep
) -> StrategyPlanPublic:
    """The platform's latest plan for a household's strategy; 404 before its first."""
    return _plan(session, platform, _household(session, participant_id))
