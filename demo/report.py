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
"""

from __future__ import annotations

import html
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
from sqlmodel import Session, col, func, select

from demo.scenario_run import RunResult
from market.clearing import node_prices, runs_of, trades_of
from market.database import create_database_engine
from market.intervals import SettlementPeriod
from market.orders import IN_BOOK, list_orders
from market.settlement import account_balances
from market.settlement import runs_of as settlement_runs_of
from market.statements import StatementFigures, statements
from market.tables import LedgerLineRow
from market.units import WH_PER_KWH

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
            ("orders placed", f"{self.orders_placed} ({self.orders_missed} missed their gate)"),
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
        if not self.all_settled:
            settlement = "INCOMPLETE"
        elif self.estimated_periods:
            settlement = (
                f"every interval settled, every household; {self.estimated_periods} of "
                f"{len(self.periods)} on estimated meter data (no saving claimed for their day)"
            )
        else:
            settlement = "every interval settled on metered data, every household"
        rows.append(("settlement", settlement))
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
    )


def _period_figures(session: Session, period: SettlementPeriod) -> PeriodFigures:
    runs = runs_of(session, period)
    current = next((run for run in runs if run.is_current), None)
    bought = bought_p = sold = Decimal(0)
    prices: dict[str, Decimal] = {}
    if current is not None:
        prices = {price.node_id: price.price_p_per_kwh for price in node_prices(session, current.id)}
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


# --- the report ----------------------------------------------------------------------------------


def write_report(result: RunResult, summary: Summary, folder: Path) -> Path:
    """Charts and ``index.html`` in ``folder`` (created); returns the page's path."""
    import matplotlib

    matplotlib.use("Agg")
    folder.mkdir(parents=True, exist_ok=True)
    charts = [
        ("prices.png", "Clearing price per interval per node, against the backstop tariffs", _prices_chart),
        ("volumes.png", "Energy traded locally and with the backstop, per interval", _volumes_chart),
        ("curves.png", "Supply and demand in the busiest interval, with the clearing point", _curves_chart),
        ("bills.png", "Each household's bill against its no-market baseline", _bills_chart),
    ]
    drawn = []
    for name, title, draw in charts:
        draw(result, summary, folder / name)
        drawn.append((name, title))
    page = folder / "index.html"
    page.write_text(_page(summary, drawn, result), encoding="utf-8")
    return page


def _labels(summary: Summary) -> list[str]:
    return [p.period.start_utc.strftime("%H:%M") for p in summary.periods]


def _prices_chart(result: RunResult, summary: Summary, path: Path) -> None:
    import matplotlib.pyplot as plt

    nodes = sorted(set(summary.feeders.values()))
    x = np.arange(len(summary.periods))
    fig, ax = plt.subplots(figsize=(10, 4.5))
    shown = nodes if len(nodes) <= 8 else nodes[:8]
    for node in shown:
        values = [float(p.prices[node]) if node in p.prices else np.nan for p in summary.periods]
        ax.step(x, values, where="post", label=node, linewidth=1.6)
    ax.axhline(float(summary.import_tariff), color="firebrick", linestyle="--", label="import tariff")
    ax.axhline(float(summary.export_tariff), color="seagreen", linestyle="--", label="export tariff")
    _time_axis(ax, summary)
    ax.set_ylabel("p/kWh")
    title = "Clearing price per node" + (
        "" if len(shown) == len(nodes) else f" (first {len(shown)} of {len(nodes)})"
    )
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _volumes_chart(result: RunResult, summary: Summary, path: Path) -> None:
    import matplotlib.pyplot as plt

    x = np.arange(len(summary.periods))
    local = np.array([float(p.local_kwh) for p in summary.periods])
    grid_in = np.array([float(p.backstop_import_kwh) for p in summary.periods])
    grid_out = np.array([float(p.backstop_export_kwh) for p in summary.periods])
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.bar(x, local, color="goldenrod", label="traded locally")
    ax.bar(x, grid_in, bottom=local, color="slategray", label="from the backstop (cleared and imbalance)")
    ax.bar(x, -grid_out, color="seagreen", label="to the backstop (below zero)")
    ax.axhline(0, color="black", linewidth=0.6)
    _time_axis(ax, summary)
    ax.set_ylabel("kWh per interval")
    ax.set_title("Households' energy: traded locally, and with the backstop")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _curves_chart(result: RunResult, summary: Summary, path: Path) -> None:
    import matplotlib.pyplot as plt

    busiest = max(summary.periods, key=lambda p: (p.local_kwh, -p.period.start_utc.timestamp()))
    engine = create_database_engine(result.database_url)
    try:
        with Session(engine) as session:
            orders = list_orders(session, period=busiest.period, status=IN_BOOK, limit=1_000_000)
    finally:
        engine.dispose()
    buys = sorted(((o.price_p_per_kwh, o.quantity_kwh) for o in orders if o.side == "buy"), reverse=True)
    sells = sorted((o.price_p_per_kwh, o.quantity_kwh) for o in orders if o.side == "sell")
    fig, ax = plt.subplots(figsize=(8, 5))
    for book, label, colour in (
        (buys, "demand (buy orders)", "steelblue"),
        (sells, "supply (sell orders)", "darkorange"),
    ):
        if not book:
            continue
        cumulative = np.concatenate(([0.0], np.cumsum([float(q) for _, q in book])))
        prices = [float(p) for p, _ in book]
        ax.step(cumulative, [*prices, prices[-1]], where="post", label=label, color=colour, linewidth=1.8)
    ax.axhline(
        float(summary.import_tariff), color="firebrick", linestyle="--", label="backstop import tariff"
    )
    ax.axhline(float(summary.export_tariff), color="seagreen", linestyle="--", label="backstop export tariff")
    if busiest.prices:
        feeders = sorted(set(summary.feeders.values()))
        price = float(busiest.prices.get(feeders[0], next(iter(busiest.prices.values()))))
        ax.plot(
            [float(busiest.local_kwh)],
            [price],
            marker="o",
            markersize=9,
            color="black",
            label=f"cleared: {busiest.local_kwh:.1f} kWh locally at {price:.2f} p/kWh ({feeders[0]})",
        )
    ax.set_xlabel("kWh (cumulative, all nodes, before network fees)")
    ax.set_ylabel("limit price p/kWh")
    ax.set_title(f"Supply and demand, {busiest.period.settlement_date} period {busiest.period.period}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _bills_chart(result: RunResult, summary: Summary, path: Path) -> None:
    import matplotlib.pyplot as plt

    homes = sorted(summary.bills, key=lambda home: summary.bills[home].baseline_cp)
    fig, ax = plt.subplots(figsize=(10, 4.5))
    if len(homes) <= 80:
        x = np.arange(len(homes))
        baseline = [summary.bills[h].baseline_cp / 10_000 for h in homes]
        paid = [summary.bills[h].total_cp / 10_000 for h in homes]
        ax.bar(x - 0.2, baseline, width=0.4, color="lightgray", label="no-market baseline")
        ax.bar(x + 0.2, paid, width=0.4, color="steelblue", label="with the local market")
        ax.set_xticks(x, homes, rotation=90, fontsize=6)
        ax.set_ylabel("£ (negative: paid to the household)")
        ax.set_title("Each household's bill against its baseline")
        ax.axhline(0, color="black", linewidth=0.6)
        ax.legend(fontsize=8)
    else:
        savings = [(summary.bills[h].saving_cp or 0) / 10_000 for h in homes]
        ax.hist(savings, bins=50, color="steelblue")
        ax.set_xlabel("saving against the no-market baseline, £")
        ax.set_ylabel("households")
        ax.set_title(f"Savings of {len(homes)} households")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _time_axis(ax: Any, summary: Summary) -> None:
    labels = _labels(summary)
    step = max(1, len(labels) // 12)
    ax.set_xticks(np.arange(0, len(labels), step), labels[::step], rotation=0, fontsize=8)
    ax.set_xlabel("interval start (UTC)")


def _page(summary: Summary, charts: list[tuple[str, str]], result: RunResult) -> str:
    esc = html.escape
    rows = "\n".join(
        f"<tr><th>{esc(label)}</th><td>{esc(value)}</td></tr>" for label, value in summary.lines()
    )
    figures = "\n".join(
        f'<figure><img src="{esc(name)}" alt="{esc(title)}"><figcaption>{esc(title)}</figcaption></figure>'
        for name, title in charts
    )
    homes = sorted(summary.bills.items(), key=lambda item: -(item[1].saving_cp or 0))[:100]
    bill_rows = "\n".join(
        f"<tr><td>{esc(home)}</td><td>{esc(summary.feeders.get(home, ''))}</td>"
        f"<td>{bill.bought_wh / 1000:.2f}</td><td>{bill.sold_wh / 1000:.2f}</td>"
        f"<td>{bill.imported_wh / 1000:.2f}</td><td>{bill.exported_wh / 1000:.2f}</td>"
        f"<td>{pounds(bill.baseline_cp)}</td><td>{pounds(bill.total_cp)}</td>"
        f"<td>{pounds(bill.saving_cp or 0)}</td></tr>"
        for home, bill in homes
    )
    times = result.times
    scenario = result.simulation.scenario
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
Database: {esc(result.database_url)}.</p>
{figures}
<h2>Households (top {len(homes)} by saving)</h2>
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
