"""Open market results: what the market did on each feeder in each settlement period of a day,
published for the city without exposing any household (issue 18).

The figures
-----------
A *feeder* is a network node that households are registered at (their orders are placed there,
so their trades are too). A *cell* is one feeder in one period of one settlement date. Each
cell's figures come from the period's **current** clearing run and the meters' **current**
interval energy, so a re-clear or a corrected reading shows in the next export, as it does in
a reconciliation run:

``bought_kwh``, ``sold_kwh``
    Energy traded locally: the accepted Wh of the feeder's households' buy (sell) trades.
``backstop_import_kwh``, ``backstop_export_kwh``
    Energy from and to the backstop (the energy company): what settlement books as imbalance
    (:mod:`market.charges`, rule 5), household by household: metered import minus export, less
    bought minus sold; a positive imbalance is imported from the backstop, a negative one
    exported to it. A household's figures are summed separately, not netted across the feeder,
    because that is what each household is charged or paid for.
``local_self_consumption_kwh``
    Local PV self-consumption: the feeder's exported energy that its own households used in the
    same period, ``min(sum of import, sum of export)`` over its households with meter data. The
    meters sit at each home's grid connection, so what a home uses of its own PV is invisible;
    what the feeder exports and imports at once is energy generated on the feeder and consumed
    on it, whoever traded with whom (a sale may clear against a buyer on another feeder, at
    nodal prices, so trades do not say where the energy physically went). An export is taken to
    be PV: a home battery's discharge is counted too, which the platform cannot tell apart.
``price_p_per_kwh``
    The feeder's node price in the current clearing run (empty for a period never cleared).
``meter_data_complete``
    Whether every household on the feeder that had a meter then (or that traded) has interval
    energy for the period; when not, the backstop and self-consumption figures cover only those
    that have.
``households``
    How many households *contributed*: those on the feeder with a non-zero metered import or
    export in the period, or a trade with accepted energy. A household whose meter read zero and
    that did not trade is not counted: its zeros hide nobody.

Energy is exact: integer Wh summed, shown as kWh with three decimals. Prices are the stored
decimals, in p/kWh.

Privacy
-------
A cell is **published** only where at least ``min_households`` households contributed; otherwise
it is **suppressed**: marked so, every figure empty (never zero). Totals (each feeder over the
day, each period over the feeders, the day) are sums over **published cells only**, and say how
many cells they cover and how many were left out. A total therefore carries nothing a published
cell does not: subtracting published cells from it yields zero, never a suppressed cell, across
feeders and across the periods of an export alike (the tests change suppressed cells' values and
find every published byte unchanged). Complementary suppression with full totals was the
alternative; on a 2-D table it protects a cell only where the suppressed cells leave no
"bridge" in the row-column graph, and non-negative energies narrow a suppressed value to an
interval even then, so it would need an LP audit per export. Totals over published cells are
safe by construction and still exact for what is published.

Only a day that is over is published (:func:`check_day_is_over`): a day under way would show
cells changing, period by period, as households contributed.

The field definitions (:data:`CELL_FIELDS`, :data:`TOTAL_FIELDS`) are the one source of the CSV
headers, the JSON documents and their schema, and the data package descriptor
(:func:`datapackage_descriptor`), a Frictionless Data Package (v1, tabular) that a city data
portal can harvest.

May import the standard library, SQLAlchemy, SQLModel and :mod:`market`.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col

from market.errors import MarketError
from market.intervals import InvalidPeriodError, SettlementPeriod, periods_of_day
from market.participants import HOUSEHOLD
from market.tables import (
    ClearingRunRow,
    IntervalEnergyRow,
    MeterRow,
    NodePriceRow,
    ParticipantRow,
    TradeRow,
)
from market.units import WH_PER_KWH

PUBLISHED = "published"
SUPPRESSED = "suppressed"
#: The fewest contributing households a published cell may have, whatever the settings say: with
#: two, each could subtract its own figures from the cell's and read the other's.
MIN_HOUSEHOLDS_FLOOR = 3
#: The figures that add up over cells, in Wh.
ENERGY_FIGURES = (
    "bought_wh",
    "sold_wh",
    "backstop_import_wh",
    "backstop_export_wh",
    "local_self_consumption_wh",
)


@dataclass(frozen=True)
class Licence:
    """The licence the results are published under, as a data package names it."""

    name: str
    title: str
    path: str


#: The default: the UK's Open Government Licence (what Birmingham City Council's data uses).
OPEN_GOVERNMENT_LICENCE = Licence(
    name="OGL-UK-3.0",
    title="Open Government Licence v3.0",
    path="https://www.nationalarchives.gov.uk/doc/open-government-licence/version/3/",
)


@dataclass(frozen=True)
class HouseholdPeriod:
    """One household in one period: what its meters read (``None``: not known) and what it traded."""

    import_wh: int | None
    export_wh: int | None
    bought_wh: int
    sold_wh: int


@dataclass(frozen=True)
class CellFigures:
    """A feeder's figures in one period, before suppression (never published as such)."""

    feeder: str
    period: SettlementPeriod
    households: int
    bought_wh: int
    sold_wh: int
    backstop_import_wh: int
    backstop_export_wh: int
    local_self_consumption_wh: int
    price_p_per_kwh: Decimal | None
    meter_data_complete: bool
    #: For each energy figure, the households whose share of it is not zero (a figure missing here:
    #: ``households``). A figure that few households make up would publish their own energy.
    contributors: Mapping[str, int] = dataclass_field(default_factory=dict)

    def contributors_to(self, figure: str) -> int:
        return self.contributors.get(figure, self.households)


@dataclass(frozen=True)
class ResultCell:
    """A cell as published: its figures, or none when suppressed; ``withheld`` names the energy
    figures of a published cell that too few households make up (published as empty)."""

    feeder: str
    period: SettlementPeriod
    status: str
    figures: CellFigures | None
    withheld: tuple[str, ...] = ()

    def energy_wh(self, figure: str) -> int | None:
        """A figure as published: None where the cell is suppressed or the figure withheld."""
        if self.figures is None or figure in self.withheld:
            return None
        value: int = getattr(self.figures, figure)
        return value


@dataclass(frozen=True)
class ResultTotal:
    """A sum over published cells: one feeder's day (``period`` None), one period's feeders
    (``feeder`` None), or the day (both None)."""

    scope: str  # "feeder", "period" or "day"
    feeder: str | None
    period: SettlementPeriod | None
    cells_published: int
    cells_suppressed: int
    #: Each figure summed over the cells that publish it; None where no cell does: not zero.
    energy_wh: dict[str, int | None] | None
    #: Figures withheld in the published cells it covers (each left out of its sum).
    figures_withheld: int = 0


@dataclass(frozen=True)
class OpenResults:
    """One settlement date's published results."""

    settlement_date: date
    interval_minutes: int
    min_households: int
    generated_at: datetime
    licence: Licence
    cells: list[ResultCell]
    totals: list[ResultTotal]


# --- the figures and the suppression: pure ---------------------------------------------------


def cell_figures(
    feeder: str,
    period: SettlementPeriod,
    households: Iterable[HouseholdPeriod],
    *,
    price_p_per_kwh: Decimal | None,
    meter_data_complete: bool,
) -> CellFigures:
    """A feeder's figures in a period from its households' meter data and trades (see the module
    docstring for each figure's definition)."""
    contributors = bought = sold = backstop_import = backstop_export = imported = exported = 0
    shares = dict.fromkeys(("bought", "sold", "import", "export", "from_backstop", "to_backstop"), 0)
    for household in households:
        energy = (household.import_wh or 0) + (household.export_wh or 0)
        if energy or household.bought_wh or household.sold_wh:
            contributors += 1
        bought += household.bought_wh
        sold += household.sold_wh
        shares["bought"] += household.bought_wh != 0
        shares["sold"] += household.sold_wh != 0
        if household.import_wh is None or household.export_wh is None:
            continue  # its imbalance is not known yet: settlement waits for it too
        imported += household.import_wh
        exported += household.export_wh
        shares["import"] += household.import_wh != 0
        shares["export"] += household.export_wh != 0
        imbalance = (household.import_wh - household.export_wh) - (household.bought_wh - household.sold_wh)
        if imbalance > 0:
            backstop_import += imbalance
            shares["from_backstop"] += 1
        else:
            backstop_export -= imbalance
            shares["to_backstop"] += imbalance != 0
    # Self-consumption is the lesser side's total: the households making up that side (both, at
    # a tie, where it is each side's total; the fewer of them).
    if imported < exported:
        self_consumers = shares["import"]
    elif exported < imported:
        self_consumers = shares["export"]
    else:
        self_consumers = min(shares["import"], shares["export"])
    return CellFigures(
        feeder=feeder,
        period=period,
        households=contributors,
        bought_wh=bought,
        sold_wh=sold,
        backstop_import_wh=backstop_import,
        backstop_export_wh=backstop_export,
        local_self_consumption_wh=min(imported, exported),
        price_p_per_kwh=price_p_per_kwh,
        meter_data_complete=meter_data_complete,
        contributors={
            "bought_wh": shares["bought"],
            "sold_wh": shares["sold"],
            "backstop_import_wh": shares["from_backstop"],
            "backstop_export_wh": shares["to_backstop"],
            "local_self_consumption_wh": self_consumers,
        },
    )


def check_min_households(min_households: int) -> None:
    """Refuse a threshold below :data:`MIN_HOUSEHOLDS_FLOOR`."""
    if min_households < MIN_HOUSEHOLDS_FLOOR:
        raise MarketError(
            "min_households",
            f"{min_households} is below {MIN_HOUSEHOLDS_FLOOR}: with fewer, a household could subtract "
            "its own figures from a cell's and read its neighbours'",
        )


def suppress(cells: Sequence[CellFigures], *, min_households: int) -> list[ResultCell]:
    """Each cell published where at least ``min_households`` contributed, else suppressed (its
    figures withheld, not zeroed). In a published cell, an energy figure that between one and
    ``min_households - 1`` households make up is withheld too: five metered homes and one buyer
    would otherwise publish that buyer's purchase. A figure nobody makes up is its zero."""
    check_min_households(min_households)
    return [
        ResultCell(
            cell.feeder,
            cell.period,
            PUBLISHED,
            cell,
            tuple(name for name in ENERGY_FIGURES if 0 < cell.contributors_to(name) < min_households),
        )
        if cell.households >= min_households
        else ResultCell(cell.feeder, cell.period, SUPPRESSED, None)
        for cell in cells
    ]


def published_totals(cells: Sequence[ResultCell]) -> list[ResultTotal]:
    """Each feeder's day, each period's feeders and the day, summed over published cells only
    (feeders then periods then the day, each in the cells' order)."""
    groups: dict[tuple[str, Any], list[ResultCell]] = {}
    for cell in cells:
        groups.setdefault(("feeder", cell.feeder), []).append(cell)
    for cell in sorted(cells, key=lambda c: c.period.start_utc):
        groups.setdefault(("period", cell.period), []).append(cell)
    groups[("day", None)] = list(cells)
    totals = []
    for (scope, key), members in groups.items():
        published = [cell for cell in members if cell.figures is not None]
        energy: dict[str, int | None] = {}
        for name in ENERGY_FIGURES:
            values = [value for cell in published if (value := cell.energy_wh(name)) is not None]
            energy[name] = sum(values) if values else None
        totals.append(
            ResultTotal(
                scope=scope,
                feeder=key if scope == "feeder" else None,
                period=key if scope == "period" else None,
                cells_published=len(published),
                cells_suppressed=len(members) - len(published),
                energy_wh=energy if published else None,
                figures_withheld=sum(len(cell.withheld) for cell in published),
            )
        )
    return totals


# --- reading a day ---------------------------------------------------------------------------


def check_day_is_over(settlement_date: date, *, length_minutes: int, now: datetime) -> list[SettlementPeriod]:
    """The date's periods, once its last has ended by ``now``; a 422 naming ``date`` before."""
    try:
        periods = periods_of_day(settlement_date, length_minutes=length_minutes)
    except InvalidPeriodError as error:
        raise MarketError("date", str(error).removeprefix("settlement_date: ")) from None
    end = periods[-1].end_utc
    if now < end:
        raise MarketError(
            "date",
            f"{settlement_date.isoformat()} is not over yet: its results are published once it ends, "
            f"at {end.isoformat().replace('+00:00', 'Z')}",
        )
    return periods


def open_results(
    session: Session,
    *,
    settlement_date: date,
    length_minutes: int,
    min_households: int,
    licence: Licence,
    now: datetime,
) -> OpenResults:
    """A finished day's results per feeder and period, suppressed and totalled for publication.

    Raises
    ------
    MarketError
        ``date`` is not over by ``now`` or outside the supported range; ``min_households`` is
        below the floor.
    """
    check_min_households(min_households)
    periods = check_day_is_over(settlement_date, length_minutes=length_minutes, now=now)
    cells = suppress(read_cell_figures(session, periods), min_households=min_households)
    return OpenResults(
        settlement_date=settlement_date,
        interval_minutes=length_minutes,
        min_households=min_households,
        generated_at=now.astimezone(UTC),
        licence=licence,
        cells=cells,
        totals=published_totals(cells),
    )


def read_cell_figures(session: Session, periods: Sequence[SettlementPeriod]) -> list[CellFigures]:
    """Every feeder's figures in each of ``periods`` (of one length, oldest first), feeder by feeder.

    Five queries whatever the day's size, in one snapshot on PostgreSQL (a session that has not
    begun its transaction): households, meters, the periods' current interval
    energy, the trades and the node prices of their current clearing runs. Rows are keyed by
    period number and read whole (``all()``): a 10,000-household day is about a million rows,
    and converting each one's time, or fetching them one by one, was most of the time.
    """
    if session.get_bind().dialect.name == "postgresql" and not session.in_transaction():
        # The five reads see one snapshot: a re-clear committed between them cannot mix two runs.
        session.execute(sa.text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
    by_number = {period.period: period for period in periods}
    first, last = periods[0].start_utc, periods[-1].start_utc
    length = periods[0].length_minutes
    home: dict[str, str] = dict(
        session.execute(
            sa.select(col(ParticipantRow.id), col(ParticipantRow.node_id)).where(
                col(ParticipantRow.kind) == HOUSEHOLD, col(ParticipantRow.node_id).is_not(None)
            )
        ).all()
    )
    owner: dict[str, str] = {}
    #: An active meter's registration, for the meters a household had in a period.
    active_since: dict[str, datetime] = {}
    expected: dict[str, list[datetime]] = defaultdict(list)  # household -> its active meters' start
    for meter_id, participant_id, active, created_at in session.execute(
        sa.select(
            col(MeterRow.id), col(MeterRow.participant_id), col(MeterRow.active), col(MeterRow.created_at)
        )
    ).all():
        if participant_id not in home:
            continue
        owner[meter_id] = participant_id
        if active:
            active_since[meter_id] = created_at
            expected[participant_id].append(created_at)

    # Most households had all their meters before the day began: counted once.
    whole_day = {
        household: len(starts) for household, starts in expected.items() if max(starts) < periods[0].end_utc
    }

    def meters_had(household: str, period: SettlementPeriod) -> int:
        count = whole_day.get(household)
        if count is not None:
            return count
        return sum(1 for created_at in expected.get(household, ()) if created_at < period.end_utc)

    # (household, period number) -> [import, export, bought, sold, active meters read, rows read]
    figures: dict[tuple[str, int], list[int]] = {}
    energy = IntervalEnergyRow.__table__.c  # type: ignore[attr-defined]
    for meter_id, number, import_wh, export_wh in session.execute(
        sa.select(energy.meter_id, energy.period, energy.import_wh, energy.export_wh).where(
            energy.interval_start_utc >= first,
            energy.interval_start_utc <= last,
            energy.length_minutes == length,
            energy.is_current,
        )
    ).all():
        household = owner.get(meter_id)
        if household is None or number not in by_number:
            continue
        key = (household, number)
        values = figures.get(key)
        if values is None:
            values = figures[key] = [0, 0, 0, 0, 0, 0]
        values[0] += import_wh
        values[1] += export_wh
        since = active_since.get(meter_id)
        if since is not None and since < by_number[number].end_utc:
            values[4] += 1
        values[5] += 1

    runs = ClearingRunRow.__table__.c  # type: ignore[attr-defined]
    trades = TradeRow.__table__.c  # type: ignore[attr-defined]
    current = (
        runs.is_current,
        runs.length_minutes == length,
        runs.interval_start_utc >= first,
        runs.interval_start_utc <= last,
    )
    for number, participant_id, side, accepted_wh in session.execute(
        sa.select(runs.period, trades.participant_id, trades.side, trades.accepted_wh)
        .join(TradeRow.__table__, trades.run_id == runs.id)  # type: ignore[attr-defined]
        .where(*current, trades.accepted_wh > 0)
    ).all():
        if participant_id not in home or number not in by_number:
            continue
        key = (participant_id, number)
        values = figures.get(key)
        if values is None:
            values = figures[key] = [0, 0, 0, 0, 0, 0]
        values[2 if side == "buy" else 3] += accepted_wh
    prices_table = NodePriceRow.__table__.c  # type: ignore[attr-defined]
    prices: dict[tuple[str, int], Decimal] = {
        (node_id, number): price
        for number, node_id, price in session.execute(
            sa.select(runs.period, prices_table.node_id, prices_table.price_p_per_kwh)
            .join(NodePriceRow.__table__, prices_table.run_id == runs.id)  # type: ignore[attr-defined]
            .where(*current)
        ).all()
    }

    # A household's energy is known in a period when every meter it had then has been read; a
    # cell is incomplete where a household had a meter, or traded, and its energy is not known.
    incomplete: set[tuple[str, int]] = set()
    rows: dict[tuple[str, int], list[HouseholdPeriod]] = defaultdict(list)
    for (household, number), values in figures.items():
        feeder = home[household]
        had = meters_had(household, by_number[number])
        known = values[5] > 0 and values[4] >= had
        if not known:
            incomplete.add((feeder, number))
        rows[(feeder, number)].append(
            HouseholdPeriod(
                import_wh=values[0] if known else None,
                export_wh=values[1] if known else None,
                bought_wh=values[2],
                sold_wh=values[3],
            )
        )
    for household in expected:
        feeder = home[household]
        for number, period in by_number.items():
            if (household, number) not in figures and meters_had(household, period):
                incomplete.add((feeder, number))

    return [
        cell_figures(
            feeder,
            period,
            rows.get((feeder, number), ()),
            price_p_per_kwh=prices.get((feeder, number)),
            meter_data_complete=(feeder, number) not in incomplete,
        )
        for feeder in sorted(set(home.values()))
        for number, period in by_number.items()
    ]


# --- the formats: one definition of each field -----------------------------------------------


@dataclass(frozen=True)
class OpenField:
    """A column of a published table: its Table Schema type, meaning, unit and value."""

    name: str
    type: str  # a Frictionless Table Schema type: string, integer, number, boolean, date, datetime
    description: str
    value: Callable[[Any], Any]  # the row to the value (None: empty)
    unit: str | None = None
    enum: tuple[str, ...] | None = None
    required: bool = False


def _kwh(wh: int | None) -> Decimal | None:
    return None if wh is None else (Decimal(wh) / WH_PER_KWH).quantize(Decimal("0.001"))


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _figure(name: str) -> Callable[[ResultCell], Any]:
    def value(cell: ResultCell) -> Any:
        return None if cell.figures is None else getattr(cell.figures, name)

    return value


def _energy(name: str) -> Callable[[ResultCell], Decimal | None]:
    return lambda cell: _kwh(cell.energy_wh(name))


_SUPPRESSED_NOTE = " Empty where the cell is suppressed."
_WITHHELD_NOTE = (
    " Empty where the cell is suppressed, or where fewer households than the threshold make it up"
    " (named in withheld)."
)
_ENERGY_DESCRIPTIONS = {
    "bought_wh": "Energy the feeder's households bought in the market (accepted buy trades of the "
    "period's current clearing run).",
    "sold_wh": "Energy the feeder's households sold in the market (accepted sell trades of the "
    "period's current clearing run).",
    "backstop_import_wh": "Energy imported from the backstop (the energy company): the sum of the "
    "households' positive imbalances, metered import minus export less bought minus sold, as "
    "settlement books it.",
    "backstop_export_wh": "Energy exported to the backstop: the sum of the households' negative "
    "imbalances, as settlement books it.",
    "local_self_consumption_wh": "Energy exported on the feeder and used on it in the same period: "
    "the lesser of the metered households' total import and total export.",
}


def _column(name: str) -> str:
    return name.removesuffix("_wh") + "_kwh"


CELL_FIELDS: tuple[OpenField, ...] = (
    OpenField(
        "settlement_date",
        "date",
        "The settlement date (Europe/London).",
        lambda c: c.period.settlement_date,
        required=True,
    ),
    OpenField(
        "period",
        "integer",
        "The settlement period, numbered from 1 at local midnight (46, 48 or 50 a day at 30 minutes).",
        lambda c: c.period.period,
        required=True,
    ),
    OpenField(
        "start_utc", "datetime", "The period's start, UTC.", lambda c: c.period.start_utc, required=True
    ),
    OpenField(
        "end_utc", "datetime", "The period's end (exclusive), UTC.", lambda c: c.period.end_utc, required=True
    ),
    OpenField(
        "feeder",
        "string",
        "The network node the households are registered at.",
        lambda c: c.feeder,
        required=True,
    ),
    OpenField(
        "status",
        "string",
        "published, or suppressed where fewer households contributed than the threshold (every "
        "figure of a suppressed cell is empty, never zero).",
        lambda c: c.status,
        enum=(PUBLISHED, SUPPRESSED),
        required=True,
    ),
    OpenField(
        "households",
        "integer",
        "Households that contributed: a non-zero metered import or export, or a trade." + _SUPPRESSED_NOTE,
        _figure("households"),
    ),
    *(
        OpenField(
            _column(name), "number", _ENERGY_DESCRIPTIONS[name] + _WITHHELD_NOTE, _energy(name), unit="kWh"
        )
        for name in ENERGY_FIGURES
    ),
    OpenField(
        "withheld",
        "string",
        "The energy columns of a published cell left empty because between one household and one "
        "fewer than the threshold make them up (their own energy would show), space-separated; "
        "empty when none is, or when the cell is suppressed.",
        lambda c: None if c.figures is None else " ".join(_column(name) for name in c.withheld),
    ),
    OpenField(
        "price_p_per_kwh",
        "number",
        "The feeder's node price in the period's current clearing run. Empty where the cell is "
        "suppressed or the period was not cleared.",
        _figure("price_p_per_kwh"),
        unit="p/kWh",
    ),
    OpenField(
        "meter_data_complete",
        "boolean",
        "Whether every household on the feeder had its meter data for the period; if not, the "
        "backstop and self-consumption figures cover those that had." + _SUPPRESSED_NOTE,
        _figure("meter_data_complete"),
    ),
)


def _total_energy(name: str) -> Callable[[ResultTotal], Decimal | None]:
    return lambda total: None if total.energy_wh is None else _kwh(total.energy_wh[name])


TOTAL_FIELDS: tuple[OpenField, ...] = (
    OpenField(
        "scope",
        "string",
        "feeder (one feeder's day), period (one period over every feeder) or day (the whole day).",
        lambda t: t.scope,
        enum=("feeder", "period", "day"),
        required=True,
    ),
    OpenField("feeder", "string", "The feeder, for a feeder's total; empty otherwise.", lambda t: t.feeder),
    OpenField(
        "period",
        "integer",
        "The settlement period, for a period's total; empty otherwise.",
        lambda t: None if t.period is None else t.period.period,
    ),
    OpenField(
        "start_utc",
        "datetime",
        "The period's start, UTC, for a period's total; empty otherwise.",
        lambda t: None if t.period is None else t.period.start_utc,
    ),
    OpenField(
        "cells_published",
        "integer",
        "The published cells this total sums.",
        lambda t: t.cells_published,
        required=True,
    ),
    OpenField(
        "cells_suppressed",
        "integer",
        "The suppressed cells it leaves out: a total covers published cells only, so no suppressed "
        "cell can be found by subtraction.",
        lambda t: t.cells_suppressed,
        required=True,
    ),
    OpenField(
        "figures_withheld",
        "integer",
        "Energy figures withheld in the published cells it sums (each left out of its column's sum).",
        lambda t: t.figures_withheld,
        required=True,
    ),
    *(
        OpenField(
            _column(name),
            "number",
            f"The published cells' {_column(name)}, summed where published (not withheld). Empty "
            "where no cell publishes it.",
            _total_energy(name),
            unit="kWh",
        )
        for name in ENERGY_FIGURES
    ),
)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return _iso(value) or ""
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")  # never an exponent
    return str(value)


def _json(value: Any) -> Any:
    """A value in JSON: decimals and times as strings (house style), the rest as they are."""
    if isinstance(value, Decimal | date | datetime):
        return _text(value)
    return value


def table_csv(fields: Sequence[OpenField], rows: Iterable[Any]) -> str:
    """A table as CSV (RFC 4180, CRLF line ends), its header the fields' names."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([field.name for field in fields])
    for row in rows:
        writer.writerow([_text(field.value(row)) for field in fields])
    return out.getvalue()


def table_json(fields: Sequence[OpenField], rows: Iterable[Any]) -> list[dict[str, Any]]:
    """A table as JSON objects with the fields' names (an empty value is null)."""
    return [{field.name: _json(field.value(row)) for field in fields} for row in rows]


def cells_csv(results: OpenResults) -> str:
    return table_csv(CELL_FIELDS, results.cells)


def totals_csv(results: OpenResults) -> str:
    return table_csv(TOTAL_FIELDS, results.totals)


def results_json(results: OpenResults) -> dict[str, Any]:
    """The day's results as one JSON document (the API's answer)."""
    return {
        "settlement_date": results.settlement_date.isoformat(),
        "interval_minutes": results.interval_minutes,
        "min_households": results.min_households,
        "generated_at": _iso(results.generated_at),
        "licence": {
            "name": results.licence.name,
            "title": results.licence.title,
            "path": results.licence.path,
        },
        "cells": table_json(CELL_FIELDS, results.cells),
        "totals": table_json(TOTAL_FIELDS, results.totals),
    }


_JSON_TYPES = {
    "string": {"type": "string"},
    "integer": {"type": "integer"},
    "number": {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?$"},
    "boolean": {"type": "boolean"},
    "date": {"type": "string", "format": "date"},
    "datetime": {"type": "string", "format": "date-time"},
}


def table_json_schema(fields: Sequence[OpenField]) -> dict[str, Any]:
    """The JSON Schema of one row of :func:`table_json`, from the same fields."""
    properties = {}
    for field in fields:
        schema: dict[str, Any] = dict(_JSON_TYPES[field.type])
        if field.enum is not None:
            schema["enum"] = list(field.enum)
        if not field.required:
            schema = {"anyOf": [schema, {"type": "null"}]}
        schema["description"] = field.description + (f" Unit: {field.unit}." if field.unit else "")
        properties[field.name] = schema
    return {
        "type": "object",
        "properties": properties,
        "required": [field.name for field in fields],
        "additionalProperties": False,
    }


def results_json_schema() -> dict[str, Any]:
    """The JSON Schema of :func:`results_json`'s document (the API's contract for it)."""
    return {
        "type": "object",
        "properties": {
            "settlement_date": {"type": "string", "format": "date"},
            "interval_minutes": {"type": "integer"},
            "min_households": {"type": "integer"},
            "generated_at": {"type": "string", "format": "date-time"},
            "licence": {
                "type": "object",
                "properties": {name: {"type": "string"} for name in ("name", "title", "path")},
                "required": ["name", "title", "path"],
            },
            "cells": {"type": "array", "items": table_json_schema(CELL_FIELDS)},
            "totals": {"type": "array", "items": table_json_schema(TOTAL_FIELDS)},
        },
        "required": [
            "settlement_date",
            "interval_minutes",
            "min_households",
            "generated_at",
            "licence",
            "cells",
            "totals",
        ],
    }


# --- the data package ------------------------------------------------------------------------


def results_file_names(settlement_date: date) -> tuple[str, str]:
    """The cells' and the totals' CSV file names for a date."""
    day = settlement_date.isoformat()
    return f"market-results-{day}.csv", f"market-results-totals-{day}.csv"


def table_schema(fields: Sequence[OpenField], primary_key: Sequence[str] | None = None) -> dict[str, Any]:
    """A Frictionless Table Schema for the fields: type, description, unit (a custom property, and in
    the description), the allowed values and which must be present; an empty cell is missing."""
    described = []
    for field in fields:
        entry: dict[str, Any] = {
            "name": field.name,
            "type": field.type,
            "description": field.description + (f" Unit: {field.unit}." if field.unit else ""),
        }
        if field.unit is not None:
            entry["unit"] = field.unit
        if field.type == "datetime":
            entry["format"] = "default"  # ISO 8601 in UTC with Z
        constraints: dict[str, Any] = {}
        if field.required:
            constraints["required"] = True
        if field.enum is not None:
            constraints["enum"] = list(field.enum)
        if constraints:
            entry["constraints"] = constraints
        described.append(entry)
    schema: dict[str, Any] = {"fields": described, "missingValues": [""]}
    if primary_key:
        schema["primaryKey"] = list(primary_key)
    return schema


def datapackage_descriptor(results: OpenResults) -> dict[str, Any]:
    """A Frictionless (tabular) Data Package descriptor for a day's two CSV files."""
    day = results.settlement_date.isoformat()
    cells_file, totals_file = results_file_names(results.settlement_date)
    csv_resource = {
        "profile": "tabular-data-resource",
        "format": "csv",
        "mediatype": "text/csv",
        "encoding": "utf-8",
        "dialect": {"delimiter": ",", "lineTerminator": "\r\n", "header": True},
    }
    return {
        "profile": "tabular-data-package",
        "name": f"smartbrum-market-results-{day}",
        "title": f"smartbrum local energy market results, {day}",
        "description": (
            f"Per feeder and settlement period of {day} (Europe/London): energy traded locally, "
            "energy from and to the backstop, local PV self-consumption and the cleared price. A cell "
            f"is published only where at least {results.min_households} households contributed; "
            "suppressed cells are marked and empty, and totals cover published cells only."
        ),
        "created": _iso(results.generated_at),
        "licenses": [
            {"name": results.licence.name, "path": results.licence.path, "title": results.licence.title}
        ],
        "keywords": ["energy", "local energy market", "Birmingham", "open data"],
        "resources": [
            {
                "name": "market-results",
                "path": cells_file,
                "title": f"Results per feeder and period, {day}",
                **csv_resource,
                "schema": table_schema(CELL_FIELDS, ["feeder", "period"]),
            },
            {
                "name": "market-results-totals",
                "path": totals_file,
                "title": f"Totals over published cells, {day}",
                **csv_resource,
                "schema": table_schema(TOTAL_FIELDS),
            },
        ],
    }
