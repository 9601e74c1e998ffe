"""The energy company's market pages: the Network (the feeder tree for a period, with each node's
price and each edge's flow against its capacity) and an Interval (its supply and demand curves,
its clearing runs and trades, re-clearing with a reason and verifying a run).

Each calls the market functions the JSON API and the CLI call: :func:`market.clearing.current_run`,
:func:`~market.clearing.node_prices` and :func:`~market.clearing.trades_of` as
``GET /v1/intervals/{day}/{period}/clearing`` does, :func:`~market.clearing.clear_interval` as
``POST /v1/intervals/{day}/{period}/clear`` does, and :func:`~market.clearing.verify_run` as
``smartbrum market verify`` does.

May import :mod:`api.deps`, :mod:`market`, :mod:`optimiser` and :mod:`web`'s own modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel import Session

from api.deps import PlatformDep
from market.clearing import (
    ClearingRun,
    clear_interval,
    count_trades,
    current_run,
    get_run,
    latest_cleared_period,
    node_prices,
    runs_of,
    trades_of,
    verify_run,
)
from market.errors import MarketError
from market.intervals import (
    InvalidPeriodError,
    SettlementPeriod,
    parse_period_key,
    period_at,
    settlement_period,
)
from market.network import NetworkVersion, network_in_force, network_root, network_version
from market.orders import book_levels
from market.rules import MarketRules
from market.units import WH_PER_KWH
from optimiser import SolverError
from web.charts import curves_chart
from web.rendering import render
from web.sessions import OperatorPageDep, PageRefusedError, check_csrf, refuse_nul_in_forms

router = APIRouter(include_in_schema=False, dependencies=[Depends(refuse_nul_in_forms)])

#: Trades listed on one page of an interval.
TRADES_PER_PAGE = 50
#: Prices of the book listed on one page of the curves' table.
LEVELS_PER_PAGE = 48
#: Longest reason a run keeps (its column's width).
MAX_REASON = 500
_NO_PERIOD = "There is no such settlement period. Periods are named like 2026-12-06/27."
_PERCENT = Decimal("0.1")


# --- the network -----------------------------------------------------------------------------


@dataclass(frozen=True)
class EdgeFlow:
    """An edge of the tree in one run, named in the direction its energy flowed."""

    parent: str
    child: str
    from_node: str
    to_node: str
    flow_kwh: Decimal | None
    capacity_kwh: Decimal
    utilisation_percent: Decimal | None
    congested: bool


@dataclass(frozen=True)
class TreeNode:
    """A node of the tree with its price, the edge from its parent, and its children."""

    id: str
    price_p_per_kwh: Decimal | None
    edge: EdgeFlow | None
    children: list[TreeNode]


def edge_flows(version: NetworkVersion, flows_wh: dict[str, int | None]) -> list[EdgeFlow]:
    """Each edge's net flow (into the child, Wh, as a run stores it per node) against the capacity in
    the direction it flowed; an edge at its capacity is congested. Without a run, flows are None."""
    edges = []
    for node in sorted(version.network.nodes, key=lambda n: version.network.node_ids.index(n.id)):
        flow_wh = flows_wh.get(node.id)
        upward = flow_wh is not None and flow_wh < 0
        capacity = node.export_capacity_kwh if upward else node.import_capacity_kwh
        capacity_wh = int(capacity * WH_PER_KWH)
        if flow_wh is None:
            flow, utilisation, congested = None, None, False
        else:
            flow = Decimal(abs(flow_wh)) / WH_PER_KWH
            utilisation = (
                (Decimal(abs(flow_wh) * 100) / capacity_wh).quantize(_PERCENT, rounding=ROUND_HALF_EVEN)
                if capacity_wh
                else None
            )
            congested = flow_wh != 0 and abs(flow_wh) >= capacity_wh
        edges.append(
            EdgeFlow(
                parent=node.parent,
                child=node.id,
                from_node=node.id if upward else node.parent,
                to_node=node.parent if upward else node.id,
                flow_kwh=flow,
                capacity_kwh=capacity,
                utilisation_percent=utilisation,
                congested=congested,
            )
        )
    return edges


def network_tree(version: NetworkVersion, prices: dict[str, Decimal], edges: list[EdgeFlow]) -> TreeNode:
    """The tree from its root, for the page's nested lists."""
    by_child = {edge.child: edge for edge in edges}
    children: dict[str, list[str]] = {}
    for node in version.network.nodes:
        children.setdefault(node.parent, []).append(node.id)

    def build(node_id: str) -> TreeNode:
        return TreeNode(
            id=node_id,
            price_p_per_kwh=prices.get(node_id),
            edge=by_child.get(node_id),
            children=[build(child) for child in sorted(children.get(node_id, ()))],
        )

    return build(version.network.root)


def _period_or_refuse(key: str, rules: MarketRules) -> SettlementPeriod:
    try:
        return parse_period_key(key, length_minutes=rules.interval_minutes)
    except InvalidPeriodError:
        raise PageRefusedError(404, _NO_PERIOD) from None


@router.get("/operator/network")
def network_page(
    request: Request,
    platform: PlatformDep,
    found: OperatorPageDep,
    interval: Annotated[str, Query(max_length=16)] = "",
) -> Response:
    """The feeder tree in force for a period (by default the last cleared), with its prices and flows."""
    rules = platform.settings.market_rules()
    now = platform.clock.now()
    with Session(platform.engine) as session:
        if interval:
            period = _period_or_refuse(interval, rules)
        else:
            period = latest_cleared_period(session, length_minutes=rules.interval_minutes) or period_at(
                now, length_minutes=rules.interval_minutes
            )
        run = current_run(session, period)
        try:
            version = (
                network_version(session, run.network_version_id)
                if run is not None
                else network_in_force(session, period.start_utc)
            )
        except MarketError:
            version = None
        prices = node_prices(session, run.id) if run is not None else []
    edges = edge_flows(version, {p.node_id: p.net_import_wh for p in prices}) if version else []
    price_of = {p.node_id: p.price_p_per_kwh for p in prices}
    return render(
        request,
        "operator_network.html",
        {
            "title": "Network",
            "nav": "network",
            "period": period,
            "run": run,
            "version": version,
            "tree": network_tree(version, price_of, edges) if version else None,
            "edges": edges,
            "prices": prices,
            "congested": [e for e in edges if e.congested],
            "previous": period.previous(),
            "next": period.next(),
            "gate": rules.gate_closure_utc(period),
            "now": now,
        },
    )


# --- an interval -----------------------------------------------------------------------------


def _interval_or_refuse(day: str, period: str, rules: MarketRules) -> SettlementPeriod:
    try:
        return settlement_period(date.fromisoformat(day), int(period), length_minutes=rules.interval_minutes)
    except (ValueError, InvalidPeriodError):
        raise PageRefusedError(404, _NO_PERIOD) from None


def _interval_path(period: SettlementPeriod) -> str:
    return f"/operator/intervals/{period.key}"


@router.get("/operator/intervals")
def intervals_page(platform: PlatformDep, found: OperatorPageDep) -> Response:
    """The last cleared interval (or, before any clearing, the current one)."""
    rules = platform.settings.market_rules()
    with Session(platform.engine) as session:
        period = latest_cleared_period(session, length_minutes=rules.interval_minutes)
    period = period or period_at(platform.clock.now(), length_minutes=rules.interval_minutes)
    return RedirectResponse(_interval_path(period), status_code=303)


def _interval_page(
    request: Request,
    platform: PlatformDep,
    period: SettlementPeriod,
    *,
    offset: int = 0,
    levels_offset: int = 0,
    status: int = 200,
    **context: object,
) -> Response:
    rules = platform.settings.market_rules()
    with Session(platform.engine) as session:
        runs = runs_of(session, period)
        run = next((r for r in runs if r.is_current), None)
        prices = node_prices(session, run.id) if run is not None else []
        trades_total = count_trades(session, run.id) if run is not None else 0
        offset = _first(offset, trades_total, TRADES_PER_PAGE)
        trades = trades_of(session, run.id, offset=offset, limit=TRADES_PER_PAGE) if run is not None else []
        book = book_levels(session, period)
        root = (
            network_root(session, version_id=run.network_version_id)
            if run is not None
            else network_root(session, at=period.start_utc)
        )
    root_price = next((p.price_p_per_kwh for p in prices if p.node_id == root), None)
    chart = curves_chart(
        book,
        clearing_price_p_per_kwh=root_price,
        interval=f"{period.key}",
    )
    path = _interval_path(period)
    levels_offset = _first(levels_offset, len(chart.levels), LEVELS_PER_PAGE)
    query = {"offset": offset, "levels": levels_offset}  # each pager keeps the other's place
    return render(
        request,
        "operator_interval.html",
        {
            "title": f"Interval {period.key}",
            "nav": "interval",
            "period": period,
            "path": path,
            "gate": rules.gate_closure_utc(period),
            "now": platform.clock.now(),
            "runs": runs,
            "run": run,
            "root": root,
            "root_price": root_price,
            "prices": prices,
            "orders": sum(level.orders for level in book),
            "chart": chart,
            "trades": trades,
            "trades_total": trades_total,
            "offset": offset,
            "previous_trades": _page_link(path, query, "offset", offset - TRADES_PER_PAGE, "trades"),
            "next_trades": _page_link(
                path, query, "offset", offset + TRADES_PER_PAGE, "trades", trades_total
            ),
            "levels": chart.levels[levels_offset : levels_offset + LEVELS_PER_PAGE],
            "levels_offset": levels_offset,
            "previous_levels": _page_link(path, query, "levels", levels_offset - LEVELS_PER_PAGE, "book"),
            "next_levels": _page_link(
                path, query, "levels", levels_offset + LEVELS_PER_PAGE, "book", len(chart.levels)
            ),
            "previous": period.previous(),
            "next": period.next(),
            "errors": {},
            "form": {"reason": ""},
            "max_reason": MAX_REASON,
            **context,
        },
        status=status,
    )


@router.get("/operator/intervals/{day}/{period}")
def interval_page(
    request: Request,
    platform: PlatformDep,
    found: OperatorPageDep,
    day: str,
    period: str,
    offset: Annotated[str, Query(max_length=12)] = "",
    levels: Annotated[str, Query(max_length=12)] = "",
    recleared: Annotated[str, Query(max_length=12)] = "",
) -> Response:
    """An interval's curves, its clearing runs and the current run's trades, paged."""
    interval = _interval_or_refuse(day, period, platform.settings.market_rules())
    return _interval_page(
        request,
        platform,
        interval,
        offset=_whole(offset),
        levels_offset=_whole(levels),
        recleared=_whole(recleared) or None,
    )


def _whole(text: str) -> int:
    """A whole number from the query string; anything else is 0 (the first page)."""
    return int(text) if text.isascii() and text.isdigit() else 0


def _first(offset: int, total: int, size: int) -> int:
    """The first row shown: ``offset``, or the last page's when it is past the end."""
    return offset if offset < total else max(total - 1, 0) // size * size


def _page_link(
    path: str, query: dict[str, int], name: str, offset: int, anchor: str, total: int | None = None
) -> str | None:
    """The link to the page of rows from ``offset``; None before the first row or past the last."""
    if (offset < 0 and query[name] == 0) or (total is not None and offset >= total):
        return None
    return f"{path}?{urlencode({**query, name: max(offset, 0)})}#{anchor}"


def reclear_error_words(error: MarketError | SolverError) -> tuple[str, str]:
    """The field and plain words for a refused re-clear."""
    if isinstance(error, SolverError):
        return "reason", "The solver could not clear this interval. Nothing was changed; try again later."
    if error.field == "reason":
        return "reason", "Give a reason for clearing this interval again."
    if "gate closure" in error.reason:
        return "reason", (
            "Too early: this interval's gate has not closed, so it cannot be cleared yet. "
            "Try again after its gate closes."
        )
    if error.field == "network" or error.field == "tariff":
        return "reason", f"No {error.field} is in force for this interval, so it cannot be cleared."
    return "reason", error.reason[:1].upper() + error.reason[1:] + "."


@router.post("/operator/intervals/{day}/{period}/reclear")
def reclear_form(
    request: Request,
    platform: PlatformDep,
    found: OperatorPageDep,
    day: str,
    period: str,
    csrf_token: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
) -> Response:
    """Clear the interval again with a reason (as ``POST /v1/intervals/{day}/{period}/clear``)."""
    check_csrf(found, csrf_token)
    rules = platform.settings.market_rules()
    interval = _interval_or_refuse(day, period, rules)
    if len(reason.strip()) > MAX_REASON:
        return _interval_page(
            request,
            platform,
            interval,
            status=422,
            errors={"reason": f"The reason is too long: at most {MAX_REASON} characters."},
            form={"reason": reason},
        )
    try:
        outcome = clear_interval(
            platform.engine,
            period=interval,
            rules=rules,
            now=platform.clock.now(),
            triggered_by=f"web:{found.participant.id}",
            reason=reason.strip(),
        )
    except (MarketError, SolverError) as error:
        field, words = reclear_error_words(error)
        return _interval_page(
            request, platform, interval, status=422, errors={field: words}, form={"reason": reason}
        )
    return RedirectResponse(
        f"{_interval_path(interval)}?{urlencode({'recleared': outcome.run.sequence})}", status_code=303
    )


@router.post("/operator/intervals/{day}/{period}/verify")
def verify_form(
    request: Request,
    platform: PlatformDep,
    found: OperatorPageDep,
    day: str,
    period: str,
    csrf_token: Annotated[str, Form()] = "",
    run_id: Annotated[str, Form()] = "",
) -> Response:
    """Re-run a stored clearing from its stored inputs and compare (as ``smartbrum market verify``)."""
    check_csrf(found, csrf_token)
    interval = _interval_or_refuse(day, period, platform.settings.market_rules())
    run = _run_of(platform, interval, run_id)
    differences = verify_run(platform.engine, run.id)
    return _interval_page(request, platform, interval, verified=run, differences=differences)


def _run_of(platform: PlatformDep, interval: SettlementPeriod, run_id: str) -> ClearingRun:
    """A run of ``interval`` by its id; any other id is not found (404)."""
    run = None
    if run_id.isascii() and run_id.isdigit() and 0 < int(run_id) < 2**63:
        with Session(platform.engine) as session:
            try:
                run = get_run(session, int(run_id))
            except MarketError:
                run = None
    if run is None or run.period != interval:
        raise PageRefusedError(404, "There is no such clearing run for this interval.")
    return run
