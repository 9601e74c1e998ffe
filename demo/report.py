"""What a scenario run did, read back from its database: the summary and the HTML/PNG report.

:func:`summarise` computes the figures from what the platform stored (clearing runs, trades,
settlement ledger, statements) plus the simulation's PV output; :func:`write_report` draws the
charts with matplotlib and writes ``index.html`` beside them.

Definitions (also printed in the report):

- *energy traded locally*: energy sold by households and bought by households in the same
  interval, i.e. all accepted sell orders less what the market exported to the backstop;
- *local PV self-consumption*: the share of the households' PV generation used inside the
  neighbourhood: 1 - (energy the neighbourhood as a whole exported to the grid) / (PV generated),
  from the simulated series, step by step;
- *average local price*: the volume-weighted average price households paid for energy bought in
  the market (trades at their node's price);
- *saving*: the no-market baseline (each household's metered energy on the backstop tariffs, VAT
  included) less what it pays (statements, :mod:`market.settlement`);
- *imbalance*: metered energy that differed from the traded position, settled with the backstop;
- *money balance*: the sum of every account's balance over every settlement run, which must be 0.

What the charts say is computed, and tested, apart from the drawing: the Europe/London labels and
any clock change (:func:`local_labels`, :func:`clock_changes`), where an interval's curves cross
and why its clearing point is elsewhere (:func:`curve_crossing`, :func:`explain_clearing`), and
which network limits bind, when, and the price separation they make (:func:`feeder_congestion`).
"""

from __future__ import annotations

import html
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
from sqlmodel import Session, col, func, select

from demo.comparison import TARGET_SHARE, Comparison, read_comparison
from demo.scenario_run import RunResult
from market.clearing import node_prices, runs_of, trades_of
from market.database import create_database_engine
from market.intervals import SettlementPeriod
from market.network import network_version
from market.orders import IN_BOOK, list_orders
from market.settlement import account_balances
from market.settlement import runs_of as settlement_runs_of
from market.statements import StatementFigures, statements
from market.tables import LedgerLineRow, OrderRow
from market.units import WH_PER_KWH
from optimiser import Network

CP_PER_POUND = Decimal(10_000)


@dataclass
class PeriodFigures:
    """One period as cleared."""

    period: SettlementPeriod
    cleared_runs: int
    prices: dict[str, Decimal]
    bought_kwh: Decimal
    bought_p: Decimal
    sold_kwh: Decimal
    grid_import_kwh: Decimal
    grid_export_kwh: Decimal
    imbalance_import_kwh: Decimal
    imbalance_export_kwh: Decimal
    settled: bool
    complete: bool
    estimated: int = 0
    """Households whose energy the interval's latest settlement run took from an estimate."""
    net_import_wh: dict[str, int] = field(default_factory=dict)
    """Each node's net import from its parent in the current clearing (negative: export)."""

    @property
    def local_kwh(self) -> Decimal:
        return self.sold_kwh - self.grid_export_kwh

    @property
    def backstop_import_kwh(self) -> Decimal:
        """Energy the households took from the backstop: cleared against it, or as imbalance."""
        return self.grid_import_kwh + self.imbalance_import_kwh

    @property
    def backstop_export_kwh(self) -> Decimal:
        return self.grid_export_kwh + self.imbalance_export_kwh


@dataclass
class Summary:
    """The run's figures; see the module docstring for the definitions."""

    scenario: str
    households: int
    periods: list[PeriodFigures]
    import_tariff: Decimal
    export_tariff: Decimal
    local_kwh: Decimal
    bought_kwh: Decimal
    bought_p: Decimal
    pv_kwh: float
    pv_exported_kwh: float
    imbalance_kwh: Decimal
    bills: dict[str, StatementFigures]
    money_balance_cp: int
    pool_balance_cp: int
    orders_placed: int
    orders_missed: int
    feeders: dict[str, str] = field(default_factory=dict)
    network: Network | None = None
    """The network the day was cleared on (the last period's clearing run's version)."""
    comparison: Comparison | None = None
    """The platform's strategies against the agents and the oracle (homes of ``both`` groups)."""
    strategy_orders: int = 0
    """Orders the platform placed for the homes trading through it (source ``strategy``)."""

    @property
    def congestion(self) -> list[Congestion]:
        """Every network limit that bound in some period (:func:`feeder_congestion`)."""
        return [] if self.network is None else feeder_congestion(self.periods, self.network)

    @property
    def average_local_price(self) -> Decimal | None:
        return None if self.bought_kwh == 0 else (self.bought_p / self.bought_kwh).quantize(Decimal("0.01"))

    @property
    def self_consumption(self) -> float | None:
        return None if self.pv_kwh <= 0 else 1.0 - self.pv_exported_kwh / self.pv_kwh

    @property
    def saving_cp(self) -> int:
        return sum((bill.saving_cp or 0) for bill in self.bills.values())

    @property
    def baseline_cp(self) -> int:
        return sum(bill.baseline_cp for bill in self.bills.values())

    @property
    def better_off(self) -> int:
        return sum(1 for bill in self.bills.values() if (bill.saving_cp or 0) > 0)

    @property
    def all_cleared_once(self) -> bool:
        return all(p.cleared_runs == 1 for p in self.periods)

    @property
    def all_settled(self) -> bool:
        return all(p.settled and p.complete for p in self.periods)

    @property
    def estimated_periods(self) -> int:
        """Periods whose latest settlement run took some household's energy from an estimate."""
        return sum(1 for p in self.periods if p.estimated)

    def lines(self) -> list[tuple[str, str]]:
        """The summary as (label, value) rows, as printed and put in the report."""
        rows = [
            ("households", f"{self.households}"),
            (
                "intervals cleared",
                f"{sum(1 for p in self.periods if p.cleared_runs)} of {len(self.periods)}"
                + (" (each exactly once)" if self.all_cleared_once else " (NOT each exactly once)"),
            ),
            (
                "orders placed",
                f"{self.orders_placed} ({self.orders_missed} missed their gate)"
                + (f"; {self.strategy_orders} by the platform's strategies" if self.strategy_orders else ""),
            ),
            ("energy traded locally", f"{self.local_kwh:.1f} kWh"),
        ]
        if self.self_consumption is not None:
            rows.append(
                (
                    "local PV self-consumption",
                    f"{self.self_consumption:.0%} of {self.pv_kwh:.1f} kWh generated "
                    f"({self.pv_exported_kwh:.1f} kWh left the neighbourhood)",
                )
            )
        price = self.average_local_price
        rows.append(
            (
                "average local price",
                ("-" if price is None else f"{price} p/kWh")
                + f" (tariffs: import {self.import_tariff}, export {self.export_tariff} p/kWh)",
            )
        )
        rows.append(
            (
                "household savings",
                f"£{pounds(self.saving_cp)} against £{pounds(self.baseline_cp)} on the tariffs alone "
                f"({self.better_off} of {len(self.bills)} households better off)",
            )
        )
        rows.append(("imbalance energy", f"{self.imbalance_kwh:.1f} kWh settled with the backstop"))
        rows.append(
            (
                "money balance",
                f"{self.money_balance_cp} (hundredths of a penny, all accounts, all runs)"
                + (
                    " - balanced"
                    if self.money_balance_cp == 0 and self.pool_balance_cp == 0
                    else " - NOT BALANCED"
                ),
            )
        )
        for limit in self.congestion:
            rows.append(
                (
                    f"{limit.node_id} {limit.direction} limit",
                    f"binds in {len(limit.periods)} of {len(self.periods)} periods "
                    f"({local_spans(limit.periods)}); price separation up to "
                    f"{limit.max_separation_p_per_kwh} p/kWh from {limit.parent_id}",
                )
            )
        rows += comparison_lines(self.comparison)
        if not self.all_settled:
            settlement = "INCOMPLETE"
        elif self.estimated_periods:
            settlement = (
                f"every interval settled, every household; {self.estimated_periods} of "
                f"{len(self.periods)} on estimated meter data (no saving claimed for their day; "
                "polling fell over an hour of market time behind: a slower --day-seconds helps)"
            )
        else:
            settlement = "every interval settled on metered data, every household"
        rows.append(("settlement", settlement))
        return rows


def comparison_lines(comparison: Comparison | None) -> list[tuple[str, str]]:
    """The comparison's summary rows (none without one; :mod:`demo.comparison`)."""
    if comparison is None or not comparison.homes:
        return []
    homes = len(comparison.homes)
    share = comparison.platform_share
    rows = [
        (
            "platform strategies",
            f"£{pounds(comparison.total_cp('platform'))} saved by {homes} homes trading through the "
            f"platform; £{pounds(comparison.total_cp('agents'))} by their twins with the agents; "
            f"£{pounds(comparison.total_cp('oracle'))} by the oracle (perfect foresight)",
        ),
        (
            "platform / oracle",
            ("-" if share is None else f"{share:.0%}")
            + f" of the oracle's saving (target {TARGET_SHARE:.0%})",
        ),
    ]
    if comparison.net_error:
        nmae = ", ".join(
            f"{e.periods_ahead}: {'-' if e.count == 0 else f'{e.nmae:.2f}'}" for e in comparison.net_error
        )
        rows.append(("forecast error (net nMAE)", f"by periods ahead {nmae}"))
    if (
        comparison.late_periods
        or comparison.unplanned_periods
        or comparison.undispatched_periods
        or comparison.oracle_failures
    ):
        rows.append(
            (
                "platform devices",
                f"{comparison.unplanned_periods} home-periods without a plan, {comparison.late_periods} "
                f"planned too late (idle), {comparison.undispatched_periods} run as planned (clearing "
                f"not seen in time); {len(comparison.oracle_failures)} oracle plans failed",
            )
        )
    return rows


def pounds(cp: int) -> str:
    """Hundredths of a penny as pounds, 2 dp (half even)."""
    return f"{(Decimal(cp) / CP_PER_POUND).quantize(Decimal('0.01')):,}"


def summarise(result: RunResult) -> Summary:
    """The run's figures, read from its database."""
    scenario = result.simulation.scenario
    engine = create_database_engine(result.database_url)
    homes = result.household_ids
    try:
        with Session(engine) as session:
            periods = [_period_figures(session, period) for period in result.periods]
            days = sorted({p.settlement_date for p in result.periods})
            every = statements(session, first_day=days[0], last_day=days[-1])
            bills = {home: every[home].settled for home in homes}  # the days settled on metered energy
            totals = {home: every[home].total for home in homes}  # every day settled, however
            balances: dict[str, int] = defaultdict(int)
            for period in result.periods:
                for account, balance in account_balances(session, period=period).items():
                    balances[account] += balance
            feeders = {h.id: h.feeder for h in result.simulation.households[: len(homes)]}
            last = next((run for run in runs_of(session, result.periods[-1]) if run.is_current), None)
            network = None if last is None else network_version(session, last.network_version_id).network
            comparison = read_comparison(
                session,
                result.simulation,
                household_ids=homes,
                periods=result.periods,
                strategies=result.strategies,
                devices=result.platform_devices,
                bills_cp={home: totals[home].total_cp for home in homes},
                node_prices=[p.prices for p in periods],
                late_periods=result.late_periods,
                unplanned_periods=result.unplanned_periods,
                undispatched_periods=result.undispatched_periods,
            )
            strategy_orders = session.exec(
                select(func.count()).select_from(OrderRow).where(col(OrderRow.source) == "strategy")
            ).one()
    finally:
        engine.dispose()
    pv_kwh, exported_kwh = _pv_figures(result)
    # From every settled interval, metered or estimated: the settled days' figures alone would
    # leave out a day with one estimated interval.
    imbalance_wh = sum(total.imported_wh + total.exported_wh for total in totals.values())
    return Summary(
        scenario=scenario.name,
        households=len(homes),
        periods=periods,
        import_tariff=Decimal(scenario.tariff.import_p_per_kwh),
        export_tariff=Decimal(scenario.tariff.export_p_per_kwh),
        local_kwh=sum((p.local_kwh for p in periods), Decimal(0)),
        bought_kwh=sum((p.bought_kwh for p in periods), Decimal(0)),
        bought_p=sum((p.bought_p for p in periods), Decimal(0)),
        pv_kwh=pv_kwh,
        pv_exported_kwh=exported_kwh,
        imbalance_kwh=Decimal(imbalance_wh) / WH_PER_KWH,
        bills=bills,
        money_balance_cp=sum(balances.values()),
        pool_balance_cp=balances.get("pool", 0),
        orders_placed=result.orders_placed,
        orders_missed=result.orders_missed,
        feeders=feeders,
        network=network,
        comparison=comparison,
        strategy_orders=int(strategy_orders),
    )


def _period_figures(session: Session, period: SettlementPeriod) -> PeriodFigures:
    runs = runs_of(session, period)
    current = next((run for run in runs if run.is_current), None)
    bought = bought_p = sold = Decimal(0)
    prices: dict[str, Decimal] = {}
    net_import_wh: dict[str, int] = {}
    if current is not None:
        for price in node_prices(session, current.id):
            prices[price.node_id] = price.price_p_per_kwh
            if price.net_import_wh is not None:
                net_import_wh[price.node_id] = price.net_import_wh
        for trade in trades_of(session, current.id):
            if trade.side == "buy":
                bought += trade.accepted_kwh
                bought_p += trade.accepted_kwh * trade.price_p_per_kwh
            else:
                sold += trade.accepted_kwh
    settled = settlement_runs_of(session, period)
    imbalance: dict[str, int] = defaultdict(int)
    lines = select(LedgerLineRow.kind, func.sum(LedgerLineRow.energy_wh)).where(
        LedgerLineRow.interval_start_utc == period.start_utc,
        LedgerLineRow.length_minutes == period.length_minutes,
        col(LedgerLineRow.kind).in_(("imbalance_import", "imbalance_export")),
    )
    for kind, wh in session.exec(lines.group_by(LedgerLineRow.kind)):
        imbalance[kind] = int(wh or 0)
    return PeriodFigures(
        period=period,
        cleared_runs=len(runs),
        prices=prices,
        bought_kwh=bought,
        bought_p=bought_p,
        sold_kwh=sold,
        grid_import_kwh=Decimal(0) if current is None else current.grid_import_kwh,
        grid_export_kwh=Decimal(0) if current is None else current.grid_export_kwh,
        imbalance_import_kwh=Decimal(imbalance["imbalance_import"]) / WH_PER_KWH,
        imbalance_export_kwh=Decimal(imbalance["imbalance_export"]) / WH_PER_KWH,
        settled=bool(settled),
        complete=bool(settled) and settled[-1].status == "complete",
        estimated=len(settled[-1].estimated) if settled else 0,
        net_import_wh=net_import_wh,
    )


def _pv_figures(result: RunResult) -> tuple[float, float]:
    """PV generated by the run's households, and what the neighbourhood exported (kWh)."""
    simulation = result.simulation
    count = len(result.household_ids)
    hours = simulation.step_s / 3600.0
    pv = np.asarray(simulation.components_w["pv"][:count])
    generated = float(pv.sum()) * hours / 1000.0
    community = np.asarray(simulation.net_power_w[:count]).sum(axis=0)
    exported = float(np.clip(-community, 0.0, None).sum()) * hours / 1000.0
    return generated, exported


# --- what the charts say, computed ----------------------------------------------------------------


def local_labels(periods: Sequence[SettlementPeriod]) -> list[str]:
    """Each period's start on the Europe/London clock, ``HH:MM``; where a local time occurs twice
    in a day (the autumn clock change) both carry their zone, ``01:00 BST`` and ``01:00 GMT``."""
    times = [(p.settlement_date, p.start_local.strftime("%H:%M")) for p in periods]
    twice = {t for t in times if times.count(t) > 1}
    return [f"{t[1]} {p.start_local:%Z}" if t in twice else t[1] for t, p in zip(times, periods)]


@dataclass(frozen=True)
class ClockChange:
    """A clock change inside a run: where it falls (``index``: the first period after it), what
    happened (``"back"``: an hour repeated, ``"forward"``: an hour skipped) and which periods
    are the repeated hour's second pass (empty going forward)."""

    index: int
    direction: str
    repeated: tuple[int, ...]
    text: str


def clock_changes(periods: Sequence[SettlementPeriod]) -> list[ClockChange]:
    """Every change of the Europe/London UTC offset between consecutive periods of a run."""
    changes = []
    for index in range(1, len(periods)):
        before, after = periods[index - 1].start_local, periods[index].start_local
        offset_before, offset_after = before.utcoffset(), after.utcoffset()
        if offset_before == offset_after or offset_before is None or offset_after is None:
            continue
        # The wall clock at the change, on the old offset: 02:00 BST going back, 01:00 GMT forward.
        at = f"{(periods[index].start_utc + offset_before).replace(tzinfo=None):%H:%M} {before:%Z}"
        if offset_after < offset_before:
            repeated = tuple(i for i in range(index, len(periods)) if periods[i].start_local.fold == 1)
            first, last = periods[repeated[0]], periods[repeated[-1]]
            text = (
                f"{first.start_local:%H:%M}\u2013{last.end_local:%H:%M} again, in {after:%Z} "
                f"(clocks went back at {at})"
            )
            changes.append(ClockChange(index, "back", repeated, text))
        else:
            text = (
                f"{periods[index - 1].end_utc + offset_before:%H:%M}\u2013{after:%H:%M} skipped "
                f"(clocks went forward at {at})"
            )
            changes.append(ClockChange(index, "forward", (), text))
    return changes


def local_spans(periods: Sequence[SettlementPeriod]) -> str:
    """Periods as runs of consecutive ones on the local clock: ``11:00\u201315:30, 16:00\u201316:30``."""
    spans: list[list[SettlementPeriod]] = []
    for period in sorted(periods, key=lambda p: p.start_utc):
        if spans and spans[-1][-1].end_utc == period.start_utc:
            spans[-1].append(period)
        else:
            spans.append([period])
    return ", ".join(f"{span[0].start_local:%H:%M}\u2013{span[-1].end_local:%H:%M}" for span in spans)


Step = tuple[Decimal, Decimal]
"""A price step of a curve: (limit price p/kWh, quantity kWh)."""


@dataclass(frozen=True)
class Crossing:
    """Where a demand and a supply curve cross: the quantity both sides would trade, and the
    range of prices that clears it (the last bid and offer matched, or the next ones out)."""

    quantity_kwh: Decimal
    lowest_p_per_kwh: Decimal
    highest_p_per_kwh: Decimal


def curve_crossing(buys: Sequence[Step], sells: Sequence[Step]) -> Crossing | None:
    """Where the demand curve (bids, dearest first) meets the supply curve (offers, cheapest
    first), with no network and no backstop; ``None`` when no bid reaches any offer.

    The quantity is the most energy that bids and offers can match at prices each accepts; the
    price range is what clears it: at least the last offer matched and the next bid left out,
    at most the last bid matched and the next offer left out.
    """
    demand = sorted(buys, key=lambda step: -step[0])
    supply = sorted(sells, key=lambda step: step[0])
    matched = Decimal(0)
    b = s = 0
    left_b = demand[0][1] if demand else Decimal(0)
    left_s = supply[0][1] if supply else Decimal(0)
    last_bid = last_offer = None
    while b < len(demand) and s < len(supply) and demand[b][0] >= supply[s][0]:
        take = min(left_b, left_s)
        matched += take
        last_bid, last_offer = demand[b][0], supply[s][0]
        left_b -= take
        left_s -= take
        if left_b == 0:
            b += 1
            left_b = demand[b][1] if b < len(demand) else Decimal(0)
        if left_s == 0:
            s += 1
            left_s = supply[s][1] if s < len(supply) else Decimal(0)
    if last_bid is None or last_offer is None:
        return None
    lowest = max([last_offer, *([demand[b][0]] if b < len(demand) else [])])
    highest = min([last_bid, *([supply[s][0]] if s < len(supply) else [])])
    return Crossing(matched, min(lowest, highest), max(lowest, highest))


@dataclass(frozen=True)
class BindingLimit:
    """A network edge at its capacity in one period."""

    node_id: str
    parent_id: str
    direction: str  # "import" (into the node from its parent) or "export"
    capacity_kwh: Decimal
    price_p_per_kwh: Decimal
    parent_price_p_per_kwh: Decimal


def binding_limits(figures: PeriodFigures, network: Network) -> list[BindingLimit]:
    """The edges whose flow in the period's clearing is at its import or export capacity."""
    limits = []
    for position, node_id in enumerate(network.node_ids[1:], start=1):
        flow = figures.net_import_wh.get(node_id)
        if not flow or node_id not in figures.prices:
            continue
        parent = network.node_ids[int(network.parent_index[position])]
        if flow > 0 and flow >= int(network.import_capacity_wh[position]):
            direction, capacity = "import", int(network.import_capacity_wh[position])
        elif flow < 0 and -flow >= int(network.export_capacity_wh[position]):
            direction, capacity = "export", int(network.export_capacity_wh[position])
        else:
            continue
        limits.append(
            BindingLimit(
                node_id,
                parent,
                direction,
                Decimal(capacity) / WH_PER_KWH,
                figures.prices[node_id],
                figures.prices.get(parent, figures.prices[node_id]),
            )
        )
    return limits


def _fees_to_root(network: Network, node_id: str) -> Decimal:
    """The network fees on the path from a node up to the root (p/kWh)."""
    index = {node: i for i, node in enumerate(network.node_ids)}
    total, position = Decimal(0), index[node_id]
    while position != 0:
        total += network.fees_p_per_kwh[position]
        position = int(network.parent_index[position])
    return total


@dataclass(frozen=True)
class ClearingExplanation:
    """Why an interval cleared where it did, against where its curves cross."""

    period: SettlementPeriod
    crossing: Crossing | None
    local_kwh: Decimal
    node_id: str
    price_p_per_kwh: Decimal
    reasons: tuple[str, ...]

    def caption(self) -> str:
        """The chart's caption: the crossing, the clearing point, and the reasons between them."""
        if self.crossing is None:
            crossing = "The bids and offers do not cross (every offer asks more than every bid)."
        else:
            c = self.crossing
            band = (
                f"{c.lowest_p_per_kwh} p/kWh"
                if c.lowest_p_per_kwh == c.highest_p_per_kwh
                else f"{c.lowest_p_per_kwh}\u2013{c.highest_p_per_kwh} p/kWh"
            )
            crossing = (
                "Without the network and the backstop the curves would cross at "
                f"{c.quantity_kwh:.1f} kWh, {band}."
            )
        cleared = (
            f"The market cleared {self.local_kwh:.1f} kWh between households, at "
            f"{self.price_p_per_kwh} p/kWh at {self.node_id}."
        )
        return " ".join((crossing, cleared, *self.reasons))


def explain_clearing(
    figures: PeriodFigures,
    buys: Sequence[Step],
    sells: Sequence[Step],
    network: Network,
    *,
    node_id: str,
    import_tariff: Decimal,
    export_tariff: Decimal,
) -> ClearingExplanation:
    """Why ``figures``' clearing is where it is, from the clearing run itself: where the curves
    of the interval's orders (``buys`` and ``sells``, every node together) cross, and what moved
    the clearing point from there: the backstop, which buys any surplus at its export tariff and
    sells any shortfall at its import tariff, so a node's price sits at a tariff plus or minus the
    fees on the way to it; the network fees between nodes; and any edge at its capacity, which
    separates the prices either side of it.
    """
    price = figures.prices[node_id]
    fees = _fees_to_root(network, node_id)
    crossing = curve_crossing(buys, sells)
    reasons = []
    if (
        crossing is not None
        and crossing.quantity_kwh == figures.local_kwh
        and crossing.lowest_p_per_kwh <= price <= crossing.highest_p_per_kwh
    ):
        reasons.append("It cleared where the curves cross: nothing came between them.")
    if figures.grid_export_kwh > 0:
        reason = (
            f"Supply exceeded demand: {figures.grid_export_kwh:.1f} kWh offered at or below the local "
            f"price found no local buyer and was sold to the backstop at its export tariff "
            f"({export_tariff} p/kWh), so the backstop, not the crossing, sets the price"
        )
        if price == export_tariff - fees:
            reason += f": {export_tariff} less the {fees} p/kWh of network fees on the way up"
        reasons.append(reason + ".")
    if figures.grid_import_kwh > 0:
        reason = (
            f"Demand exceeded supply: {figures.grid_import_kwh:.1f} kWh was bought from the backstop at "
            f"its import tariff ({import_tariff} p/kWh), so the backstop sets the price"
        )
        if price == import_tariff + fees:
            reason += f": {import_tariff} plus the {fees} p/kWh of network fees on the way down"
        reasons.append(reason + ".")
    if fees and not (reasons or figures.grid_export_kwh or figures.grid_import_kwh):
        reasons.append(
            f"The curves are drawn before network fees; energy between nodes pays each edge's fee "
            f"({fees} p/kWh from {node_id} to the root), so node prices differ by up to the fees "
            "between them."
        )
    for limit in binding_limits(figures, network):
        reasons.append(
            f"{limit.node_id}'s {limit.direction} limit ({limit.capacity_kwh:.1f} kWh per interval) binds: "
            f"its price ({limit.price_p_per_kwh} p/kWh) separates from {limit.parent_id}'s "
            f"({limit.parent_price_p_per_kwh} p/kWh), and the curves cannot meet across it."
        )
    if not reasons:
        reasons.append(
            "Nothing else moves it: the price is the midpoint of the range that clears the crossing."
        )
    return ClearingExplanation(figures.period, crossing, figures.local_kwh, node_id, price, tuple(reasons))


@dataclass(frozen=True)
class Congestion:
    """A network limit that bound in some periods of a run, and the price separation it made."""

    node_id: str
    parent_id: str
    direction: str
    capacity_kwh: Decimal
    periods: tuple[SettlementPeriod, ...]
    limits: tuple[BindingLimit, ...]

    @property
    def separations_p_per_kwh(self) -> list[Decimal]:
        """The parent's price less the node's, in each binding period (negative importing)."""
        return [limit.parent_price_p_per_kwh - limit.price_p_per_kwh for limit in self.limits]

    @property
    def max_separation_p_per_kwh(self) -> Decimal:
        return max(self.separations_p_per_kwh, key=abs)

    def sentence(self) -> str:
        """What happened, in a sentence for the report."""
        prices = [limit.price_p_per_kwh for limit in self.limits]
        parents = [limit.parent_price_p_per_kwh for limit in self.limits]
        return (
            f"{self.node_id}'s {self.direction} limit ({self.capacity_kwh:.1f} kWh per interval) binds in "
            f"{len(self.periods)} periods, {local_spans(self.periods)} (Europe/London): its price there is "
            f"{_price_range(prices)} p/kWh against {_price_range(parents)} p/kWh at {self.parent_id}, "
            f"a separation of up to {abs(self.max_separation_p_per_kwh)} p/kWh."
        )


def _price_range(prices: Sequence[Decimal]) -> str:
    low, high = min(prices), max(prices)
    return f"{low}" if low == high else f"{low}\u2013{high}"


def feeder_congestion(periods: Sequence[PeriodFigures], network: Network) -> list[Congestion]:
    """Every edge limit that bound in some period, with the periods and prices, in tree order."""
    found: dict[tuple[str, str], list[tuple[SettlementPeriod, BindingLimit]]] = defaultdict(list)
    for figures in periods:
        for limit in binding_limits(figures, network):
            found[(limit.node_id, limit.direction)].append((figures.period, limit))
    order = {node: i for i, node in enumerate(network.node_ids)}
    return [
        Congestion(
            node_id,
            bound[0][1].parent_id,
            direction,
            bound[0][1].capacity_kwh,
            tuple(period for period, _ in bound),
            tuple(limit for _, limit in bound),
        )
        for (node_id, direction), bound in sorted(found.items(), key=lambda item: order[item[0][0]])
    ]


# --- the report ----------------------------------------------------------------------------------


def write_report(result: RunResult, summary: Summary, folder: Path) -> Path:
    """Charts and ``index.html`` in ``folder`` (created); returns the page's path."""
    import matplotlib

    matplotlib.use("Agg")
    folder.mkdir(parents=True, exist_ok=True)
    explanation = busiest_explanation(result, summary)
    curves_caption = (
        "Supply and demand in the busiest interval, with where the curves cross and where it cleared."
    )
    if explanation is not None:
        curves_caption += " " + explanation.caption()
    charts = [
        (
            "prices.png",
            "Clearing price per interval per node, against the backstop tariffs (Europe/London time)",
            lambda path: _prices_chart(summary, path),
        ),
        (
            "volumes.png",
            "Energy traded locally and with the backstop, per interval (Europe/London time)",
            lambda path: _volumes_chart(summary, path),
        ),
        ("curves.png", curves_caption, lambda path: _curves_chart(result, summary, explanation, path)),
        (
            "bills.png",
            "Each household's bill against its no-market baseline (the same metered energy on the "
            "tariffs alone), over the days settled on metered energy: below the line it saved",
            lambda path: _bills_chart(summary, path),
        ),
    ]
    if summary.comparison is not None and summary.comparison.homes:
        comparison = summary.comparison
        charts.append(
            (
                "comparison.png",
                "Each compared home's saving trading through the platform, with the agents and with "
                "the perfect-foresight oracle, against the same reference (the table below gives them)",
                lambda path: _comparison_chart(comparison, path),
            )
        )
        (folder / "comparison.json").write_text(
            json.dumps(comparison_document(comparison), indent=1), encoding="utf-8"
        )
    drawn = []
    for name, caption, draw in charts:
        draw(folder / name)
        drawn.append((name, caption))
    page = folder / "index.html"
    page.write_text(_page(summary, drawn, result), encoding="utf-8")
    return page


def comparison_document(comparison: Comparison) -> dict[str, Any]:
    """The comparison as JSON: per home and in total, pounds as decimal strings."""

    def money(cp: int) -> str:
        return str((Decimal(cp) / CP_PER_POUND).quantize(Decimal("0.0001")))

    ways = ("platform", "agents", "oracle")
    share = comparison.platform_share
    return {
        "homes": [
            {
                "household": home.home_id,
                "twin": home.twin_id,
                "name": home.name,
                "assets": home.assets,
                "reference_gbp": money(home.reference_cp),
                **{f"{way}_bill_gbp": money(getattr(home, f"{way}_bill_cp")) for way in ways},
                **{f"{way}_saving_gbp": money(home.saving_cp(way)) for way in ways},
                "later_price_p_per_kwh": str(home.later_price_p_per_kwh),
            }
            for home in comparison.homes
        ],
        "total": {f"{way}_saving_gbp": money(comparison.total_cp(way)) for way in ways},
        "platform_share_of_oracle": None if share is None else round(share, 4),
        "target_share": TARGET_SHARE,
        "forecast_error": [
            {
                "periods_ahead": net.periods_ahead,
                "count": net.count,
                "demand_nmae": _finite(demand.nmae),
                "generation_nmae": _finite(generation.nmae),
                "net_nmae": _finite(net.nmae),
                "net_mae_kwh": _finite(net.mae_kwh),
            }
            for demand, generation, net in zip(
                comparison.demand_error, comparison.generation_error, comparison.net_error, strict=True
            )
        ],
        "late_periods": comparison.late_periods,
        "unplanned_periods": comparison.unplanned_periods,
        "undispatched_periods": comparison.undispatched_periods,
        "oracle_failures": comparison.oracle_failures,
    }


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 4)


def busiest(summary: Summary) -> PeriodFigures:
    """The interval with the most energy traded locally (the earliest of equals)."""
    return max(summary.periods, key=lambda p: (p.local_kwh, -p.period.start_utc.timestamp()))


def busiest_explanation(result: RunResult, summary: Summary) -> ClearingExplanation | None:
    """:func:`explain_clearing` for the busiest interval, read from the run's database."""
    figures = busiest(summary)
    if summary.network is None or not figures.prices:
        return None
    buys, sells = _book(result, figures.period)
    return explain_clearing(
        figures,
        buys,
        sells,
        summary.network,
        node_id=_main_node(summary, figures),
        import_tariff=summary.import_tariff,
        export_tariff=summary.export_tariff,
    )


def _main_node(summary: Summary, figures: PeriodFigures) -> str:
    """The feeder with the most households (the first of equals), or any priced node."""
    counts: dict[str, int] = defaultdict(int)
    for feeder in summary.feeders.values():
        counts[feeder] += 1
    priced = [node for node in sorted(counts, key=lambda n: (-counts[n], n)) if node in figures.prices]
    return priced[0] if priced else next(iter(sorted(figures.prices)))


def _book(result: RunResult, period: SettlementPeriod) -> tuple[list[Step], list[Step]]:
    """The interval's bids and offers as (limit price, kWh) steps."""
    engine = create_database_engine(result.database_url)
    try:
        with Session(engine) as session:
            orders = list_orders(session, period=period, status=IN_BOOK, limit=1_000_000)
    finally:
        engine.dispose()
    buys = [(o.price_p_per_kwh, o.quantity_kwh) for o in orders if o.side == "buy"]
    sells = [(o.price_p_per_kwh, o.quantity_kwh) for o in orders if o.side == "sell"]
    return buys, sells


def _legend_outside(ax: Any) -> None:
    """The legend to the right of the plot area, where it hides no line."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize=8, frameon=False)


def _save(fig: Any, path: Path) -> None:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)


def _time_axis(ax: Any, periods: Sequence[SettlementPeriod]) -> None:
    """Periods on x (period i spans [i, i + 1]), labelled on the Europe/London clock, with any
    clock change marked: the repeated hour shaded, a skipped one a line."""
    labels = local_labels(periods)
    step = max(1, round(len(periods) * periods[0].length_minutes / 60 / 12)) if periods else 1
    special: set[int] = set()
    for change in clock_changes(periods):
        special.add(change.index)
        if change.repeated:  # the repeated hour's first pass too: 01:00 BST and 01:00 GMT
            again = labels[change.repeated[0]].split()[0]
            special.add(next(i for i, label in enumerate(labels) if label.startswith(again)))
    # Regular ticks on the local clock's whole hours, every `step` of them (even hours for a day).
    regular = (
        i
        for i, period in enumerate(periods)
        if period.start_local.minute == 0
        and period.start_local.hour % step == 0
        and all(abs(i - j) > 1 for j in special)
    )
    ticks = special.union(regular)
    for change in clock_changes(periods):
        if change.repeated:
            ax.axvspan(
                change.repeated[0],
                change.repeated[-1] + 1,
                color="mediumpurple",
                alpha=0.18,
                label=change.text,
            )
        else:
            ax.axvline(change.index, color="mediumpurple", linestyle=":", label=change.text)
    ordered = sorted(ticks)
    ax.set_xticks(ordered, [labels[i] for i in ordered], rotation=45, ha="right", fontsize=8)
    ax.set_xlim(0, len(periods))
    ax.set_xlabel(f"interval start, Europe/London ({len(periods)} periods)")


def _prices_chart(summary: Summary, path: Path) -> None:
    import matplotlib.pyplot as plt

    periods = [p.period for p in summary.periods]
    nodes = sorted(set(summary.feeders.values()))
    shown = nodes if len(nodes) <= 8 else nodes[:8]
    x = np.arange(len(summary.periods) + 1)
    fig, ax = plt.subplots(figsize=(11, 4.5))
    # Nodes often share a price: each line is thinner and differently dashed than the one before,
    # so one drawn over another still shows.
    styles = ["-", "--", ":", "-."]
    for n, node in enumerate(shown):
        values = [float(p.prices[node]) if node in p.prices else np.nan for p in summary.periods]
        ax.step(
            x,
            [*values, values[-1]],
            where="post",
            label=node,
            linewidth=max(1.0, 3.2 - 0.6 * n),
            linestyle=styles[n % len(styles)],
        )
    ax.axhline(float(summary.import_tariff), color="firebrick", linestyle="--", label="import tariff")
    ax.axhline(float(summary.export_tariff), color="seagreen", linestyle="--", label="export tariff")
    index = {p.period.start_utc: i for i, p in enumerate(summary.periods)}
    for limit in summary.congestion:
        for n, period in enumerate(limit.periods):
            i = index[period.start_utc]
            ax.axvspan(
                i,
                i + 1,
                color="orange",
                alpha=0.15,
                label=f"{limit.node_id} {limit.direction} limit binds" if n == 0 else None,
            )
    _time_axis(ax, periods)
    ax.set_ylabel("p/kWh")
    title = "Clearing price per node" + (
        "" if len(shown) == len(nodes) else f" (first {len(shown)} of {len(nodes)})"
    )
    ax.set_title(title)
    ax.grid(alpha=0.3)
    _legend_outside(ax)
    _save(fig, path)


def _volumes_chart(summary: Summary, path: Path) -> None:
    import matplotlib.pyplot as plt

    x = np.arange(len(summary.periods))
    local = np.array([float(p.local_kwh) for p in summary.periods])
    grid_in = np.array([float(p.backstop_import_kwh) for p in summary.periods])
    grid_out = np.array([float(p.backstop_export_kwh) for p in summary.periods])
    fig, ax = plt.subplots(figsize=(11, 4.5))
    # Bars from each period's start, as the price steps are: period i spans [i, i + 1].
    ax.bar(x, local, width=0.9, align="edge", color="goldenrod", label="traded locally")
    ax.bar(
        x,
        grid_in,
        bottom=local,
        width=0.9,
        align="edge",
        color="slategray",
        label="from the backstop\n(cleared and imbalance)",
    )
    ax.bar(x, -grid_out, width=0.9, align="edge", color="seagreen", label="to the backstop (below zero)")
    ax.axhline(0, color="black", linewidth=0.6)
    _time_axis(ax, [p.period for p in summary.periods])
    ax.set_ylabel("kWh per interval")
    ax.set_title("Households' energy: traded locally, and with the backstop")
    ax.grid(alpha=0.3, axis="y")
    _legend_outside(ax)
    _save(fig, path)


def _curves_chart(
    result: RunResult, summary: Summary, explanation: ClearingExplanation | None, path: Path
) -> None:
    import matplotlib.pyplot as plt

    figures = busiest(summary)
    buys, sells = _book(result, figures.period)
    fig, ax = plt.subplots(figsize=(10, 5))
    for book, label, colour, dearest_first in (
        (buys, "demand (buy orders)", "steelblue", True),
        (sells, "supply (sell orders)", "darkorange", False),
    ):
        if not book:
            continue
        ordered = sorted(book, key=lambda step: step[0], reverse=dearest_first)
        cumulative = np.concatenate(([0.0], np.cumsum([float(q) for _, q in ordered])))
        prices = [float(p) for p, _ in ordered]
        ax.step(cumulative, [*prices, prices[-1]], where="post", label=label, color=colour, linewidth=1.8)
    ax.axhline(
        float(summary.import_tariff), color="firebrick", linestyle="--", label="backstop import tariff"
    )
    ax.axhline(float(summary.export_tariff), color="seagreen", linestyle="--", label="backstop export tariff")
    if explanation is not None:
        if explanation.crossing is not None:
            crossing = explanation.crossing
            middle = (crossing.lowest_p_per_kwh + crossing.highest_p_per_kwh) / 2
            ax.plot(
                [float(crossing.quantity_kwh)],
                [float(middle)],
                marker="x",
                markersize=10,
                color="dimgray",
                linestyle="none",
                label=f"curves cross: {crossing.quantity_kwh:.1f} kWh",
            )
        ax.plot(
            [float(explanation.local_kwh)],
            [float(explanation.price_p_per_kwh)],
            marker="o",
            markersize=9,
            color="black",
            linestyle="none",
            label=(
                f"cleared: {explanation.local_kwh:.1f} kWh locally\n"
                f"at {explanation.price_p_per_kwh} p/kWh ({explanation.node_id})"
            ),
        )
    local = figures.period.start_local
    ax.set_xlabel("kWh (cumulative, all nodes, before network fees)")
    ax.set_ylabel("limit price p/kWh")
    ax.set_title(
        f"Supply and demand, {figures.period.settlement_date} period {figures.period.period} "
        f"({local:%H:%M %Z})"
    )
    ax.grid(alpha=0.3)
    _legend_outside(ax)
    _save(fig, path)


def _bills_chart(summary: Summary, path: Path) -> None:
    import matplotlib.pyplot as plt

    homes = sorted(summary.bills)
    baseline = np.array([summary.bills[h].baseline_cp / 10_000 for h in homes])
    paid = np.array([summary.bills[h].total_cp / 10_000 for h in homes])
    fig, ax = plt.subplots(figsize=(7, 6))
    settled = [h for h in homes if summary.bills[h].final]
    if settled:
        feeders = sorted({summary.feeders.get(h, "") for h in settled})
        for feeder in feeders:
            mine = [
                i
                for i, h in enumerate(homes)
                if summary.bills[h].final and summary.feeders.get(h, "") == feeder
            ]
            ax.scatter(baseline[mine], paid[mine], s=18, alpha=0.8, label=feeder or "households")
        low = float(min(baseline.min(), paid.min(), 0.0))
        high = float(max(baseline.max(), paid.max(), 0.0))
        margin = (high - low) * 0.05 or 0.5
        ends = (low - margin, high + margin)
        ax.plot(ends, ends, color="black", linewidth=0.8, label="bill = baseline (no saving)")
        ax.set_xlim(ends)
        ax.set_ylim(ends)
    else:
        ax.text(
            0.5,
            0.5,
            "no day settled on metered energy:\nno saving to show",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
    ax.axhline(0, color="gray", linewidth=0.5)
    ax.axvline(0, color="gray", linewidth=0.5)
    ax.set_xlabel("no-market baseline, £ (negative: paid to the household)")
    ax.set_ylabel("bill with the local market, £")
    ax.set_title(f"{len(settled)} households' bills against their baselines")
    ax.grid(alpha=0.3)
    if settled:
        _legend_outside(ax)
    _save(fig, path)


def _comparison_chart(comparison: Comparison, path: Path) -> None:
    import matplotlib.pyplot as plt

    homes = comparison.homes
    x = np.arange(len(homes))
    fig, ax = plt.subplots(figsize=(max(7.0, len(homes) * 0.9), 5))
    for offset, way, label in (
        (-0.27, "platform", "platform strategy"),
        (0.0, "agents", "simulation's agents"),
        (0.27, "oracle", "oracle"),
    ):
        ax.bar(x + offset, [home.saving_cp(way) / 10_000 for home in homes], width=0.27, label=label)
    ax.set_xticks(x, [home.home_id for home in homes], rotation=45, ha="right")
    ax.axhline(0, color="gray", linewidth=0.5)
    ax.set_ylabel("saving against the reference, £")
    ax.set_title("The same homes, three ways of trading")
    ax.grid(alpha=0.3, axis="y")
    _legend_outside(ax)
    _save(fig, path)


def _comparison_section(summary: Summary) -> str:
    comparison = summary.comparison
    if comparison is None or not comparison.homes:
        return ""
    esc = html.escape
    ways = ("platform", "agents", "oracle")
    rows = "\n".join(
        f"<tr><td>{esc(home.home_id)}</td><td>{esc(home.assets)}</td><td>{pounds(home.reference_cp)}</td>"
        + "".join(f"<td>{pounds(getattr(home, f'{way}_bill_cp'))}</td>" for way in ways)
        + "".join(f"<td>{pounds(home.saving_cp(way))}</td>" for way in ways)
        + "</tr>"
        for home in comparison.homes
    )
    total = "".join(f"<td>{pounds(comparison.total_cp(way))}</td>" for way in ways)
    errors = "\n".join(
        f"<tr><td>{net.periods_ahead}</td><td>{net.count}</td><td>{demand.nmae:.2f}</td>"
        f"<td>{generation.nmae:.2f}</td><td>{net.nmae:.2f}</td><td>{net.mae_kwh:.3f}</td></tr>"
        for demand, generation, net in zip(
            comparison.demand_error, comparison.generation_error, comparison.net_error, strict=True
        )
    )
    share = comparison.platform_share
    return f"""<h2>Automatic trading against the agents and the oracle</h2>
<p>Each home below trades through the platform's strategy; its twin, the same home, through the
simulation's agents, in the same market; the oracle is the platform's own optimisation given the
true demand, generation and local prices. The platform reaches
{"-" if share is None else f"{share:.0%}"} of the oracle's saving (target {TARGET_SHARE:.0%}).
Savings are against one reference per home (no market, battery idle, EV charged as soon as it is
plugged in), each bill adjusted by what it leaves for tomorrow (see demo/comparison.py).</p>
<table><tr><th>home</th><th>assets</th><th>reference £</th><th>platform bill £</th><th>agents bill £</th>
<th>oracle bill £</th><th>platform saving £</th><th>agents saving £</th><th>oracle saving £</th></tr>
{rows}
<tr><th>total</th><td></td><td></td><td></td><td></td><td></td>{total}</tr></table>
<h3>The platform's forecast error per period ahead</h3>
<table><tr><th>periods ahead</th><th>forecasts</th><th>demand nMAE</th><th>PV nMAE</th><th>net nMAE</th>
<th>net MAE kWh</th></tr>
{errors}</table>
"""


def _page(summary: Summary, charts: list[tuple[str, str]], result: RunResult) -> str:
    esc = html.escape
    rows = "\n".join(
        f"<tr><th>{esc(label)}</th><td>{esc(value)}</td></tr>" for label, value in summary.lines()
    )
    # The alt text is the caption's first sentence; the caption says the rest.
    figures = "\n".join(
        f'<figure><img src="{esc(name)}" alt="{esc(caption.split(". ")[0])}">'
        f"<figcaption>{esc(caption)}</figcaption></figure>"
        for name, caption in charts
    )
    homes = sorted(summary.bills.items(), key=lambda item: -(item[1].saving_cp or 0))[:100]
    bill_rows = "\n".join(
        f"<tr><td>{esc(home)}</td><td>{esc(summary.feeders.get(home, ''))}</td>"
        f"<td>{bill.bought_wh / 1000:.2f}</td><td>{bill.sold_wh / 1000:.2f}</td>"
        f"<td>{bill.imported_wh / 1000:.2f}</td><td>{bill.exported_wh / 1000:.2f}</td>"
        f"<td>{pounds(bill.baseline_cp)}</td><td>{pounds(bill.total_cp)}</td>"
        f"<td>{'-' if bill.saving_cp is None else pounds(bill.saving_cp)}</td></tr>"
        for home, bill in homes
    )
    times = result.times
    scenario = result.simulation.scenario
    sections = _clock_section(summary) + _congestion_section(summary) + _comparison_section(summary)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>smartbrum: {esc(scenario.name)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }} th, td {{ padding: 0.3em 0.8em; text-align: left; }}
tr:nth-child(even) {{ background: #f4f4f4; }} figure {{ margin: 1.5em 0; }} img {{ max-width: 100%; }}
figcaption {{ color: #555; font-size: 0.9em; }} .small {{ color: #666; font-size: 0.85em; }}
</style></head><body>
<h1>smartbrum scenario: {esc(scenario.name)}</h1>
<p>{esc(getattr(scenario, "description", ""))}</p>
<h2>Summary</h2>
<table>{rows}</table>
<p class="small">Run: {times.total_s:.1f} s in all ({times.simulate_s:.1f} s simulating the households,
{times.setup_s:.1f} s set-up, {times.day_s:.1f} s for the trading day).
Database: {esc(result.database_url)}. Times are on the Europe/London clock.</p>
{sections}
{figures}
<h2>Households (top {len(homes)} by saving, over the days settled on metered energy)</h2>
<table><tr><th>household</th><th>feeder</th><th>bought kWh</th><th>sold kWh</th><th>imported kWh</th>
<th>exported kWh</th><th>baseline £</th><th>paid £</th><th>saving £</th></tr>
{bill_rows}</table>
<h2>Definitions</h2>
<p class="small">Energy traded locally: accepted sell orders less what the market exported to the backstop.
Local PV self-consumption: 1 - (what the neighbourhood as a whole exported to the grid) / (PV generated).
Saving: each household's metered energy on the backstop tariffs (VAT included) less what it pays.
Imbalance: metered energy that differed from the traded position, settled with the backstop.
Money balance: the sum of every account over every settlement run; it must be zero.</p>
</body></html>
"""


def _clock_section(summary: Summary) -> str:
    """A paragraph on any clock change in the run ("" without one)."""
    changes = clock_changes([p.period for p in summary.periods])
    if not changes:
        return ""
    items = "".join(
        f"<li>{html.escape(change.text)}: periods "
        + html.escape(
            ", ".join(str(summary.periods[i].period.period) for i in change.repeated or (change.index,))
        )
        + "</li>"
        for change in changes
    )
    return (
        f"<h2>Clock change</h2><p>The day has {len(summary.periods)} settlement periods on the "
        f"Europe/London clock; the charts mark the change.</p><ul>{items}</ul>"
    )


def _congestion_section(summary: Summary) -> str:
    """The network limits that bound, each in a sentence and a table a row per period ("" when
    no network is known; a sentence when no limit bound)."""
    if summary.network is None or len(summary.network.node_ids) <= 1:
        return ""
    esc = html.escape
    congestion = summary.congestion
    if not congestion:
        return "<h2>Feeder congestion</h2><p>No network limit binds on this day: no price separates.</p>"
    parts = ["<h2>Feeder congestion</h2>"]
    for limit in congestion:
        rows = "\n".join(
            f"<tr><td>{period.period}</td><td>{period.start_local:%H:%M %Z}</td>"
            f"<td>{binding.price_p_per_kwh}</td><td>{binding.parent_price_p_per_kwh}</td>"
            f"<td>{separation}</td></tr>"
            for period, binding, separation in zip(limit.periods, limit.limits, limit.separations_p_per_kwh)
        )
        parts.append(
            f"<p>{esc(limit.sentence())}</p>"
            f"<table><tr><th>period</th><th>start</th><th>{esc(limit.node_id)} p/kWh</th>"
            f"<th>{esc(limit.parent_id)} p/kWh</th><th>separation p/kWh</th></tr>\n{rows}</table>"
        )
    return "\n".join(parts)
