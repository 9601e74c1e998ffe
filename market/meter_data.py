"""Meter data in the database: raw readings, counter events, and each interval's energy.

Readings arrive in batches from a polling cycle; :func:`store_readings` writes a batch in the
caller's transaction, so a crash loses none or all of it, and a batch stored twice (a retried
cycle) adds nothing the second time. :func:`refresh_interval_energy` derives each interval's
energy from the stored counters (:mod:`metering.energy`) and, where the result differs from the
current one (an estimate replaced by an actual, a late reading), stores a new revision and
retires the old: settlement sees what changed.

Counters are stored in whole Wh: a meter's float32 kWh register holds about seven significant
digits, so its value rounded to the Wh (half to even) keeps everything the meter said.

May import :mod:`market`, :mod:`metering` and SQLModel.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from market.database import chunks
from market.intervals import SettlementPeriod, period_at, settlement_period
from market.tables import IntervalEnergyRow, MeterEventRow, MeterReadingRow
from market.units import WH_PER_KWH
from metering.energy import (
    DEFAULT_MAX_GAP,
    CounterEvent,
    CounterReading,
    IntervalEnergy,
    derive_interval_energy,
)
from metering.readings import Quality, Reading

COUNTERS = ("import_kwh", "export_kwh")
#: How far before the first interval readings are loaded to find the rate for estimates.
RATE_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class StoredEnergy:
    """A meter's current energy for one interval."""

    meter_id: str
    period: SettlementPeriod
    import_kwh: Decimal
    export_kwh: Decimal
    estimated: bool
    revision: int


def kwh_to_wh(value: float) -> int:
    """A counter in kWh (as the meter's float) to whole Wh, half to even."""
    if not math.isfinite(value):
        raise ValueError(f"a counter must be finite, not {value}")
    return int((Decimal(repr(value)) * WH_PER_KWH).to_integral_value(rounding=ROUND_HALF_EVEN))


def store_readings(session: Session, readings: Sequence[Reading]) -> int:
    """Add a batch of readings in the caller's transaction; returns how many were new.

    A reading for a meter and poll time already stored is skipped, so storing a batch twice is
    harmless.
    """
    if not readings:
        return 0
    rows = []
    for reading in readings:
        values = dict(reading.values)
        counters = {name: values.pop(name, None) for name in COUNTERS}
        rows.append(
            {
                "meter_id": reading.meter_id,
                "polled_at": reading.polled_at,
                "meter_time": reading.meter_time,
                "quality": str(reading.quality),
                "import_wh": None if counters["import_kwh"] is None else kwh_to_wh(counters["import_kwh"]),
                "export_wh": None if counters["export_kwh"] is None else kwh_to_wh(counters["export_kwh"]),
                "values_json": json.dumps(values, sort_keys=True, allow_nan=False),
                "problems": "\n".join(reading.problems),
            }
        )
    table = MeterReadingRow.__table__  # type: ignore[attr-defined]
    if session.get_bind().dialect.name == "postgresql":
        added = _store_by_arrays(session, rows)
    else:
        statement = _insert_new(session, table, ["meter_id", "polled_at"]).returning(table.c.id)
        added = len(session.execute(statement, rows).all())
    session.flush()
    return added


#: One statement with a column per array: PostgreSQL parses it once however many rows there are
#: (a multi-row VALUES list is re-parsed per batch, which dominated storing a 10,000-meter cycle).
_INSERT_BY_ARRAYS = sa.text(
    """
    INSERT INTO meter_reading
        (meter_id, polled_at, meter_time, quality, import_wh, export_wh, values_json, problems)
    SELECT * FROM unnest(
        CAST(:meter_id AS text[]), CAST(:polled_at AS timestamptz[]), CAST(:meter_time AS timestamptz[]),
        CAST(:quality AS text[]), CAST(:import_wh AS bigint[]), CAST(:export_wh AS bigint[]),
        CAST(:values_json AS text[]), CAST(:problems AS text[])
    )
    ON CONFLICT (meter_id, polled_at) DO NOTHING
    RETURNING id
    """
)


def _store_by_arrays(session: Session, rows: list[dict[str, Any]]) -> int:
    columns = (
        "meter_id",
        "polled_at",
        "meter_time",
        "quality",
        "import_wh",
        "export_wh",
        "values_json",
        "problems",
    )
    parameters = {column: [row[column] for row in rows] for column in columns}
    return len(session.execute(_INSERT_BY_ARRAYS, parameters).all())


def _insert_new(session: Session, table: Any, key: list[str]) -> Any:
    """An INSERT that skips rows whose ``key`` is already stored (both backends' ON CONFLICT)."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    return insert.on_conflict_do_nothing(index_elements=key)


def counter_readings_of_meters(
    session: Session, meter_ids: Sequence[str], *, start: datetime, end: datetime
) -> dict[str, list[CounterReading]]:
    """Several meters' settleable counter readings in ``[start, end]``, by meter, in time order:
    one query, plain rows."""
    table = MeterReadingRow.__table__  # type: ignore[attr-defined]
    by_meter: dict[str, list[CounterReading]] = {}
    for chunk in chunks(meter_ids):
        query = (
            sa.select(table.c.meter_id, table.c.polled_at, table.c.import_wh, table.c.export_wh)
            .where(
                table.c.meter_id.in_(chunk),
                table.c.polled_at >= start,
                table.c.polled_at <= end,
                table.c.quality != Quality.INVALID.value,
                table.c.import_wh.is_not(None),
                table.c.export_wh.is_not(None),
            )
            .order_by(table.c.meter_id, table.c.polled_at)
        )
        for meter_id, polled_at, import_wh, export_wh in session.execute(query):
            by_meter.setdefault(meter_id, []).append(CounterReading(polled_at, import_wh, export_wh))
    return by_meter


@dataclass(frozen=True)
class DerivedEnergy:
    """One meter's energy for some periods, derived from its readings (not yet stored)."""

    meter_id: str
    periods: tuple[SettlementPeriod, ...]
    energy: tuple[IntervalEnergy, ...]
    resets: tuple[CounterEvent, ...]


def near_window(periods: Sequence[SettlementPeriod]) -> tuple[datetime, datetime]:
    """The span whose readings :func:`derive_meter_energy` needs when nothing is estimated."""
    ordered = sorted(periods, key=lambda p: p.start_utc)
    return ordered[0].start_utc - DEFAULT_MAX_GAP, ordered[-1].end_utc + DEFAULT_MAX_GAP


def derive_meter_energy(
    session: Session, meter_id: str, periods: Sequence[SettlementPeriod]
) -> DerivedEnergy:
    """Derive ``periods``' energy for a meter from its stored readings; reads, writes nothing.

    Uses the readings within :data:`~metering.energy.DEFAULT_MAX_GAP` of the periods first (see
    :func:`near_window`): with a reading that close on each side of every boundary, no others can
    change the result. Only when an edge has to be estimated are the readings of the whole
    :data:`RATE_WINDOW` read, for the extrapolation rate. The counter resets found are those
    within the periods.
    """
    return derive_energy_of_meters(session, [meter_id], periods)[0]


def derive_energy_of_meters(
    session: Session, meter_ids: Sequence[str], periods: Sequence[SettlementPeriod]
) -> list[DerivedEnergy]:
    """:func:`derive_meter_energy` for many meters: the near readings of all of them in one query,
    then the whole rate window in one more for those with an estimate; reads, writes nothing."""
    ordered = tuple(sorted(periods, key=lambda p: p.start_utc))
    start, end = near_window(ordered)
    near = counter_readings_of_meters(session, meter_ids, start=start, end=end)
    spans = [(p.start_utc, p.end_utc) for p in ordered]
    derived = {meter_id: derive_interval_energy(near.get(meter_id, []), spans) for meter_id in meter_ids}
    estimated = [meter_id for meter_id, energy in derived.items() if any(e.estimated for e in energy)]
    if estimated:
        wide = counter_readings_of_meters(
            session,
            estimated,
            start=ordered[0].start_utc - RATE_WINDOW,
            end=ordered[-1].end_utc + RATE_WINDOW,
        )
        for meter_id in estimated:
            derived[meter_id] = derive_interval_energy(wide.get(meter_id, []), spans)
    return [
        DerivedEnergy(
            meter_id,
            ordered,
            tuple(derived[meter_id]),
            tuple(dict.fromkeys(event for energy in derived[meter_id] for event in energy.events)),
        )
        for meter_id in meter_ids
    ]


def estimates_to_revisit(
    session: Session, *, since: datetime, before: datetime
) -> dict[SettlementPeriod, list[str]]:
    """The estimated energy a later reading may now improve: each period that began in
    ``[since, before)`` with the meters whose current energy for it is an estimate and that have
    readings on both sides of it (one after its end, one within a day before its start). A
    reading that arrives after its period was derived (a slow shard, a meter back after an
    outage) is then used: the counters on both sides of a gap fix the gap's total, where the
    first estimate only extrapolated."""
    energy = IntervalEnergyRow.__table__  # type: ignore[attr-defined]
    query = (
        sa.select(energy.c.meter_id, energy.c.interval_start_utc, energy.c.length_minutes)
        .where(
            energy.c.is_current,
            energy.c.estimated,
            energy.c.interval_start_utc >= since,
            energy.c.interval_start_utc < before,
        )
        .order_by(energy.c.interval_start_utc, energy.c.meter_id)
    )
    found: dict[SettlementPeriod, list[str]] = {}
    for meter_id, start, length in session.execute(query):
        period = period_at(start, length_minutes=length)
        found.setdefault(period, []).append(meter_id)
    # Keep the meters with readings on both sides of the period (two queries a period, a day of
    # periods at most): only then can the counters fix its energy. An estimate with nothing before
    # it (a meter's first periods) or nothing after it yet is left as it is.
    revisit: dict[SettlementPeriod, list[str]] = {}
    for period, meter_ids in found.items():
        after = _meters_with_a_reading(session, meter_ids, start=period.end_utc, end=None)
        bracketed = _meters_with_a_reading(
            session,
            [m for m in meter_ids if m in after],
            start=period.start_utc - RATE_WINDOW,
            end=period.start_utc,
        )
        if kept := [meter_id for meter_id in meter_ids if meter_id in bracketed]:
            revisit[period] = kept
    return revisit


def _meters_with_a_reading(
    session: Session, meter_ids: Sequence[str], *, start: datetime, end: datetime | None
) -> set[str]:
    """Those of ``meter_ids`` with a usable reading at or after ``start`` (and at or before ``end``)."""
    readings = MeterReadingRow.__table__  # type: ignore[attr-defined]
    found: set[str] = set()
    for chunk in chunks(meter_ids):
        query = sa.select(readings.c.meter_id).where(
            readings.c.meter_id.in_(chunk),
            readings.c.polled_at >= start,
            readings.c.quality != Quality.INVALID.value,
        )
        if end is not None:
            query = query.where(readings.c.polled_at <= end)
        found.update(meter_id for (meter_id,) in session.execute(query.distinct()))
    return found


def derive_revisited_estimates(
    session: Session, revisit: dict[SettlementPeriod, list[str]]
) -> list[DerivedEnergy]:
    """:func:`derive_energy_of_meters` for each period of :func:`estimates_to_revisit` and its
    meters; reads, writes nothing (storing keeps only what changed)."""
    return [
        derived
        for period, meter_ids in revisit.items()
        for derived in derive_energy_of_meters(session, meter_ids, [period])
    ]


def store_meter_energy(session: Session, derived: DerivedEnergy, *, now: datetime) -> list[StoredEnergy]:
    """Store what changed in ``derived`` as new revisions, and its counter resets as meter events
    (once each); returns every period's current energy."""
    return store_energy_of_meters(session, [derived], now=now).get(derived.meter_id, [])


def store_energy_of_meters(
    session: Session, derived: Sequence[DerivedEnergy], *, now: datetime
) -> dict[str, list[StoredEnergy]]:
    """:func:`store_meter_energy` for many meters in a few statements: one read of the current
    revisions, one update retiring those that changed, one insert of the new ones (chunked)."""
    work = [item for item in derived if item.periods]
    if not work:
        return {}
    table = IntervalEnergyRow.__table__  # type: ignore[attr-defined]
    events = [(item.meter_id, event) for item in work for event in item.resets]
    if events:
        _record_resets(session, events, now)
    starts = sorted({period.start_utc for item in work for period in item.periods})
    lengths = {period.length_minutes for item in work for period in item.periods}
    current: dict[tuple[str, datetime, int], tuple[int, int, int, bool, int]] = {}
    for chunk in chunks([item.meter_id for item in work]):
        query = sa.select(
            table.c.id,
            table.c.meter_id,
            table.c.interval_start_utc,
            table.c.length_minutes,
            table.c.import_wh,
            table.c.export_wh,
            table.c.estimated,
            table.c.revision,
        ).where(
            table.c.is_current,
            table.c.meter_id.in_(chunk),
            table.c.interval_start_utc.in_(starts),
            table.c.length_minutes.in_(sorted(lengths)),
        )
        for row_id, meter_id, start, length, import_wh, export_wh, estimated, revision in session.execute(
            query
        ):
            current[(meter_id, start, length)] = (row_id, import_wh, export_wh, bool(estimated), revision)
    retire: list[int] = []
    inserts: list[dict[str, Any]] = []
    stored: dict[str, list[StoredEnergy]] = {}
    for item in work:
        out = stored.setdefault(item.meter_id, [])
        for period, energy in zip(item.periods, item.energy):
            old = current.get((item.meter_id, period.start_utc, period.length_minutes))
            revision = 1 if old is None else old[4]
            values = (energy.import_wh, energy.export_wh, energy.estimated)
            if old is None or old[1:4] != values:
                if old is not None:
                    retire.append(old[0])
                    revision = old[4] + 1
                inserts.append(
                    {
                        "meter_id": item.meter_id,
                        "interval_start_utc": period.start_utc,
                        "length_minutes": period.length_minutes,
                        "settlement_date": period.settlement_date,
                        "period": period.period,
                        "import_wh": energy.import_wh,
                        "export_wh": energy.export_wh,
                        "estimated": energy.estimated,
                        "revision": revision,
                        "is_current": True,
                        "computed_at": now,
                    }
                )
            else:
                values = (old[1], old[2], old[3])
            out.append(
                StoredEnergy(
                    item.meter_id,
                    period,
                    Decimal(values[0]) / WH_PER_KWH,
                    Decimal(values[1]) / WH_PER_KWH,
                    values[2],
                    revision,
                )
            )
    # Retire first: the partial unique index allows one current revision per meter and interval.
    for ids in chunks(retire):
        session.execute(sa.update(table).where(table.c.id.in_(ids)).values(is_current=False))
    if inserts:
        session.execute(sa.insert(table), inserts)
    return stored


def _record_resets(session: Session, events: Sequence[tuple[str, CounterEvent]], now: datetime) -> None:
    """Counter decreases as meter events, each once (a repeat is skipped by the unique key)."""
    rows = [
        {
            "meter_id": meter_id,
            "kind": str(event.kind),
            "counter": str(event.register),
            "previous_at": event.previous_at_utc,
            "at": event.at_utc,
            "before_wh": event.before_wh,
            "after_wh": event.after_wh,
            "recorded_at": now,
        }
        for meter_id, event in events
    ]
    table = MeterEventRow.__table__  # type: ignore[attr-defined]
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    session.execute(insert.on_conflict_do_nothing(index_elements=["meter_id", "at", "counter", "kind"]), rows)


@dataclass(frozen=True)
class StoredReading:
    """A stored reading: counters exact (kWh to the Wh), other values as read."""

    meter_id: str
    polled_at: datetime
    quality: str
    import_kwh: Decimal | None
    export_kwh: Decimal | None
    values: dict[str, float]


def list_readings(
    session: Session,
    *,
    meter_ids: Sequence[str],
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[StoredReading]:
    """Readings of some meters, oldest first, in ``[start, end)``."""
    query = select(MeterReadingRow).where(col(MeterReadingRow.meter_id).in_(list(meter_ids)))
    if start is not None:
        query = query.where(MeterReadingRow.polled_at >= start)
    if end is not None:
        query = query.where(MeterReadingRow.polled_at < end)
    query = (
        query.order_by(col(MeterReadingRow.polled_at), col(MeterReadingRow.meter_id))
        .offset(offset)
        .limit(limit)
    )
    return [
        StoredReading(
            meter_id=row.meter_id,
            polled_at=row.polled_at,
            quality=row.quality,
            import_kwh=None if row.import_wh is None else Decimal(row.import_wh) / WH_PER_KWH,
            export_kwh=None if row.export_wh is None else Decimal(row.export_wh) / WH_PER_KWH,
            values=json.loads(row.values_json),
        )
        for row in session.exec(query)
    ]


def energy_of_meters(
    session: Session,
    *,
    meter_ids: Sequence[str],
    settlement_date: date | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[StoredEnergy]:
    """Current interval energy of some meters, oldest interval first; optionally one day's."""
    query = select(IntervalEnergyRow).where(
        col(IntervalEnergyRow.is_current), col(IntervalEnergyRow.meter_id).in_(list(meter_ids))
    )
    if settlement_date is not None:
        query = query.where(IntervalEnergyRow.settlement_date == settlement_date)
    query = query.order_by(col(IntervalEnergyRow.interval_start_utc), col(IntervalEnergyRow.meter_id))
    return [
        StoredEnergy(
            row.meter_id,
            settlement_period(row.settlement_date, row.period, length_minutes=row.length_minutes),
            Decimal(row.import_wh) / WH_PER_KWH,
            Decimal(row.export_wh) / WH_PER_KWH,
            row.estimated,
            row.revision,
        )
        for row in session.exec(query.offset(offset).limit(limit))
    ]
