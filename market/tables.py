"""The market's tables, as SQLModel classes named for what they store.

Exact by construction: energy is whole Wh (``BIGINT``), order limit prices whole 0.01 p ticks,
and every other price or amount of money an :class:`ExactDecimal` (``NUMERIC`` on PostgreSQL,
decimal text on SQLite, which has no exact decimal type). Times are UTC, always aware.

The schema is created and changed by the Alembic migrations in ``market/migrations``; these
classes describe it for queries, and a test checks the two agree.

May import SQLModel, SQLAlchemy and :mod:`market`.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlmodel import Field, SQLModel


class ExactDecimal(sa.types.TypeDecorator[Decimal]):
    """A Decimal stored exactly: ``NUMERIC`` on PostgreSQL, its text on SQLite."""

    impl = sa.String(64)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(sa.Numeric(asdecimal=True))
        return dialect.type_descriptor(sa.String(64))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, Decimal) or not value.is_finite():
            raise ValueError(f"an exact column takes a finite Decimal, not {value!r}")
        return value if dialect.name == "postgresql" else str(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(value)


class UtcDateTime(sa.types.TypeDecorator[datetime]):
    """An aware UTC datetime; SQLite keeps it as naive UTC text, PostgreSQL as ``timestamptz``."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"times are stored in UTC and must be aware, not {value!r}")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _utc() -> Any:
    return sa.Column(UtcDateTime(), nullable=False)


def _exact(nullable: bool = False) -> Any:
    return sa.Column(ExactDecimal(), nullable=nullable)


class ParticipantRow(SQLModel, table=True):
    """A household or the operator (the energy company)."""

    __tablename__ = "participant"

    id: str = Field(primary_key=True, max_length=64)
    kind: str = Field(max_length=16)  # "household" or "operator"
    display_name: str = Field(max_length=200)
    mpan: str | None = Field(default=None, max_length=13, unique=True)
    node_id: str | None = Field(default=None, max_length=64)
    active: bool = True
    created_at: datetime = Field(sa_column=_utc())


class MeterRow(SQLModel, table=True):
    """A household's smart meter and how to reach it over Modbus."""

    __tablename__ = "meter"
    __table_args__ = (sa.UniqueConstraint("host", "port", "unit_id", name="uq_meter_address"),)

    id: str = Field(primary_key=True, max_length=64)
    participant_id: str = Field(foreign_key="participant.id", index=True, max_length=64)
    host: str = Field(max_length=255)
    port: int
    unit_id: int
    transport: str = Field(max_length=16)  # "tcp", "rtu" or "rtu-over-tcp"
    model: str = Field(max_length=32)
    active: bool = True
    created_at: datetime = Field(sa_column=_utc())


class NetworkVersionRow(SQLModel, table=True):
    """One version of the network tree, in force from ``effective_from_utc`` until the next."""

    __tablename__ = "network_version"

    id: int | None = Field(default=None, primary_key=True)
    root: str = Field(max_length=64)
    effective_from_utc: datetime = Field(sa_column=sa.Column(UtcDateTime(), nullable=False, unique=True))
    note: str = Field(default="", max_length=500)
    created_at: datetime = Field(sa_column=_utc())


class NetworkNodeRow(SQLModel, table=True):
    """A node below the root in one network version, with the edge to its parent."""

    __tablename__ = "network_node"

    version_id: int = Field(foreign_key="network_version.id", primary_key=True)
    node_id: str = Field(primary_key=True, max_length=64)
    parent_id: str = Field(max_length=64)
    import_capacity_wh: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    export_capacity_wh: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    fee_p_per_kwh: Decimal = Field(sa_column=_exact())


class TariffRow(SQLModel, table=True):
    """The backstop tariffs, in force from ``effective_from_utc`` until the next row."""

    __tablename__ = "tariff"

    id: int | None = Field(default=None, primary_key=True)
    effective_from_utc: datetime = Field(sa_column=sa.Column(UtcDateTime(), nullable=False, unique=True))
    import_p_per_kwh: Decimal = Field(sa_column=_exact())
    export_p_per_kwh: Decimal = Field(sa_column=_exact())
    created_at: datetime = Field(sa_column=_utc())


class OrderRow(SQLModel, table=True):
    """An order's current state; every change is also an :class:`OrderEventRow`."""

    __tablename__ = "market_order"
    __table_args__ = (
        sa.UniqueConstraint("participant_id", "idempotency_key", name="uq_order_idempotency"),
        sa.Index("ix_order_interval", "interval_start_utc", "length_minutes", "status"),
        sa.Index(
            "ix_order_participant_open", "participant_id", "interval_start_utc", "length_minutes", "status"
        ),
    )

    id: str = Field(primary_key=True, max_length=36)
    participant_id: str = Field(foreign_key="participant.id", max_length=64)
    node_id: str = Field(max_length=64)
    interval_start_utc: datetime = Field(sa_column=_utc())
    length_minutes: int
    settlement_date: date
    period: int
    side: str = Field(max_length=4)  # "buy" or "sell"
    quantity_wh: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    price_ticks: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    status: str = Field(max_length=16)  # "open" or "cancelled"
    version: int
    priority_at: datetime = Field(sa_column=_utc())
    created_at: datetime = Field(sa_column=_utc())
    updated_at: datetime = Field(sa_column=_utc())
    idempotency_key: str | None = Field(default=None, max_length=128)
    #: Who placed it: "manual" (the household, by the API or the web app) or "strategy" (the
    #: platform, for the household's strategy).
    source: str = Field(
        default="manual", sa_column=sa.Column(sa.String(16), nullable=False, server_default="manual")
    )


class OrderEventRow(SQLModel, table=True):
    """One change to an order, kept for ever: placed, amended or cancelled."""

    __tablename__ = "order_event"
    __table_args__ = (sa.UniqueConstraint("order_id", "version", name="uq_order_event_version"),)

    id: int | None = Field(default=None, primary_key=True)
    order_id: str = Field(foreign_key="market_order.id", max_length=36)
    version: int
    kind: str = Field(max_length=16)
    quantity_wh: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    price_ticks: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    status: str = Field(max_length=16)
    at: datetime = Field(sa_column=_utc())
    actor: str = Field(max_length=100)


class ClearingRunRow(SQLModel, table=True):
    """One clearing of one interval. Exactly one run per interval is current.

    A re-clear (with a reason) adds a run with the next ``sequence`` and marks the earlier one
    superseded; nothing is deleted.
    """

    __tablename__ = "clearing_run"
    __table_args__ = (
        sa.UniqueConstraint("interval_start_utc", "length_minutes", "sequence", name="uq_run_sequence"),
        sa.Index(
            "uq_run_current",
            "interval_start_utc",
            "length_minutes",
            unique=True,
            sqlite_where=sa.text("is_current"),
            postgresql_where=sa.text("is_current"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    interval_start_utc: datetime = Field(sa_column=_utc())
    length_minutes: int
    settlement_date: date
    period: int
    sequence: int
    is_current: bool
    reason: str | None = Field(default=None, max_length=500)
    supersedes_id: int | None = Field(default=None, foreign_key="clearing_run.id")
    superseded_at: datetime | None = Field(default=None, sa_column=sa.Column(UtcDateTime(), nullable=True))
    inputs_digest: str = Field(max_length=64)
    network_version_id: int = Field(foreign_key="network_version.id")
    tariff_id: int = Field(foreign_key="tariff.id")
    status: str = Field(max_length=16)
    welfare_p: Decimal = Field(sa_column=_exact())
    grid_import_wh: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    grid_export_wh: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    orders: int
    excluded_orders: int  # open orders at a node the run's network does not have
    price_levels: int
    rounds: int
    solve_seconds: float
    total_seconds: float
    started_at: datetime = Field(sa_column=_utc())
    finished_at: datetime = Field(sa_column=_utc())
    triggered_by: str = Field(max_length=100)


class NodePriceRow(SQLModel, table=True):
    """A node's price in a clearing run, with its supporting range and net import."""

    __tablename__ = "node_price"

    run_id: int = Field(foreign_key="clearing_run.id", primary_key=True)
    node_id: str = Field(primary_key=True, max_length=64)
    price_p_per_kwh: Decimal = Field(sa_column=_exact())
    lowest_p_per_kwh: Decimal | None = Field(default=None, sa_column=_exact(nullable=True))
    highest_p_per_kwh: Decimal | None = Field(default=None, sa_column=_exact(nullable=True))
    net_import_wh: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger, nullable=True))


class TradeRow(SQLModel, table=True):
    """An order's accepted energy in a clearing run, at its node's price."""

    __tablename__ = "trade"
    __table_args__ = (
        sa.UniqueConstraint("run_id", "order_id", name="uq_trade_order"),
        sa.Index("ix_trade_participant", "participant_id", "run_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="clearing_run.id")
    order_id: str = Field(foreign_key="market_order.id", max_length=36)
    participant_id: str = Field(max_length=64)
    node_id: str = Field(max_length=64)
    side: str = Field(max_length=4)
    accepted_wh: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    price_p_per_kwh: Decimal = Field(sa_column=_exact())


class MeterReadingRow(SQLModel, table=True):
    """One poll of one meter, as read: the raw data settlement's energy comes from.

    The energy counters are kept in whole Wh (a meter's float32 kWh register carries about seven
    significant digits, so nothing the meter said is lost); other quantities as a JSON object.
    """

    __tablename__ = "meter_reading"
    __table_args__ = (sa.UniqueConstraint("meter_id", "polled_at", name="uq_reading_poll"),)

    id: int | None = Field(default=None, primary_key=True)
    meter_id: str = Field(foreign_key="meter.id", max_length=64)
    polled_at: datetime = Field(sa_column=_utc())
    meter_time: datetime | None = Field(default=None, sa_column=sa.Column(UtcDateTime(), nullable=True))
    quality: str = Field(max_length=16)
    import_wh: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger, nullable=True))
    export_wh: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger, nullable=True))
    values_json: str = Field(default="{}", sa_column=sa.Column(sa.Text, nullable=False))
    problems: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False))


class MeterEventRow(SQLModel, table=True):
    """Something a meter's data showed: a counter going backwards (a reset or a replacement)."""

    __tablename__ = "meter_event"
    __table_args__ = (sa.UniqueConstraint("meter_id", "at", "counter", "kind", name="uq_meter_event"),)

    id: int | None = Field(default=None, primary_key=True)
    meter_id: str = Field(foreign_key="meter.id", max_length=64)
    kind: str = Field(max_length=32)
    counter: str = Field(max_length=16)  # "import" or "export"
    previous_at: datetime = Field(sa_column=_utc())
    at: datetime = Field(sa_column=_utc())
    before_wh: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    after_wh: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    recorded_at: datetime = Field(sa_column=_utc())


class IntervalEnergyRow(SQLModel, table=True):
    """A meter's import and export in one interval, one row per revision.

    A recomputation that changes anything (an estimate replaced by an actual, a late reading)
    adds a revision and retires the current one, so settlement can see what changed and why.
    """

    __tablename__ = "interval_energy"
    __table_args__ = (
        # Settlement reads one interval's energy for every meter.
        sa.Index("ix_energy_interval", "interval_start_utc", "length_minutes"),
        sa.UniqueConstraint(
            "meter_id", "interval_start_utc", "length_minutes", "revision", name="uq_energy_rev"
        ),
        sa.Index(
            "uq_energy_current",
            "meter_id",
            "interval_start_utc",
            "length_minutes",
            unique=True,
            sqlite_where=sa.text("is_current"),
            postgresql_where=sa.text("is_current"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    meter_id: str = Field(foreign_key="meter.id", max_length=64)
    interval_start_utc: datetime = Field(sa_column=_utc())
    length_minutes: int
    settlement_date: date
    period: int
    import_wh: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    export_wh: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    estimated: bool
    revision: int
    is_current: bool
    computed_at: datetime = Field(sa_column=_utc())


class SettlementRunRow(SQLModel, table=True):
    """One settlement of one interval: the initial run, then reconciliations when data changes."""

    __tablename__ = "settlement_run"
    __table_args__ = (
        sa.UniqueConstraint(
            "interval_start_utc", "length_minutes", "sequence", name="uq_settlement_sequence"
        ),
        sa.Index(
            "uq_settlement_initial",
            "interval_start_utc",
            "length_minutes",
            unique=True,
            sqlite_where=sa.text("run_type = 'initial'"),
            postgresql_where=sa.text("run_type = 'initial'"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    interval_start_utc: datetime = Field(sa_column=_utc())
    length_minutes: int
    settlement_date: date = Field(index=True)
    period: int
    run_type: str = Field(max_length=16)  # "initial" or "reconcile"
    sequence: int
    clearing_run_id: int | None = Field(default=None, foreign_key="clearing_run.id")
    status: str = Field(max_length=16)  # "complete", "partial" or "pending"
    inputs_digest: str = Field(max_length=64)
    import_p_per_kwh: Decimal | None = Field(default=None, sa_column=_exact(nullable=True))
    export_p_per_kwh: Decimal | None = Field(default=None, sa_column=_exact(nullable=True))
    vat_rate: Decimal = Field(sa_column=_exact())
    platform_fee_p_per_kwh: Decimal = Field(sa_column=_exact())
    lines: int
    created_at: datetime = Field(sa_column=_utc())
    triggered_by: str = Field(max_length=100)


class SettlementStandingRow(SQLModel, table=True):
    """A household a settlement run could not settle on its metered energy: its meter data is
    awaited (``reason`` says why; its trades are settled, its imbalance waits) or was estimated.
    A household without a row in a run was settled on metered energy, or, in a ``pending`` run
    (nothing cleared), not at all. Indexed by household, so a statement finds a household's
    standing in every run of a month in one seek, however many other households wait."""

    __tablename__ = "settlement_standing"
    __table_args__ = (sa.Index("ix_settlement_standing_household", "participant_id", "run_id"),)

    run_id: int = Field(foreign_key="settlement_run.id", primary_key=True)
    participant_id: str = Field(primary_key=True, max_length=64)
    standing: str = Field(max_length=24)  # "awaiting_meter_data" or "estimated"
    reason: str = Field(default="", max_length=500)


class LedgerLineRow(SQLModel, table=True):
    """One ledger line: ``amount_cp`` hundredths of a penny from ``debit`` to ``credit``.

    A reconciliation's lines correct the run named by ``corrects_run_id`` (the run before) and
    may carry negative energy where the energy moved the other way to the money.
    """

    __tablename__ = "ledger_line"
    __table_args__ = (
        # Interval first: settling an interval appends its lines' entries in one place (a
        # household-first index had a page per household to rewrite per interval); a statement
        # seeks its household in each settled interval (migration 0007).
        sa.Index("ix_ledger_interval_participant", "interval_start_utc", "participant_id"),
        sa.Index("ix_ledger_run", "run_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="settlement_run.id")
    interval_start_utc: datetime = Field(sa_column=_utc())
    length_minutes: int
    settlement_date: date
    period: int
    kind: str = Field(max_length=32)
    debit: str = Field(max_length=80)
    credit: str = Field(max_length=80)
    amount_cp: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    participant_id: str | None = Field(default=None, max_length=64)
    energy_wh: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    price_p_per_kwh: Decimal | None = Field(default=None, sa_column=_exact(nullable=True))
    memo: str = Field(default="", max_length=200)
    corrects_run_id: int | None = Field(default=None, foreign_key="settlement_run.id")


class ApiTokenRow(SQLModel, table=True):
    """A participant's API token, stored only as its SHA-256 hash; revocable."""

    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True)
    participant_id: str = Field(foreign_key="participant.id", index=True, max_length=64)
    token_hash: str = Field(max_length=64, unique=True)
    label: str = Field(default="", max_length=100)
    created_at: datetime = Field(sa_column=_utc())
    revoked_at: datetime | None = Field(default=None, sa_column=sa.Column(UtcDateTime(), nullable=True))


class AuditEventRow(SQLModel, table=True):
    """A state-changing request: who, what, when, from where, and how it ended."""

    __tablename__ = "audit_event"
    __table_args__ = (sa.Index("ix_audit_actor_at", "actor", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_column=_utc())
    actor: str = Field(max_length=64)  # a participant id, or "anonymous"
    method: str = Field(max_length=8)
    path: str = Field(max_length=500)
    status_code: int
    client: str = Field(default="", max_length=100)
    detail: str = Field(default="", max_length=500)


# --- web accounts (issue 16): passwords, invitations, browser sessions, failed sign-ins ---------


class AccountRow(SQLModel, table=True):
    """A participant's web account: its argon2id password hash (never the password)."""

    __tablename__ = "account"

    participant_id: str = Field(foreign_key="participant.id", primary_key=True, max_length=64)
    password_hash: str = Field(max_length=255)
    password_changed_at: datetime = Field(sa_column=_utc())
    created_at: datetime = Field(sa_column=_utc())


class InvitationRow(SQLModel, table=True):
    """A one-time link to set a participant's password, stored as its secret's SHA-256 hash."""

    __tablename__ = "invitation"

    id: int | None = Field(default=None, primary_key=True)
    participant_id: str = Field(foreign_key="participant.id", index=True, max_length=64)
    secret_hash: str = Field(max_length=64, unique=True)
    invited_by: str = Field(max_length=64)
    created_at: datetime = Field(sa_column=_utc())
    expires_at: datetime = Field(sa_column=_utc())
    used_at: datetime | None = Field(default=None, sa_column=sa.Column(UtcDateTime(), nullable=True))


class WebSessionRow(SQLModel, table=True):
    """A signed-in browser, kept server-side: the cookie's secret only as its SHA-256 hash."""

    __tablename__ = "web_session"

    secret_hash: str = Field(primary_key=True, max_length=64)
    participant_id: str = Field(foreign_key="participant.id", index=True, max_length=64)
    #: The synchronizer token every form of this session must carry.
    csrf_token: str = Field(max_length=64)
    created_at: datetime = Field(sa_column=_utc())
    last_seen_at: datetime = Field(sa_column=_utc())
    ended_at: datetime | None = Field(default=None, sa_column=sa.Column(UtcDateTime(), nullable=True))


class SignInFailureRow(SQLModel, table=True):
    """One failed sign-in, by the name tried and the client's address (for throttling)."""

    __tablename__ = "sign_in_failure"
    __table_args__ = (
        sa.Index("ix_sign_in_failure_name_at", "name", "at"),
        sa.Index("ix_sign_in_failure_client_at", "client", "at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64)
    client: str = Field(max_length=100)
    at: datetime = Field(sa_column=_utc())


# --- automatic trading (issue 17): each household's strategy, every version kept ----------------


class StrategyVersionRow(SQLModel, table=True):
    """One version of a household's strategy (:class:`planning.strategy.Strategy` as JSON): the
    newest is in force; every change adds a version, none is ever changed, so each is audited."""

    __tablename__ = "strategy_version"
    __table_args__ = (sa.UniqueConstraint("participant_id", "version", name="uq_strategy_version"),)

    id: int | None = Field(default=None, primary_key=True)
    participant_id: str = Field(foreign_key="participant.id", max_length=64)
    version: int
    document: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    paused: bool
    created_at: datetime = Field(sa_column=_utc())
    created_by: str = Field(max_length=64)


class StrategyPlanRow(SQLModel, table=True):
    """The platform's latest plan for a household's strategy: when it was made, the periods it
    covers with the battery's state of charge and the EV's charging it planned in each (a JSON
    list), and what it expects to cost. The platform cannot see a battery or an EV: it assumes
    they follow its plan, so the next plan starts from where this one leaves them."""

    __tablename__ = "strategy_plan"

    participant_id: str = Field(foreign_key="participant.id", primary_key=True, max_length=64)
    planned_at: datetime = Field(sa_column=_utc())
    first_start_utc: datetime = Field(sa_column=_utc())
    battery_soc_wh: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger, nullable=True))
    ev_needed_wh: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger, nullable=True))
    periods_json: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    expected_cost_p: Decimal = Field(sa_column=_exact())
