"""Automatic trading: before each gate closure the platform bids for every household whose
strategy trades, from forecasts of its own meter data (issue 17).

A planning run (:func:`plan_strategies`, the job leader's ``planning`` job after each clearing):

1. **The periods**: the first whose gate closes at least :data:`LEAD` after now, and the next
   ``horizon - 1`` (12 half-hours by default).
2. **The households**: each active household's strategy that is neither paused nor removed
   (:func:`market.strategies.households_with_strategies`), with its node.
3. **Forecasts** of each one's demand and generation from its metered interval energy and its
   declared PV (:func:`market.forecasts.read_forecast_histories`, one query for every active
   household, as the outlook reads all of them; :func:`planning.forecast.forecast_households`
   for those with a strategy).
4. **The price outlook** at each node (:func:`price_outlook`): per period, the mean of the local
   prices the node had at the same Europe/London half-hour over the last :data:`OUTLOOK_DAYS`
   days of cleared intervals, blended (by how many of those days cleared) with an estimate from
   the node's local market's forecast net position (:func:`forecast_positions`,
   :func:`estimated_price`): near the export tariff where its households are forecast to export,
   near the import tariff where they import; beside the backstop's tariffs in force.
5. **The devices' state**: the platform cannot see a battery or an EV, so it assumes they
   follow its plans (the household's own controller, evcc or Home Assistant, carries them out).
   A plan starts from where the household's last plan left its battery (its floor before any
   plan, or when the last plan no longer reaches) and from the energy its EV still needed.
6. **The plans**: one LP per household, many solved together (:func:`planning.plan.plan_households`).
7. **The orders**: each household's strategy orders are made what its plan wants
   (:func:`market.strategies.apply_strategy_orders`: amended or cancelled, never duplicated;
   its own manual orders for a period take precedence), and its plan stored, all or nothing:
   its orders in a savepoint of its own, in a transaction of :data:`BATCH_HOUSEHOLDS` households
   that reads their strategies and open orders together first
   (:func:`market.strategies.read_strategy_books`) and writes the plans of those whose orders
   were made together last. A transaction per household cost a commit
   (a WAL flush on PostgreSQL) and a dozen reads and locks each: most of a 10,000-household run
   (``bench/autotrading.py``). A household whose plan or orders fail is rolled back to its
   savepoint, skipped, logged and counted; the others go on (a batch whose commit fails counts
   all of its households as failed). Before each household the run checks the clock: once the
   first period's gate is within :data:`LEAD` of closing, it stops (committing what its batch
   has done), and the households not reached keep their orders. Clearing never waits for
   planning.

May import :mod:`market`, :mod:`planning` and SQLModel.
"""

from __future__ import annotations

import json
import logging
import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from market.database import chunks, transaction
from market.forecasts import read_forecast_histories
from market.intervals import SettlementPeriod, period_at
from market.network import network_in_force
from market.orders import CANCELLED, SELL, STRATEGY, OrderBatch
from market.participants import HOUSEHOLD
from market.prices import tariffs_over
from market.rules import MarketRules
from market.strategies import (
    StoredStrategy,
    StrategyOrder,
    StrategyOrdersApplied,
    apply_strategy_orders,
    households_with_strategies,
    read_strategy_books,
)
from market.tables import ClearingRunRow, NodePriceRow, OrderRow, ParticipantRow, StrategyPlanRow, TradeRow
from market.units import WH_PER_KWH
from optimiser import Network
from planning.dispatch import battery_dispatch_wh, battery_grid_wh, stored_change_wh
from planning.forecast import HouseholdHistory, MeterHistory, forecast_households
from planning.plan import HouseholdPlan, PlanFailure, plan_households
from planning.plan_inputs import PlanInputError, PlanPeriods, PlanRequest, PriceOutlook
from planning.strategy import ElectricVehicle, HomeBattery, Strategy

log = logging.getLogger("smartbrum.autotrading")

#: Periods planned ahead (12 half-hours: six hours).
HORIZON = 12
#: The least time before a period's gate closure that the platform still bids in it, and the time
#: before the first period's gate closure at which a run stops (the clearing job is never delayed).
LEAD = timedelta(minutes=2)
#: Days of cleared prices the outlook averages, at the same local half-hour; also the days of metered
#: net energy its estimate averages, and the days of cleared prices at which the estimate's weight
#: has gone (with ``n`` such days the expected price is ``n/7`` their mean and ``1 - n/7`` the estimate).
OUTLOOK_DAYS = 7
#: Periods after the horizon whose expected prices value what a battery keeps past it: the rest of
#: the day to come (with the horizon, a day of half-hours).
AFTER_HORIZON = 36
#: Households whose orders and plans one transaction makes (each in a savepoint of its own): few
#: enough that the household and book locks it holds are held well under a second.
BATCH_HOUSEHOLDS = 100
#: Width of the estimate's logistic on the local market's net-import ratio ``r`` (see
#: :func:`estimated_price`): at ``r = +-2 x 0.1`` the price is 88% of the way to a tariff, at
#: ``+-0.3`` 95%. Narrow because a market's price is nearly a step, at the import side when its
#: households import on balance, at the export side when they export; wide enough that a period
#: forecast close to balance (where the forecast's error may flip the sign) is planned near the middle.
OUTLOOK_WIDTH = 0.1
_LONDON = ZoneInfo("Europe/London")
_TICK = Decimal("0.01")


@dataclass(frozen=True)
class NodeOutlook:
    """The prices a node's households plan against, per period (p/kWh)."""

    expected_p_per_kwh: tuple[Decimal, ...]
    import_p_per_kwh: tuple[Decimal, ...]
    export_p_per_kwh: tuple[Decimal, ...]
    #: How many of the periods had a cleared price to average (the others: the estimate alone).
    from_history: int
    #: The expected price in each of the :data:`AFTER_HORIZON` periods after the periods (the
    #: cleared prices' mean blended with the tariffs' middle, as a period with no forecast).
    after_p_per_kwh: tuple[Decimal, ...] = ()


@dataclass(frozen=True)
class NetPosition:
    """What the households of a part of the tree are forecast to import and to export in each
    period, Wh: each household's forecast net import counted on its side, then summed."""

    import_wh: tuple[float, ...]
    export_wh: tuple[float, ...]


@dataclass
class PlanningReport:
    """What a planning run did."""

    periods: tuple[SettlementPeriod, ...] = ()
    households: int = 0
    planned: int = 0
    placed: int = 0
    amended: int = 0
    cancelled: int = 0
    #: Households skipped, with why (their plan or their orders failed).
    failed: dict[str, str] = field(default_factory=dict)
    #: Households not reached before the first period's gate came too close.
    not_reached: int = 0


def planning_periods(rules: MarketRules, now: datetime, *, horizon: int = HORIZON) -> list[SettlementPeriod]:
    """The periods a run at ``now`` plans: the first whose gate closes at least :data:`LEAD`
    after ``now``, and the ``horizon - 1`` after it."""
    period = period_at(now, length_minutes=rules.interval_minutes)
    while rules.gate_closure_utc(period) < now + LEAD:
        period = period.next()
    periods = [period]
    while len(periods) < horizon:
        periods.append(periods[-1].next())
    return periods


def plan_strategies(
    engine: Engine,
    *,
    rules: MarketRules,
    now: datetime,
    clock: Callable[[], datetime] | None = None,
    horizon: int = HORIZON,
) -> PlanningReport:
    """Plan every household whose strategy trades and make its orders what its plan wants; see
    the module docstring. ``clock`` tells the time between households (by default ``now``
    throughout: a run that never stops early)."""
    clock = clock or (lambda: now)
    periods = planning_periods(rules, now, horizon=horizon)
    report = PlanningReport(periods=tuple(periods))
    deadline = rules.gate_closure_utc(periods[0]) - LEAD
    starts = [period.start_utc for period in periods]
    with Session(engine) as session:
        strategies = [stored for stored in households_with_strategies(session) if stored.strategy is not None]
        report.households = len(strategies)
        if not strategies:
            return report
        ids = [stored.participant_id for stored in strategies]
        nodes = _nodes_of(session, ids)
        pv = {s.participant_id: s.strategy.pv for s in strategies if s.strategy is not None}
        # Every active household's history (one query): the strategies' forecasts and the outlook's.
        histories = {
            history.household_id: history
            for history in read_forecast_histories(session, period_starts_utc=starts, pv_by_household=pv)
        }
        markets = local_markets(network_in_force(session, starts[0]).network)
        market_of = {
            household: markets.get(node, node) for household, node in _household_nodes(session).items()
        }
        positions = forecast_positions(list(histories.values()), market_of, starts)
        planned_nodes = sorted(set(nodes.values()))
        outlooks = price_outlook(
            session,
            planned_nodes,
            periods,
            positions={
                node: positions[markets.get(node, node)]
                for node in planned_nodes
                if markets.get(node, node) in positions
            },
        )
        previous = _stored_plans(session, ids)
        untraded = _untraded_in_plans(
            session,
            [
                previous[s.participant_id]
                for s in strategies
                if s.participant_id in previous and s.strategy is not None and s.strategy.battery is not None
            ],
            until=starts[0],
            length=timedelta(minutes=rules.interval_minutes),
        )
    own = [histories.get(i) or HouseholdHistory(i, MeterHistory.empty(), pv.get(i)) for i in ids]
    forecasts = {f.household_id: f for f in forecast_households(own, starts)}
    plan_periods = PlanPeriods(tuple(starts), Decimal(rules.interval_minutes) / 60)
    requests: list[tuple[StoredStrategy, PlanRequest]] = []
    for stored in strategies:
        strategy = stored.strategy
        assert strategy is not None
        outlook = outlooks[nodes[stored.participant_id]]
        forecast = forecasts[stored.participant_id]
        try:
            requests.append(
                (
                    stored,
                    PlanRequest(
                        periods=plan_periods,
                        prices=PriceOutlook(
                            outlook.expected_p_per_kwh, outlook.import_p_per_kwh, outlook.export_p_per_kwh
                        ),
                        strategy=strategy,
                        demand_kwh=forecast.demand_kwh,
                        generation_kwh=forecast.generation_kwh,
                        battery_soc_kwh=_battery_state(
                            strategy, previous.get(stored.participant_id), starts[0], untraded
                        ),
                        ev_energy_needed_kwh=_ev_state(
                            strategy.ev, previous.get(stored.participant_id), starts[0], plan_periods.length
                        ),
                        stored_price_p_per_kwh=None
                        if strategy.battery is None
                        else stored_price(strategy.battery, outlook, plan_periods.length_hours),
                        net_error_wh=forecast.net_error_wh,
                    ),
                )
            )
        except PlanInputError as error:
            report.failed[stored.participant_id] = f"its plan could not be made: {error}"
    plans = plan_households([request for _, request in requests])
    planned = list(zip(requests, plans, strict=True))
    for first in range(0, len(planned), BATCH_HOUSEHOLDS):
        if clock() >= deadline:
            _stop(report, periods, rules, len(planned) - first)
            break
        stopped_at = _apply_batch(
            engine, rules, periods, planned[first : first + BATCH_HOUSEHOLDS], clock, deadline, report
        )
        if stopped_at is not None:
            _stop(report, periods, rules, len(planned) - first - stopped_at)
            break
    return report


def price_outlook(
    session: Session,
    node_ids: Sequence[str],
    periods: Sequence[SettlementPeriod],
    *,
    positions: Mapping[str, NetPosition] | None = None,
) -> dict[str, NodeOutlook]:
    """Each node's expected local price for ``periods``, with the tariffs in force.

    Per period, with ``m`` the mean of the node's cleared prices at the same Europe/London
    half-hour on the ``n`` of the :data:`OUTLOOK_DAYS` days before the first period that cleared
    it, and ``e`` the :func:`estimated_price` from the node's forecast net position in
    ``positions`` (the tariffs' middle for a node without one)::

        expected = (n m + (OUTLOOK_DAYS - n) e) / OUTLOOK_DAYS

    half to even on the 0.01 p tick: a week of cleared prices is the outlook alone, none is the
    estimate alone. The :data:`AFTER_HORIZON` periods after ``periods`` get the same blend with the
    tariffs' middle for ``e`` (no position is forecast that far), for :func:`stored_price`.

    A period before any tariff is planned on the first tariff there is (a platform without one
    cannot clear anyway).
    """
    positions = positions or {}
    tariffs = tariffs_over(session, periods)
    known = [t for t in tariffs if t[0] is not None and t[1] is not None]
    if not known:
        raise LookupError("no tariff is in force: nothing can be planned")
    filled = [t if t[0] is not None and t[1] is not None else known[0] for t in tariffs]
    imports = tuple(Decimal(t[0]) for t in filled)  # type: ignore[arg-type]
    exports = tuple(Decimal(t[1]) for t in filled)  # type: ignore[arg-type]
    since = periods[0].start_utc - timedelta(days=OUTLOOK_DAYS)
    seen: dict[tuple[str, str], list[Decimal]] = defaultdict(list)
    for ids in chunks(list(node_ids)):
        rows = session.execute(
            sa.select(
                col(ClearingRunRow.interval_start_utc),
                col(NodePriceRow.node_id),
                col(NodePriceRow.price_p_per_kwh),
            )
            .join(NodePriceRow, col(NodePriceRow.run_id) == col(ClearingRunRow.id))
            .where(
                col(ClearingRunRow.is_current).is_(True),
                col(ClearingRunRow.length_minutes) == periods[0].length_minutes,
                col(ClearingRunRow.interval_start_utc) >= since,
                col(ClearingRunRow.interval_start_utc) < periods[0].start_utc,
                col(NodePriceRow.node_id).in_(ids),
            )
        )
        for start, node, price in rows:
            seen[(node, _slot(start))].append(Decimal(price))
    after = [periods[-1].next()]
    while len(after) < AFTER_HORIZON:
        after.append(after[-1].next())
    middle = (imports[-1] + exports[-1]) / 2  # the last tariffs, held after the horizon
    outlooks = {}
    for node in node_ids:
        position = positions.get(node)
        expected, from_history = [], 0
        for index, (period, imported, exported) in enumerate(zip(periods, imports, exports, strict=True)):
            if position is None:
                estimate = (imported + exported) / 2
            else:
                estimate = estimated_price(
                    position.import_wh[index], position.export_wh[index], imported, exported
                )
            prices = seen.get((node, _slot(period.start_utc)), [])
            from_history += bool(prices)
            expected.append(_blend(prices, estimate))
        later = tuple(_blend(seen.get((node, _slot(period.start_utc)), []), middle) for period in after)
        outlooks[node] = NodeOutlook(tuple(expected), imports, exports, from_history, later)
    return outlooks


def _blend(prices: Sequence[Decimal], estimate: Decimal) -> Decimal:
    """``n`` days' cleared prices at a half-hour blended with an estimate (see
    :func:`price_outlook`), on the tick."""
    if not prices:
        return estimate.quantize(_TICK, rounding=ROUND_HALF_EVEN)
    days = min(len(prices), OUTLOOK_DAYS)
    mean = sum(prices, Decimal(0)) / len(prices)
    price = (days * mean + (OUTLOOK_DAYS - days) * estimate) / OUTLOOK_DAYS
    return price.quantize(_TICK, rounding=ROUND_HALF_EVEN)


def stored_price(battery: HomeBattery, outlook: NodeOutlook, hours: Decimal) -> Decimal | None:
    """What a kWh a battery keeps past the horizon is expected to fetch: the mean expected price
    of the dearest periods after it, as many as a full battery needs to empty at its discharge
    power (it would discharge in those), within the tariffs; None without prices after.

    The horizon's mean price (the plan's default) undervalues it: at midday the evening peak is
    still beyond six hours, and a battery that sees only the cheap afternoon never charges for it.
    """
    if not outlook.after_p_per_kwh:
        return None
    usable = battery.ceiling_kwh - battery.floor_kwh
    per_period = battery.discharge_kw * hours
    count = max(1, min(len(outlook.after_p_per_kwh), math.ceil(usable / per_period))) if per_period > 0 else 1
    dearest = sorted(outlook.after_p_per_kwh, reverse=True)[:count]
    price = sum(dearest, Decimal(0)) / count
    low, high = outlook.export_p_per_kwh[-1], outlook.import_p_per_kwh[-1]
    return min(max(price, low), high).quantize(_TICK, rounding=ROUND_HALF_EVEN)


def estimated_price(
    import_wh: float, export_wh: float, import_p_per_kwh: Decimal, export_p_per_kwh: Decimal
) -> Decimal:
    r"""A local price estimated from a market's forecast imports and exports in a period.

    A local market clears near the import tariff when its households import on balance (the
    backstop or the dearest buyers set the price) and near the export tariff when they export (the
    cheapest sellers or the backstop's purchase). With the net-import ratio
    ``r = (import - export) / (import + export)`` (from -1, all export, to 1, all import; 0 when
    nothing is forecast) the estimate is a logistic position between the tariffs::

        price = export_tariff + (import_tariff - export_tariff) / (1 + exp(-r / OUTLOOK_WIDTH))

    so a balanced market (and one with no forecast at all) is expected at the tariffs' middle.
    Congestion is not modelled: a binding edge shows in the node's cleared prices once it has some.

    Parameters
    ----------
    import_wh, export_wh : float
        The market's forecast imports and exports in the period (:class:`NetPosition`), >= 0.
    import_p_per_kwh, export_p_per_kwh : Decimal
        The tariffs in force.

    Returns
    -------
    Decimal
        The estimate, p/kWh, within the tariffs (not yet on the tick).
    """
    gross = import_wh + export_wh
    ratio = (import_wh - export_wh) / gross if gross > 0 else 0.0
    share = 1.0 / (1.0 + math.exp(-ratio / OUTLOOK_WIDTH))
    return export_p_per_kwh + (import_p_per_kwh - export_p_per_kwh) * Decimal(f"{share:.6f}")


def local_markets(network: Network) -> dict[str, str]:
    """Each node's local market: the subtree of its ancestor just below the root (itself if it is
    that node; the root for the root), the part of the tree whose households trade with each other
    before the backstop at the root. Edge limits are left out, as in :func:`estimated_price`."""
    parent = {node.id: node.parent for node in network.nodes}
    markets = {network.root: network.root}
    for node_id in parent:
        top = node_id
        while parent[top] != network.root:
            top = parent[top]
        markets[node_id] = top
    return markets


def forecast_positions(
    histories: Sequence[HouseholdHistory], market_of: Mapping[str, str], starts_utc: Sequence[datetime]
) -> dict[str, NetPosition]:
    """Each local market's forecast imports and exports in the periods starting ``starts_utc``.

    A household's forecast net import in a period is the mean of its metered ``import - export``
    at the same Europe/London half-hour on the :data:`OUTLOOK_DAYS` days before (estimated
    periods left out): the meter's net needs no PV split, so a household's PV counts whether or
    not it declared its array. A household without any of those readings is left out. Positive
    forecasts add to its market's imports, negative ones to its exports.

    Parameters
    ----------
    histories : sequence of HouseholdHistory
        Every household's meter history (:func:`market.forecasts.read_forecast_histories`, whose
        windows hold these days).
    market_of : mapping of household id to node id
        Each household's local market (:func:`local_markets` of its node); others are left out.
    starts_utc : sequence of datetime
        The periods, aware.

    Returns
    -------
    dict of node id to NetPosition
        One per market with at least one household.
    """
    # (periods, days): the same wall-clock half-hour on each earlier day, as epoch seconds.
    earlier = np.array(
        [
            [
                int(datetime.combine(local.date() - timedelta(days=days), local.time(), _LONDON).timestamp())
                for days in range(1, OUTLOOK_DAYS + 1)
            ]
            for local in (start.astimezone(_LONDON) for start in starts_utc)
        ],
        dtype=np.int64,
    )
    imports: dict[str, np.ndarray] = {}
    exports: dict[str, np.ndarray] = {}
    for household in histories:
        market = market_of.get(household.household_id)
        if market is None:
            continue
        imports.setdefault(market, np.zeros(len(starts_utc)))
        exports.setdefault(market, np.zeros(len(starts_utc)))
        history = household.history
        if len(history.start_s) == 0:
            continue
        at = np.clip(np.searchsorted(history.start_s, earlier), 0, len(history.start_s) - 1)
        found = (history.start_s[at] == earlier) & ~history.estimated[at]
        net = np.where(found, history.import_wh[at] - history.export_wh[at], 0).astype(np.float64)
        counted = found.sum(axis=1)
        mean = np.divide(net.sum(axis=1), counted, out=np.zeros(len(starts_utc)), where=counted > 0)
        imports[market] += np.clip(mean, 0, None)
        exports[market] += np.clip(-mean, 0, None)
    return {
        market: NetPosition(tuple(imports[market].tolist()), tuple(exports[market].tolist()))
        for market in imports
    }


def latest_plan(session: Session, participant_id: str) -> StrategyPlanRow | None:
    """The platform's latest plan for a household (None before its first)."""
    return session.get(StrategyPlanRow, participant_id)


@dataclass(frozen=True)
class StoredPlanPeriod:
    """One period of a household's latest plan, as the household is shown it."""

    period: SettlementPeriod
    #: The battery's state of charge the plan leaves at the period's end (None without a battery).
    battery_soc_kwh: Decimal | None
    #: What the plan charges the EV in the period.
    ev_charge_kwh: Decimal


@dataclass(frozen=True)
class StoredPlan:
    """A household's latest plan: when it was made, what it expects the periods to cost (p, its
    trades and imbalance at the expected prices), and each period's devices."""

    participant_id: str
    planned_at: datetime
    expected_cost_p: Decimal
    battery_start_kwh: Decimal | None
    periods: tuple[StoredPlanPeriod, ...]


def stored_plan(session: Session, participant_id: str, *, length_minutes: int) -> StoredPlan | None:
    """The household's latest plan in kWh and settlement periods (None before its first)."""
    row = latest_plan(session, participant_id)
    if row is None:
        return None

    def kwh(wh: int | None) -> Decimal | None:
        return None if wh is None else Decimal(wh) / WH_PER_KWH

    return StoredPlan(
        participant_id=row.participant_id,
        planned_at=row.planned_at,
        expected_cost_p=row.expected_cost_p,
        battery_start_kwh=kwh(row.battery_soc_wh),
        periods=tuple(
            StoredPlanPeriod(
                period_at(start, length_minutes=length_minutes), kwh(soc), Decimal(ev) / WH_PER_KWH
            )
            for start, soc, ev in planned_periods(row)
        ),
    )


def planned_periods(row: StrategyPlanRow) -> list[tuple[datetime, int | None, int]]:
    """A stored plan's periods: (start, battery state of charge at its end in Wh or None without
    a battery, EV charging in Wh)."""
    return [(datetime.fromisoformat(start), soc, ev) for start, soc, ev in json.loads(row.periods_json)]


# --- inside a run -------------------------------------------------------------------------------


def _slot(start: datetime) -> str:
    """A period's Europe/London wall-clock start (a day's half-hour, the clock change's twice)."""
    return start.astimezone(_LONDON).strftime("%H:%M")


def _apply_batch(
    engine: Engine,
    rules: MarketRules,
    periods: Sequence[SettlementPeriod],
    batch: Sequence[tuple[tuple[StoredStrategy, PlanRequest], HouseholdPlan | PlanFailure]],
    clock: Callable[[], datetime],
    deadline: datetime,
    report: PlanningReport,
) -> int | None:
    """Make the orders and store the plans of a batch of households in one transaction, each in
    a savepoint of its own, counted on ``report``. Returns None, or the index in ``batch`` of the
    first household not reached before the deadline (it and those after keep their orders)."""
    done: list[StrategyOrdersApplied] = []
    plans_made: list[tuple[str, PlanRequest, HouseholdPlan, datetime]] = []
    reached = 0
    stopped_at: int | None = None
    try:
        with transaction(engine) as session:
            ids = [stored.participant_id for (stored, _), plan in batch if isinstance(plan, HouseholdPlan)]
            books = read_strategy_books(
                session, rules=rules, participant_ids=ids, periods=periods, now=clock()
            )
            stored_plans = _stored_plans(session, ids)  # so that storing each plan reads nothing
            new_orders = OrderBatch()  # the batch's new orders, written together at its end
            for (stored, request), plan in batch:
                household = stored.participant_id
                if clock() >= deadline:
                    stopped_at = reached
                    break
                reached += 1
                if isinstance(plan, PlanFailure):
                    report.failed[household] = f"its plan could not be made: {plan.reason}"
                    continue
                mark = new_orders.mark()
                try:
                    with session.begin_nested():
                        applied = apply_strategy_orders(
                            session,
                            rules=rules,
                            participant_id=household,
                            desired=_desired_orders(periods, plan),
                            now=clock(),
                            books=books,
                            batch=new_orders,
                        )
                except Exception as error:  # one household never stops the others
                    new_orders.discard_since(mark)
                    log.exception("planning %s failed", household)
                    report.failed[household] = (
                        f"its orders could not be made: {type(error).__name__}: {error}"
                    )
                    continue
                done.append(applied)
                plans_made.append((household, request, plan, clock()))
            new_orders.write(session)
            # The plans of the households whose orders were made, written together at the end:
            # the batch's transaction keeps them with their orders.
            for household, request, plan, planned_at in plans_made:
                _store_plan(
                    session, household, request, plan, planned_at=planned_at, row=stored_plans.get(household)
                )
    except Exception as error:  # the batch's transaction failed: none of its work was kept
        log.exception("planning a batch of %d households failed", len(batch))
        for (stored, _), _plan in batch if stopped_at is None else batch[:stopped_at]:
            report.failed.setdefault(
                stored.participant_id, f"its orders could not be made: {type(error).__name__}: {error}"
            )
        return stopped_at
    report.planned += len(done)
    for applied in done:
        report.placed += len(applied.placed)
        report.amended += len(applied.amended)
        report.cancelled += len(applied.cancelled)
    return stopped_at


def _stop(report: PlanningReport, periods: Sequence[SettlementPeriod], rules: MarketRules, left: int) -> None:
    report.not_reached = left
    log.warning(
        "planning stopped: the gate of %s closes at %s; %d households keep their orders",
        periods[0].key,
        rules.gate_closure_utc(periods[0]).isoformat(),
        left,
    )


def _stored_plans(session: Session, participant_ids: Sequence[str]) -> dict[str, StrategyPlanRow]:
    """The households' stored plans, in this session, one query for all."""
    found: dict[str, StrategyPlanRow] = {}
    for ids in chunks(list(participant_ids)):
        for row in session.exec(select(StrategyPlanRow).where(col(StrategyPlanRow.participant_id).in_(ids))):
            found[row.participant_id] = row
    return found


def _household_nodes(session: Session) -> dict[str, str]:
    """Every active household's node."""
    return dict(
        session.execute(
            sa.select(col(ParticipantRow.id), col(ParticipantRow.node_id)).where(
                col(ParticipantRow.kind) == HOUSEHOLD, col(ParticipantRow.active).is_(True)
            )
        ).all()
    )


def _nodes_of(session: Session, participant_ids: Sequence[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for ids in chunks(list(participant_ids)):
        found.update(
            session.execute(
                sa.select(col(ParticipantRow.id), col(ParticipantRow.node_id)).where(
                    col(ParticipantRow.id).in_(ids)
                )
            ).all()
        )
    return found


@dataclass(frozen=True)
class Untraded:
    """What a household's strategy orders in a cleared period did not trade, Wh."""

    unsold_wh: int
    unbought_wh: int


def untraded_strategy_orders(
    session: Session, participant_ids: Sequence[str], *, since: datetime, until: datetime
) -> dict[tuple[str, datetime], Untraded]:
    """For each household and cleared period starting from ``since`` to before ``until``: what its
    strategy's orders there did not trade (their quantities less what the period's current
    clearing run accepted of them), by side. A period not yet cleared is absent (its battery is
    taken to follow the plan: :mod:`planning.dispatch`)."""
    if not participant_ids or since >= until:
        return {}
    order_table: sa.Table = OrderRow.__table__  # type: ignore[attr-defined]
    run_table: sa.Table = ClearingRunRow.__table__  # type: ignore[attr-defined]
    trades = TradeRow.__table__.c  # type: ignore[attr-defined]
    orders, runs = order_table.c, run_table.c
    accepted = (
        sa.select(sa.func.coalesce(sa.func.sum(trades.accepted_wh), 0))
        .where(trades.run_id == runs.id, trades.order_id == orders.id)
        .scalar_subquery()
    )
    query = (
        sa.select(orders.participant_id, orders.interval_start_utc, orders.side, orders.quantity_wh, accepted)
        .select_from(order_table)
        .join(
            run_table,
            sa.and_(
                runs.interval_start_utc == orders.interval_start_utc,
                runs.length_minutes == orders.length_minutes,
                runs.is_current,
            ),
        )
        .where(
            orders.interval_start_utc >= since,
            orders.interval_start_utc < until,
            orders.source == STRATEGY,
            orders.status != CANCELLED,
        )
    )
    short: dict[tuple[str, datetime], list[int]] = {}
    for ids in chunks(list(participant_ids)):
        for participant, start, side, quantity, traded in session.execute(
            query.where(orders.participant_id.in_(ids))
        ):
            cell = short.setdefault((participant, start), [0, 0])
            cell[0 if side == SELL else 1] += int(quantity) - int(traded)
    return {key: Untraded(unsold, unbought) for key, (unsold, unbought) in short.items()}


def _untraded_in_plans(
    session: Session, plans: Sequence[StrategyPlanRow], *, until: datetime, length: timedelta
) -> dict[tuple[str, datetime], Untraded]:
    """:func:`untraded_strategy_orders` for each stored plan's own periods that began before
    ``until``: a plan made long ago (a strategy paused for a month) reads its dozen periods, not
    the month since. One query for the plans that share their periods (a run plans everyone at
    once, so usually one)."""
    windows: dict[tuple[datetime, datetime], list[str]] = {}
    for plan in plans:
        starts = [start for start, _, _ in planned_periods(plan)]
        if starts:
            window = (plan.first_start_utc, min(starts[-1] + length, until))
            windows.setdefault(window, []).append(plan.participant_id)
    found: dict[tuple[str, datetime], Untraded] = {}
    for (since, end), ids in windows.items():
        found.update(untraded_strategy_orders(session, ids, since=since, until=end))
    return found


def _battery_state(
    strategy: Strategy,
    previous: StrategyPlanRow | None,
    start: datetime,
    untraded: Mapping[tuple[str, datetime], Untraded] | None = None,
) -> Decimal | None:
    """The battery's state of charge the plan starts from, kWh: where the previous plan left it by
    ``start`` (idle after its horizon), each cleared period of it as the battery carried it out
    (:func:`planning.dispatch.battery_dispatch_wh`: the plan less what its orders there did not
    trade, from ``untraded``), within the battery's capacity; its floor before any plan."""
    battery = strategy.battery
    if battery is None:
        return None
    if previous is None or previous.battery_soc_wh is None:
        return battery.floor_kwh
    untraded = untraded or {}
    efficiency = float(battery.round_trip_efficiency_percent) / 100
    soc_wh = planned_wh = previous.battery_soc_wh
    for period_start, planned_after, _ in planned_periods(previous):
        if period_start >= start or planned_after is None:
            break
        short = untraded.get((previous.participant_id, period_start))
        planned_grid = battery_grid_wh(planned_wh, planned_after, efficiency)
        done = (
            planned_grid
            if short is None
            else battery_dispatch_wh(planned_grid, short.unsold_wh, short.unbought_wh)
        )
        soc_wh += planned_after - planned_wh if done == planned_grid else stored_change_wh(done, efficiency)
        planned_wh = planned_after
    return min(max(Decimal(soc_wh) / WH_PER_KWH, Decimal(0)), battery.capacity_kwh)


def _ev_state(
    ev: ElectricVehicle | None, previous: StrategyPlanRow | None, start: datetime, length: timedelta
) -> Decimal | None:
    """The EV's energy still needed by the departure of the window ``start`` is in, kWh; None
    outside a window (the next window needs the strategy's whole ``energy_needed_kwh``)."""
    if ev is None:
        return None
    opened = _window_start(ev, start)
    if opened is None:
        return None
    needed_wh = int(ev.energy_needed_kwh * WH_PER_KWH)
    if previous is not None and previous.first_start_utc <= start:
        if previous.first_start_utc >= opened and previous.ev_needed_wh is not None:
            needed_wh, counted_from = previous.ev_needed_wh, previous.first_start_utc
        else:
            counted_from = opened
        for period_start, _, ev_wh in planned_periods(previous):
            if counted_from <= period_start < start:
                needed_wh -= ev_wh
    return Decimal(max(needed_wh, 0)) / WH_PER_KWH


def _window_start(ev: ElectricVehicle, moment: datetime) -> datetime | None:
    """When the EV's plugged-in window that holds ``moment`` opened (UTC), or None outside one."""
    local = moment.astimezone(_LONDON)
    hours = ev.window_hours()
    for days_back in (0, 1):
        day = local.date() - timedelta(days=days_back)
        opened = datetime.combine(day, ev.plugged_in_from, _LONDON)
        closes = opened.astimezone(_LONDON) + timedelta(hours=float(hours))
        if opened <= local < closes:
            return opened.astimezone(moment.tzinfo)
    return None


def _desired_orders(
    periods: Sequence[SettlementPeriod], plan: HouseholdPlan
) -> dict[SettlementPeriod, list[StrategyOrder]]:
    return {
        period: [
            StrategyOrder(str(order.side), order.energy_wh, order.limit_p_per_kwh) for order in planned.orders
        ]
        for period, planned in zip(periods, plan.periods, strict=True)
    }


def _store_plan(
    session: Session,
    participant_id: str,
    request: PlanRequest,
    plan: HouseholdPlan,
    *,
    planned_at: datetime,
    row: StrategyPlanRow | None,
) -> None:
    """Store the household's plan: ``row`` its stored one (read in this session), None before any."""
    battery = request.strategy.battery is not None
    values: dict[str, Any] = {
        "planned_at": planned_at,
        "first_start_utc": request.periods.starts_utc[0],
        "battery_soc_wh": None
        if request.battery_soc_kwh is None
        else int(request.battery_soc_kwh * WH_PER_KWH),
        "ev_needed_wh": (
            None if request.ev_energy_needed_kwh is None else int(request.ev_energy_needed_kwh * WH_PER_KWH)
        ),
        "periods_json": json.dumps(
            [
                [p.start_utc.isoformat(), p.battery_soc_wh if battery else None, p.ev_charge_wh]
                for p in plan.periods
            ]
        ),
        "expected_cost_p": plan.expected_cost_p.quantize(_TICK, rounding=ROUND_HALF_EVEN),
    }
    if row is None:
        row = StrategyPlanRow(participant_id=participant_id, **values)
    else:
        for name, value in values.items():
            setattr(row, name, value)
    session.add(row)
