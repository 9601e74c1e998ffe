"""What the energy company watches: households found by search, meters' latest readings,
settlement runs and their lines, whether runs balance, and the last cleared interval.

Read-only queries for the operator's pages (and any other face that needs them); each is one or
two statements, paged in the database where the list can be long. May import :mod:`market` and
SQLModel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlmodel import Session, col, select

from market.charges import POOL
from market.database import chunks
from market.intervals import SettlementPeriod, settlement_period
from market.participants import DATA_SERVICE, HOUSEHOLD, Participant
from market.tables import (
    InvitationRow,
    LedgerLineRow,
    MeterReadingRow,
    MeterRow,
    ParticipantRow,
    SettlementRunRow,
)
from market.units import WH_PER_KWH

__all__ = [
    "MeterState",
    "SettledLine",
    "SettlementRunSummary",
    "find_households",
    "invited_participants",
    "list_settlement_runs",
    "meter_states",
    "settlement_run_ids",
    "settlement_run_lines",
    "unbalanced_runs",
]


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def find_households(
    session: Session, *, query: str = "", limit: int = 50, offset: int = 0
) -> tuple[list[Participant], int]:
    """Households whose id, name, MPAN or node contains ``query`` (any case), by id, one page of
    them and how many match in all."""
    table = ParticipantRow.__table__  # type: ignore[attr-defined]
    rows = table.c
    where = rows.kind == HOUSEHOLD
    text = query.strip().lower()
    if text:
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        where = where & sa.or_(
            *(
                sa.func.lower(sa.func.coalesce(column, "")).like(pattern, escape="\\")
                for column in (rows.id, rows.display_name, rows.mpan, rows.node_id)
            )
        )
    total = session.execute(sa.select(sa.func.count()).select_from(table).where(where)).scalar_one()
    found = session.execute(
        sa.select(rows.id, rows.kind, rows.display_name, rows.mpan, rows.node_id, rows.active)
        .where(where)
        .order_by(rows.id)
        .offset(offset)
        .limit(limit)
    )
    return [Participant(*row) for row in found], int(total)


def invited_participants(session: Session, *, participant_ids: list[str], now: datetime) -> set[str]:
    """Those of ``participant_ids`` with an invitation still usable at ``now``."""
    if not participant_ids:
        return set()
    return set(
        session.exec(
            select(InvitationRow.participant_id).where(
                col(InvitationRow.participant_id).in_(participant_ids),
                col(InvitationRow.used_at).is_(None),
                col(InvitationRow.expires_at) > now,
            )
        )
    )


@dataclass(frozen=True)
class MeterState:
    """A meter, its household and its latest reading (none yet: ``polled_at`` is None)."""

    meter_id: str
    participant_id: str
    active: bool
    model: str
    polled_at: datetime | None
    quality: str | None
    problems: str


def meter_states(
    session: Session,
    *,
    participant_id: str | None = None,
    quality: str | None = None,
    failing_before: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[MeterState], int]:
    """Meters by id with their latest reading, one page and how many match in all.

    ``quality`` keeps the meters whose latest reading has it; ``"none"`` those never read.
    ``failing_before`` keeps the active meters failing: never read, not read since that instant,
    or whose latest reading is invalid (its energy counters unusable).
    """
    table = MeterRow.__table__  # type: ignore[attr-defined]
    readings = MeterReadingRow.__table__.c  # type: ignore[attr-defined]
    # Each meter's latest poll by its (meter_id, polled_at) index, one seek per meter: a
    # grouped max would read every reading ever stored.
    latest_at = (
        sa.select(sa.func.max(readings.polled_at))
        .where(readings.meter_id == table.c.id)
        .correlate(table)
        .scalar_subquery()
    )
    meters = sa.select(
        table.c.id,
        table.c.participant_id,
        table.c.active,
        table.c.model,
        table.c.transport,
        latest_at.label("polled_at"),
    ).subquery("meters_read")
    last = MeterReadingRow.__table__.alias("last_reading")  # type: ignore[attr-defined]
    joined = meters.outerjoin(
        last, (last.c.meter_id == meters.c.id) & (last.c.polled_at == meters.c.polled_at)
    )
    where: sa.ColumnElement[bool] = sa.true()
    if participant_id:
        where = where & (meters.c.participant_id == participant_id)
    if quality == "none":
        where = where & meters.c.polled_at.is_(None)
    elif quality:
        where = where & (last.c.quality == quality)
    if failing_before is not None:
        where = (
            where
            & meters.c.active
            # A data-service meter is never polled: its files are not "failing" readings.
            & (meters.c.transport != DATA_SERVICE)
            & sa.or_(
                meters.c.polled_at.is_(None),
                meters.c.polled_at < failing_before,
                last.c.quality == "invalid",
            )
        )
    total = session.execute(sa.select(sa.func.count()).select_from(joined).where(where)).scalar_one()
    rows = session.execute(
        sa.select(
            meters.c.id,
            meters.c.participant_id,
            meters.c.active,
            meters.c.model,
            meters.c.polled_at,
            last.c.quality,
            last.c.problems,
        )
        .select_from(joined)
        .where(where)
        .order_by(meters.c.id)
        .offset(offset)
        .limit(limit)
    )
    return [
        MeterState(
            meter_id=meter_id,
            participant_id=owner,
            active=bool(active),
            model=model,
            polled_at=None if polled_at is None else _aware(polled_at),
            quality=found_quality,
            problems=problems or "",
        )
        for meter_id, owner, active, model, polled_at, found_quality, problems in rows
    ], int(total)


@dataclass(frozen=True)
class SettlementRunSummary:
    """A settlement run as a list shows it (who it left pending is on its own page)."""

    id: int
    period: SettlementPeriod
    run_type: str
    sequence: int
    status: str
    lines: int
    created_at: datetime


def list_settlement_runs(
    session: Session, *, settlement_date: date | None = None, limit: int = 50, offset: int = 0
) -> tuple[list[SettlementRunSummary], int]:
    """Settlement runs, newest first (of one settlement date, or all), one page and the count."""
    runs = SettlementRunRow.__table__.c  # type: ignore[attr-defined]
    query = sa.select(
        runs.id,
        runs.settlement_date,
        runs.period,
        runs.length_minutes,
        runs.run_type,
        runs.sequence,
        runs.status,
        runs.lines,
        runs.created_at,
    )
    count = sa.select(sa.func.count()).select_from(SettlementRunRow)
    if settlement_date is not None:
        query = query.where(runs.settlement_date == settlement_date)
        count = count.where(runs.settlement_date == settlement_date)
    total = session.execute(count).scalar_one()
    page = session.execute(query.order_by(runs.id.desc()).offset(offset).limit(limit))
    return [
        SettlementRunSummary(
            id=row.id,
            period=settlement_period(row.settlement_date, row.period, length_minutes=row.length_minutes),
            run_type=row.run_type,
            sequence=row.sequence,
            status=row.status,
            lines=row.lines,
            created_at=row.created_at,
        )
        for row in page
    ], int(total)


@dataclass(frozen=True)
class SettledLine:
    """One ledger line of a run: ``amount_cp`` hundredths of a penny from ``debit`` to ``credit``."""

    kind: str
    debit: str
    credit: str
    amount_cp: int
    participant_id: str | None
    energy_kwh: Decimal
    price_p_per_kwh: Decimal | None
    memo: str


def settlement_run_lines(
    session: Session, *, run_id: int, limit: int = 100, offset: int = 0
) -> tuple[list[SettledLine], int]:
    """A run's ledger lines in the order they were posted, one page and how many in all."""
    total = session.exec(
        select(sa.func.count()).select_from(LedgerLineRow).where(LedgerLineRow.run_id == run_id)
    ).one()
    rows = session.exec(
        select(LedgerLineRow)
        .where(LedgerLineRow.run_id == run_id)
        .order_by(col(LedgerLineRow.id))
        .offset(offset)
        .limit(limit)
    )
    return [
        SettledLine(
            kind=row.kind,
            debit=row.debit,
            credit=row.credit,
            amount_cp=row.amount_cp,
            participant_id=row.participant_id,
            energy_kwh=Decimal(row.energy_wh) / WH_PER_KWH,
            price_p_per_kwh=row.price_p_per_kwh,
            memo=row.memo,
        )
        for row in rows
    ], int(total)


def settlement_run_ids(session: Session) -> list[int]:
    """Every settlement run's id, oldest first (one per interval and run: a month is a few
    thousand)."""
    ids = session.exec(select(SettlementRunRow.id).order_by(col(SettlementRunRow.id)))
    return [run_id for run_id in ids if run_id is not None]


def unbalanced_runs(session: Session, *, run_ids: Sequence[int] | None = None) -> dict[int, int]:
    """The runs whose pool does not net to zero, with what each leaves in it (hundredths of a
    penny): the sum :func:`market.settlement.pool_balance_cp` makes per run, for every run (or
    those of ``run_ids``, by the ledger's run index) in grouped queries. Empty when every run
    balances."""
    amount = col(LedgerLineRow.amount_cp)
    net = sa.func.sum(
        sa.case((col(LedgerLineRow.credit) == POOL, amount), else_=0)
        - sa.case((col(LedgerLineRow.debit) == POOL, amount), else_=0)
    )
    query = (
        select(LedgerLineRow.run_id, net)
        .where(sa.or_(col(LedgerLineRow.credit) == POOL, col(LedgerLineRow.debit) == POOL))
        .group_by(col(LedgerLineRow.run_id))
        .having(net != 0)
    )
    if run_ids is None:
        return {int(run_id): int(left) for run_id, left in session.exec(query)}
    found: dict[int, int] = {}
    for some in chunks(list(run_ids)):
        chunk = query.where(col(LedgerLineRow.run_id).in_(list(some)))
        found.update({int(run_id): int(left) for run_id, left in session.exec(chunk)})
    return found
