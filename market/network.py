"""Network versions and backstop tariffs, each in force from a moment until the next.

Editing the network publishes a new version; a past interval keeps the version it was cleared
with, because its clearing run names it. Tariffs work the same way.

May import :mod:`market`, :mod:`optimiser` and SQLModel.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlmodel import Session, col, func, select

from market.errors import ConflictError, MarketError, NotFoundError
from market.tables import ClearingRunRow, NetworkNodeRow, NetworkVersionRow, ParticipantRow, TariffRow
from market.units import WH_PER_KWH
from optimiser import ClearingInputError, Network, Node, Tariff


@dataclass(frozen=True)
class NetworkVersion:
    """A stored network version and the tree the optimiser takes."""

    id: int
    effective_from_utc: datetime
    network: Network


@dataclass(frozen=True)
class TariffVersion:
    """A stored tariff and its prices."""

    id: int
    effective_from_utc: datetime
    tariff: Tariff


def publish_network(
    session: Session, *, network: Network, effective_from_utc: datetime, now: datetime, note: str = ""
) -> NetworkVersion:
    """Store ``network`` as the version in force from ``effective_from_utc``.

    A version must start after every interval already cleared: the past keeps its network. It
    must keep every node an active household is on (:class:`~market.errors.ConflictError` naming
    them otherwise): a household on a node the network lacks could not trade.
    """
    _after_cleared_intervals(session, effective_from_utc, "effective_from_utc")
    _keeps_households_nodes(session, network)
    if session.exec(
        select(NetworkVersionRow).where(NetworkVersionRow.effective_from_utc == effective_from_utc)
    ).first():
        raise MarketError("effective_from_utc", f"a network version already starts at {effective_from_utc}")
    version = NetworkVersionRow(
        root=network.root, effective_from_utc=effective_from_utc, note=note, created_at=now
    )
    session.add(version)
    session.flush()
    assert version.id is not None
    for position, node_id in enumerate(network.node_ids[1:], start=1):
        parent = network.node_ids[int(network.parent_index[position])]
        session.add(
            NetworkNodeRow(
                version_id=version.id,
                node_id=node_id,
                parent_id=parent,
                import_capacity_wh=int(network.import_capacity_wh[position]),
                export_capacity_wh=int(network.export_capacity_wh[position]),
                fee_p_per_kwh=network.fees_p_per_kwh[position],
            )
        )
    session.flush()
    return NetworkVersion(version.id, effective_from_utc, network)


def network_in_force(session: Session, at: datetime) -> NetworkVersion:
    """The network version in force at ``at``."""
    row = session.exec(
        select(NetworkVersionRow)
        .where(NetworkVersionRow.effective_from_utc <= at)
        .order_by(col(NetworkVersionRow.effective_from_utc).desc())
    ).first()
    if row is None or row.id is None:
        raise NotFoundError("network", f"no network version is in force at {at.isoformat()}")
    return network_version(session, row.id)


def network_root(
    session: Session, *, version_id: int | None = None, at: datetime | None = None
) -> str | None:
    """The root of a network version (by id, or the one in force ``at``), without reading its
    nodes; None when there is no such version."""
    query = select(NetworkVersionRow.root)
    if version_id is not None:
        query = query.where(NetworkVersionRow.id == version_id)
    else:
        assert at is not None, "give version_id or at"
        query = query.where(NetworkVersionRow.effective_from_utc <= at).order_by(
            col(NetworkVersionRow.effective_from_utc).desc()
        )
    return session.exec(query.limit(1)).first()


def node_sets_from(session: Session, at: datetime) -> list[tuple[datetime, frozenset[str]]]:
    """The nodes (root included) of the version in force at ``at`` and of every later version.

    Returns
    -------
    list of (effective_from_utc, node ids)
        In time order; empty when no network version is in force at ``at`` or after.
    """
    current = session.exec(
        select(NetworkVersionRow.id)
        .where(NetworkVersionRow.effective_from_utc <= at)
        .order_by(col(NetworkVersionRow.effective_from_utc).desc())
    ).first()
    later = select(NetworkVersionRow).where(NetworkVersionRow.effective_from_utc > at)
    if current is not None:
        later = select(NetworkVersionRow).where(
            (NetworkVersionRow.effective_from_utc > at) | (NetworkVersionRow.id == current)
        )
    versions = session.exec(later.order_by(col(NetworkVersionRow.effective_from_utc))).all()
    node_sets = []
    for version in versions:
        nodes = session.exec(
            select(NetworkNodeRow.node_id).where(NetworkNodeRow.version_id == version.id)
        ).all()
        node_sets.append((version.effective_from_utc, frozenset([version.root, *nodes])))
    return node_sets


def _keeps_households_nodes(session: Session, network: Network) -> None:
    """Refuse a network that drops a node an active household is on, naming the households."""
    active = col(ParticipantRow.active).is_(True)
    on_nodes = session.exec(
        select(ParticipantRow.node_id).where(col(ParticipantRow.node_id).is_not(None), active).distinct()
    ).all()
    dropped = sorted(set(filter(None, on_nodes)) - set(network.node_ids))
    if not dropped:
        return
    named = []
    for node_id in dropped[:5]:
        homes = session.exec(
            select(ParticipantRow.id)
            .where(ParticipantRow.node_id == node_id, active)
            .order_by(col(ParticipantRow.id))
        ).all()
        more = f" and {len(homes) - 5} more" if len(homes) > 5 else ""
        named.append(f"{node_id} ({', '.join(homes[:5])}{more})")
    if len(dropped) > 5:
        named.append(f"and {len(dropped) - 5} more nodes")
    raise ConflictError(
        "nodes",
        f"drops {len(dropped)} node(s) that active households are on: {'; '.join(named)}; "
        "deactivate those households first",
    )


def network_version(session: Session, version_id: int) -> NetworkVersion:
    """A stored network version by id."""
    row = session.get(NetworkVersionRow, version_id)
    if row is None:
        raise NotFoundError("network_version_id", f"{version_id} is not a network version")
    nodes = session.exec(select(NetworkNodeRow).where(NetworkNodeRow.version_id == version_id)).all()
    tree = Network(
        root=row.root,
        nodes=tuple(
            Node(
                id=node.node_id,
                parent=node.parent_id,
                import_capacity_kwh=Decimal(node.import_capacity_wh) / WH_PER_KWH,
                export_capacity_kwh=Decimal(node.export_capacity_wh) / WH_PER_KWH,
                fee_p_per_kwh=node.fee_p_per_kwh,
            )
            for node in nodes
        ),
    )
    return NetworkVersion(version_id, row.effective_from_utc, tree)


def set_tariff(
    session: Session,
    *,
    import_p_per_kwh: Decimal,
    export_p_per_kwh: Decimal,
    effective_from_utc: datetime,
    now: datetime,
) -> TariffVersion:
    """Store the backstop tariff in force from ``effective_from_utc`` (after every cleared interval)."""
    _after_cleared_intervals(session, effective_from_utc, "effective_from_utc")
    try:
        tariff = Tariff(import_p_per_kwh, export_p_per_kwh)
    except ClearingInputError as error:
        raise MarketError(error.field, error.reason) from None
    if session.exec(select(TariffRow).where(TariffRow.effective_from_utc == effective_from_utc)).first():
        raise MarketError("effective_from_utc", f"a tariff already starts at {effective_from_utc}")
    row = TariffRow(
        effective_from_utc=effective_from_utc,
        import_p_per_kwh=tariff.import_p_per_kwh,
        export_p_per_kwh=tariff.export_p_per_kwh,
        created_at=now,
    )
    session.add(row)
    session.flush()
    assert row.id is not None
    return TariffVersion(row.id, effective_from_utc, tariff)


def tariff_in_force(session: Session, at: datetime) -> TariffVersion:
    """The tariff in force at ``at``."""
    row = session.exec(
        select(TariffRow)
        .where(TariffRow.effective_from_utc <= at)
        .order_by(col(TariffRow.effective_from_utc).desc())
    ).first()
    if row is None or row.id is None:
        raise NotFoundError("tariff", f"no tariff is in force at {at.isoformat()}")
    return TariffVersion(row.id, row.effective_from_utc, Tariff(row.import_p_per_kwh, row.export_p_per_kwh))


def tariff_version(session: Session, tariff_id: int) -> TariffVersion:
    row = session.get(TariffRow, tariff_id)
    if row is None:
        raise NotFoundError("tariff_id", f"{tariff_id} is not a tariff")
    return TariffVersion(
        tariff_id, row.effective_from_utc, Tariff(row.import_p_per_kwh, row.export_p_per_kwh)
    )


def _after_cleared_intervals(session: Session, moment: datetime, field: str) -> None:
    if moment.tzinfo is None:
        raise MarketError(field, "must carry a UTC offset")
    latest = session.exec(select(func.max(ClearingRunRow.interval_start_utc))).one()
    if latest is not None and moment <= latest:
        raise MarketError(
            field, f"{moment.isoformat()} is not after the last cleared interval ({latest.isoformat()})"
        )
