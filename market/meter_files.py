"""Half-hourly meter data from files: the national data service's CSV, parsed, checked and stored
as the interval energy that settlement reads.

Most GB smart meters are read through the national data service, not over Modbus: their energy
arrives as a file of half-hourly rows. A household read that way has one meter of the
``data-service`` transport (:data:`market.participants.DATA_SERVICE`), made on its first import
and named ``hh-<MPAN>``; its rows go into ``interval_energy`` by the same revision rules as
derived Modbus energy (:mod:`market.meter_data`): a changed value is a new revision that retires
the current one, stamped with the platform's time, so :func:`market.settlement.periods_to_reconcile`
finds it as it finds a late reading, settlement sums it with no special case, and statements name
an estimate that an actual replaced.

The file (:data:`HEADER`): a header line naming the six columns (in any order, each once, no
others), then one row per MPAN and settlement period, in Europe/London settlement dates and
periods (46, 48 or 50 on a day). Rows are numbered as a spreadsheet shows them: the header is
row 1, the first data row row 2. Every row is checked (:func:`parse_meter_file`, pure, then
against what is stored, :func:`import_meter_file`); a problem names the row, the column and the
reason. Energy is exact to the Wh: at most three decimal places of kWh; a finer value is refused,
never rounded (a file that carries more precision than the platform stores is better corrected
at its source than silently changed).

The rules of storing, and why:

- An MPAN must belong to an active household; a household with an active Modbus meter is refused
  (its energy would otherwise be counted twice): remove the Modbus meter first. Conversely a
  Modbus meter cannot be registered for a household read through the data service.
- The same data again adds nothing (``unchanged``); a changed value adds a revision.
- An estimate never replaces an actual: the row is refused (an old file imported again after its
  corrections, which a silent skip would hide), and the actual stays.
- A period that has not ended by the platform's clock is refused: no data from the future.
- All or nothing: any bad row stores nothing, unless ``skip_bad``, when the good rows are stored
  and the bad ones reported.

May import :mod:`market` and SQLModel.
"""

from __future__ import annotations

import csv
import functools
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from market.database import bulk_insert, chunks, lock_for_transaction, transaction
from market.errors import MarketError
from market.intervals import InvalidPeriodError, SettlementPeriod, settlement_period
from market.participants import DATA_SERVICE, HOUSEHOLD, data_service_meter_id, mpan_check_digit_ok
from market.tables import IntervalEnergyRow, MeterRow, ParticipantRow
from market.units import WH_PER_KWH

#: The file's columns (a header names each once, in any order).
HEADER = ("mpan", "settlement_date", "settlement_period", "import_kwh", "export_kwh", "quality")
ACTUAL, ESTIMATED = "actual", "estimated"
#: The most data rows one file may hold: a month of 2,000 households is about 3 million, so files
#: are a day or so of a district; 500,000 rows is about 25 MB of CSV.
MAX_ROWS = 500_000
#: The largest file read (bytes): :data:`MAX_ROWS` rows of about 50 bytes, with room to spare.
MAX_FILE_BYTES = 32 * 1024 * 1024
#: A half hour's import or export above this is refused as a mistake (Wh given as kWh, say): a
#: 100 A domestic supply moves under 12 kWh in half an hour.
MAX_KWH = Decimal(1000)
#: How many problems a report lists (all are counted).
MAX_LISTED_PROBLEMS = 1000
#: Data-service meters are half-hourly: a market of other interval lengths cannot settle them.
LENGTH_MINUTES = 30

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
_PERIOD = re.compile(r"[0-9]{1,3}", re.ASCII)
_KWH = re.compile(r"-?[0-9]+(?:\.[0-9]*)?|-?\.[0-9]+", re.ASCII)


class MeterFileError(MarketError):
    """The file as a whole cannot be read (its header, its size, its encoding): no row is."""


class HalfHourRow(NamedTuple):
    """One checked row: a household's energy for one half hour, in Wh (a named tuple: a file
    makes 100,000 of them)."""

    row: int
    mpan: str
    period: SettlementPeriod
    import_wh: int
    export_wh: int
    estimated: bool


@dataclass(frozen=True)
class RowProblem:
    """Why a row is refused: its number (the header is row 1), the column and the reason."""

    row: int
    field: str
    reason: str


@dataclass(frozen=True)
class ParsedFile:
    """A file's rows that passed the checks needing no database, and the problems of the rest."""

    rows: tuple[HalfHourRow, ...]
    problems: tuple[RowProblem, ...]
    rows_read: int


@dataclass
class ImportSummary:
    """What an import did.

    ``stored`` rows are ``new`` (no energy before) plus ``revised`` (a new revision; of those,
    ``estimates_replaced`` turned an estimate into an actual); ``unchanged`` rows were stored
    already. ``bad`` rows were refused; ``problems`` lists the first :data:`MAX_LISTED_PROBLEMS`
    of their problems (a row may have several). Without ``skip_bad``, a bad row means nothing is
    stored (``stored`` is 0 and so are the rest).
    """

    rows_read: int = 0
    stored: int = 0
    new: int = 0
    revised: int = 0
    estimates_replaced: int = 0
    unchanged: int = 0
    bad: int = 0
    meters_created: int = 0
    skip_bad: bool = False
    problems: list[RowProblem] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready values (the CLI's output and the API's answer)."""
        return {
            "rows_read": self.rows_read,
            "stored": self.stored,
            "new": self.new,
            "revised": self.revised,
            "estimates_replaced": self.estimates_replaced,
            "unchanged": self.unchanged,
            "bad": self.bad,
            "meters_created": self.meters_created,
            "skip_bad": self.skip_bad,
            "problems": [
                {"row": problem.row, "field": problem.field, "reason": problem.reason}
                for problem in self.problems[:MAX_LISTED_PROBLEMS]
            ],
            "problems_listed": min(len(self.problems), MAX_LISTED_PROBLEMS),
            "problems_total": len(self.problems),
        }


# --- parsing: no database ------------------------------------------------------------------------


def decode_meter_file(data: bytes) -> str:
    """A file's bytes as text (UTF-8, with or without a byte-order mark).

    Raises
    ------
    MeterFileError
        Larger than :data:`MAX_FILE_BYTES`, or not UTF-8.
    """
    if len(data) > MAX_FILE_BYTES:
        raise MeterFileError("file", f"is larger than {MAX_FILE_BYTES} bytes; split it")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise MeterFileError("file", f"is not UTF-8 text (byte {error.start})") from None


def parse_meter_file(text: str, *, now: datetime, max_rows: int = MAX_ROWS) -> ParsedFile:
    """Check every row of a half-hourly data file that can be checked without the database.

    Parameters
    ----------
    text:
        The whole file, decoded (a leading byte-order mark is ignored).
    now:
        The platform's time: a period that has not ended by then is refused.
    max_rows:
        The most data rows the file may hold.

    Raises
    ------
    MeterFileError
        The header is not the six columns of :data:`HEADER`, or the file holds more than
        ``max_rows`` data rows: nothing in it is read.
    """
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    try:
        header = next(reader, None)
    except csv.Error as error:
        raise MeterFileError("header", f"is not CSV ({error})") from None
    if header is None or header == []:
        raise MeterFileError(
            "header", f"the file is empty; its first line must name the columns {', '.join(HEADER)}"
        )
    position = _columns(header)
    rows: list[HalfHourRow] = []
    problems: list[RowProblem] = []
    seen: dict[tuple[str, date, int], int] = {}
    rows_read = 0
    number = 1
    try:
        for values in reader:
            number += 1
            if not values or values == [""]:
                continue  # a blank line (a trailing newline too many) is no row
            rows_read += 1
            if rows_read > max_rows:
                raise MeterFileError("file", f"holds more than {max_rows} data rows; split it")
            if len(values) != len(HEADER):
                problems.append(
                    RowProblem(number, "row", f"has {len(values)} fields; the header has {len(HEADER)}")
                )
                continue
            checked, found = _check_row(number, [values[position[name]].strip() for name in HEADER], now)
            if checked is not None:
                key = (checked.mpan, checked.period.settlement_date, checked.period.period)
                first = seen.setdefault(key, number)
                if first != number:
                    found.append(
                        RowProblem(
                            number,
                            "settlement_period",
                            f"repeats row {first} (the same mpan, date and period)",
                        )
                    )
                    checked = None
            problems += found
            if checked is not None:
                rows.append(checked)
    except csv.Error as error:  # an unclosed quote, say: the rest of the file cannot be read
        rows_read += 1
        problems.append(RowProblem(number + 1, "row", f"is not CSV ({error})"))
    return ParsedFile(tuple(rows), tuple(problems), rows_read)


def _columns(header: Sequence[str]) -> dict[str, int]:
    """Each column's position by name; the header must name the six, each once, and nothing else."""
    names = [name.strip() for name in header]
    unknown = [name for name in names if name not in HEADER]
    if unknown:
        raise MeterFileError(
            "header", f"has unknown column {_shown(unknown[0])}; the columns are {', '.join(HEADER)}"
        )
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise MeterFileError("header", f"names {_shown(repeated[0])} more than once")
    missing = [name for name in HEADER if name not in names]
    if missing:
        raise MeterFileError("header", f"lacks {', '.join(missing)}; the columns are {', '.join(HEADER)}")
    return {name: names.index(name) for name in HEADER}


def _check_row(number: int, values: list[str], now: datetime) -> tuple[HalfHourRow | None, list[RowProblem]]:
    mpan, day_text, period_text, import_text, export_text, quality = values
    problems: list[RowProblem] = []
    if not _mpan_ok(mpan):
        problems.append(
            RowProblem(number, "mpan", f"{_shown(mpan)} is not a 13-digit MPAN core with a valid check digit")
        )
    period: SettlementPeriod | None = None
    day = _date(day_text)
    if day is None:
        problems.append(
            RowProblem(number, "settlement_date", f"{_shown(day_text)} is not a date (YYYY-MM-DD)")
        )
    elif not _PERIOD.fullmatch(period_text):
        problems.append(
            RowProblem(number, "settlement_period", f"{_shown(period_text)} is not a period number")
        )
    else:
        try:
            period = _period(day, int(period_text))
        except InvalidPeriodError as error:
            field, _, reason = str(error).partition(": ")
            name = "settlement_date" if field.endswith("date") else "settlement_period"
            problems.append(RowProblem(number, name, reason or str(error)))
        else:
            if period.end_utc > now:
                problems.append(
                    RowProblem(
                        number,
                        "settlement_period",
                        f"{period.key} has not ended by the platform's clock ({_iso(now)})",
                    )
                )
    import_wh = _wh(number, "import_kwh", import_text, problems)
    export_wh = _wh(number, "export_kwh", export_text, problems)
    if quality not in (ACTUAL, ESTIMATED):
        problems.append(
            RowProblem(number, "quality", f"must be {ACTUAL} or {ESTIMATED}, not {_shown(quality)}")
        )
    if problems or period is None or import_wh is None or export_wh is None:
        return None, problems
    return HalfHourRow(number, mpan, period, import_wh, export_wh, quality == ESTIMATED), problems


@functools.lru_cache(maxsize=65536)
def _mpan_ok(mpan: str) -> bool:
    # A file is many periods of each household: each MPAN is checked once.
    return mpan_check_digit_ok(mpan)


@functools.lru_cache(maxsize=4096)
def _date(text: str) -> date | None:
    if not _DATE.fullmatch(text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


@functools.lru_cache(maxsize=16384)
def _period(day: date, number: int) -> SettlementPeriod:
    # A file is a few days of many households: each period is worked out once.
    return settlement_period(day, number, length_minutes=LENGTH_MINUTES)


def _wh(number: int, name: str, text: str, problems: list[RowProblem]) -> int | None:
    """A kWh column as whole Wh, or None with its problem added."""
    wh = _kwh_to_wh(text)
    if isinstance(wh, str):
        problems.append(RowProblem(number, name, wh))
        return None
    return wh


@functools.lru_cache(maxsize=65536)
def _kwh_to_wh(text: str) -> int | str:
    """``text`` (kWh) as whole Wh, or the reason it is refused. Cached: a household's half hours
    take a few thousand distinct values."""
    if not _KWH.fullmatch(text):
        return f"{_shown(text)} is not a decimal number of kWh"
    value = Decimal(text)
    if value < 0:
        return f"{text} must not be negative"
    if value > MAX_KWH:
        return f"{text} kWh is more than {MAX_KWH} kWh in half an hour"
    wh = value * WH_PER_KWH
    if wh != wh.to_integral_value():
        return f"{text} has more than 3 decimal places (energy is stored to the Wh)"
    return int(wh)


# --- storing ----------------------------------------------------------------------------------------


def import_meter_file(
    engine: Engine,
    text: str,
    *,
    now: datetime,
    skip_bad: bool = False,
    max_rows: int = MAX_ROWS,
    interval_minutes: int = LENGTH_MINUTES,
) -> ImportSummary:
    """Parse a half-hourly data file and store its rows as interval energy, in one transaction.

    Checks every row (:func:`parse_meter_file`, then against what is stored: the MPAN a known
    active household's without an active Modbus meter, no estimate over an actual). With any bad
    row nothing is stored unless ``skip_bad``; then the good rows are. ``now`` (the platform's
    time) stamps the new revisions, so reconciliation finds the intervals they change.

    Raises
    ------
    MeterFileError
        The file cannot be read at all (:func:`parse_meter_file`), or the market's intervals
        (``interval_minutes``) are not half-hourly, so that no settlement would read its rows.
    """
    if interval_minutes != LENGTH_MINUTES:
        raise MeterFileError(
            "interval_minutes",
            f"half-hourly data settles a market of {LENGTH_MINUTES}-minute intervals; this one's are "
            f"{interval_minutes} minutes (SMARTBRUM_INTERVAL_MINUTES)",
        )
    parsed = parse_meter_file(text, now=now, max_rows=max_rows)
    with transaction(engine) as session:
        # Imports one at a time: two storing the same half hours would both find no current
        # revision and the second would break the one-current-revision index.
        lock_for_transaction(session, "meter-data-import")
        return store_half_hours(session, parsed, now=now, skip_bad=skip_bad)


def store_half_hours(session: Session, parsed: ParsedFile, *, now: datetime, skip_bad: bool) -> ImportSummary:
    """Check ``parsed``'s rows against what is stored and store them in the caller's transaction
    (see :func:`import_meter_file`); writes nothing when a row is bad and ``skip_bad`` is not set."""
    summary = ImportSummary(rows_read=parsed.rows_read, skip_bad=skip_bad)
    problems = list(parsed.problems)
    households = _households_by_mpan(session, sorted({row.mpan for row in parsed.rows}))
    modbus = _modbus_meters(session, sorted({household for household, _ in households.values()}))
    meters = _data_service_meters(session, sorted(households))
    accepted: list[HalfHourRow] = []
    for row in parsed.rows:
        found = households.get(row.mpan)
        if found is None:
            problems.append(RowProblem(row.row, "mpan", f"{row.mpan} is not a registered household's MPAN"))
        elif not found[1]:
            problems.append(
                RowProblem(row.row, "mpan", f"{row.mpan} is household {found[0]!r}, which is inactive")
            )
        elif found[0] in modbus:
            problems.append(
                RowProblem(
                    row.row,
                    "mpan",
                    f"household {found[0]!r} is metered over Modbus (meter {modbus[found[0]]!r}); "
                    "remove that meter before importing its data, so no energy is counted twice",
                )
            )
        else:
            accepted.append(row)
    current = _current_energy(session, [data_service_meter_id(mpan) for mpan in households], accepted)
    retire: list[int] = []
    inserts: list[tuple[Any, ...]] = []
    for row in accepted:
        meter_id = data_service_meter_id(row.mpan)
        old = current.get((meter_id, row.period.start_utc))
        if old is not None:
            old_id, import_wh, export_wh, estimated, revision = old
            if (import_wh, export_wh, estimated) == (row.import_wh, row.export_wh, row.estimated):
                summary.unchanged += 1
                continue
            if row.estimated and not estimated:
                problems.append(
                    RowProblem(
                        row.row,
                        "quality",
                        f"an estimate never replaces the actual energy stored for {row.period.key} "
                        f"(revision {revision})",
                    )
                )
                continue
            retire.append(old_id)
            summary.revised += 1
            summary.estimates_replaced += int(estimated and not row.estimated)
            revision += 1
        else:
            summary.new += 1
            revision = 1
        inserts.append(
            (
                meter_id,
                row.period.start_utc,
                row.period.settlement_date,
                row.period.period,
                row.import_wh,
                row.export_wh,
                row.estimated,
                revision,
            )
        )
    summary.problems = sorted(problems, key=lambda problem: problem.row)
    summary.bad = len({problem.row for problem in problems})
    if summary.bad and not skip_bad:
        summary.new = summary.revised = summary.estimates_replaced = summary.unchanged = 0
        return summary
    summary.stored = len(inserts)
    needed = {data_service_meter_id(row.mpan): households[row.mpan][0] for row in accepted}
    summary.meters_created = _ensure_meters(session, needed, meters, now=now)
    # Retire first: the partial unique index allows one current revision per meter and interval.
    table = IntervalEnergyRow.__table__  # type: ignore[attr-defined]
    _retire(session, retire)
    bulk_insert(
        session,
        table,
        (
            "meter_id",
            "interval_start_utc",
            "settlement_date",
            "period",
            "import_wh",
            "export_wh",
            "estimated",
            "revision",
        ),
        inserts,
        constants={"length_minutes": LENGTH_MINUTES, "is_current": True, "computed_at": now},
    )
    return summary


def _retire(session: Session, ids: Sequence[int]) -> None:
    """Mark revisions no longer current: on PostgreSQL in one statement over an array (a file of
    100,000 corrections as IN lists spent seconds in the driver splitting 5,000-parameter queries),
    on SQLite in IN lists."""
    if not ids:
        return
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            sa.text("UPDATE interval_energy SET is_current = false WHERE id = ANY(CAST(:ids AS bigint[]))"),
            {"ids": list(ids)},
        )
        return
    table = IntervalEnergyRow.__table__  # type: ignore[attr-defined]
    for chunk in chunks(ids):
        session.execute(sa.update(table).where(table.c.id.in_(chunk)).values(is_current=False))


def _households_by_mpan(session: Session, mpans: Sequence[str]) -> dict[str, tuple[str, bool]]:
    """The households whose MPAN is one of ``mpans``: MPAN to (id, active)."""
    participants = ParticipantRow.__table__.c  # type: ignore[attr-defined]
    found: dict[str, tuple[str, bool]] = {}
    for chunk in chunks(mpans):
        query = sa.select(participants.mpan, participants.id, participants.active).where(
            participants.mpan.in_(chunk), participants.kind == HOUSEHOLD
        )
        for mpan, participant_id, active in session.execute(query):
            found[mpan] = (participant_id, bool(active))
    return found


def _modbus_meters(session: Session, household_ids: Sequence[str]) -> dict[str, str]:
    """Those of the households with an active Modbus meter: household to its first such meter."""
    meters = MeterRow.__table__.c  # type: ignore[attr-defined]
    found: dict[str, str] = {}
    for chunk in chunks(household_ids):
        query = (
            sa.select(meters.participant_id, meters.id)
            .where(meters.participant_id.in_(chunk), meters.active, meters.transport != DATA_SERVICE)
            .order_by(meters.id)
        )
        for participant_id, meter_id in session.execute(query):
            found.setdefault(participant_id, meter_id)
    return found


def _data_service_meters(session: Session, mpans: Sequence[str]) -> dict[str, bool]:
    """The data-service meters stored for ``mpans``: meter id to whether it is active."""
    meters = MeterRow.__table__.c  # type: ignore[attr-defined]
    found: dict[str, bool] = {}
    for chunk in chunks([data_service_meter_id(mpan) for mpan in mpans]):
        for meter_id, active in session.execute(
            sa.select(meters.id, meters.active).where(meters.id.in_(chunk))
        ):
            found[meter_id] = bool(active)
    return found


def _ensure_meters(
    session: Session, needed: dict[str, str], stored: dict[str, bool], *, now: datetime
) -> int:
    """Make the data-service meters ``needed`` (meter id to household) that are not stored, and
    reactivate those removed (the household has no Modbus meter now: checked); returns how many
    were made."""
    meters = MeterRow.__table__  # type: ignore[attr-defined]
    new = [
        {
            "id": meter_id,
            "participant_id": household,
            # The Modbus address columns are unique together and required: a data-service meter's
            # "host" is its MPAN, which is unique too.
            "host": f"{DATA_SERVICE}:{meter_id.removeprefix('hh-')}",
            "port": 0,
            "unit_id": 0,
            "transport": DATA_SERVICE,
            "model": "half-hourly",
            "active": True,
            "created_at": now,
        }
        for meter_id, household in sorted(needed.items())
        if meter_id not in stored
    ]
    if new:
        session.execute(sa.insert(meters), new)
    removed = sorted(meter_id for meter_id in needed if stored.get(meter_id) is False)
    for ids in chunks(removed):
        session.execute(sa.update(meters).where(meters.c.id.in_(ids)).values(active=True))
    return len(new)


def _current_energy(
    session: Session, meter_ids: Sequence[str], rows: Sequence[HalfHourRow]
) -> dict[tuple[str, datetime], tuple[int, int, int, bool, int]]:
    """The current half-hourly energy of ``meter_ids`` over the span of ``rows``: (meter, start)
    to (row id, import Wh, export Wh, estimated, revision)."""
    if not rows or not meter_ids:
        return {}
    first = min(row.period.start_utc for row in rows)
    last = max(row.period.start_utc for row in rows)
    table = IntervalEnergyRow.__table__.c  # type: ignore[attr-defined]
    found: dict[tuple[str, datetime], tuple[int, int, int, bool, int]] = {}
    for chunk in chunks(meter_ids):
        query = sa.select(
            table.id,
            table.meter_id,
            table.interval_start_utc,
            table.import_wh,
            table.export_wh,
            table.estimated,
            table.revision,
        ).where(
            table.meter_id.in_(chunk),
            table.is_current,
            table.length_minutes == LENGTH_MINUTES,
            table.interval_start_utc >= first,
            table.interval_start_utc <= last,
        )
        for row_id, meter_id, start, import_wh, export_wh, estimated, revision in session.execute(query):
            found[(meter_id, start)] = (row_id, import_wh, export_wh, bool(estimated), revision)
    return found


def _shown(text: str, limit: int = 40) -> str:
    """A value as a problem quotes it: its repr, cut short (a report lists up to 1,000 problems)."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
