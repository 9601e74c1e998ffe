"""The forecast's inputs from the database: every household's recent interval energy, read at once.

The planner forecasts every household for the same coming periods (:mod:`planning.forecast`),
so the history is read for all of them in one query, never one query per household: the
current revision of each meter's interval energy, joined to its meter's household, within the
spans the forecast looks at (:func:`forecast_windows`) rather than the whole month it reaches
back over. The rows come back as plain tuples with the start as epoch seconds (no datetime
object per row) and are turned into NumPy columns; a household's meters (an old one replaced, a
second supply) are summed per period, an estimate in any of them making the sum an estimate.

Every meter a household ever had counts, active or not: a replaced meter's history is still the
household's consumption.

May import SQLModel/SQLAlchemy, :mod:`market` and :mod:`planning`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlmodel import Session

from market.database import chunks
from market.participants import HOUSEHOLD
from market.tables import IntervalEnergyRow, MeterRow, ParticipantRow
from planning.forecast import (
    DEFAULT_SETTINGS,
    PERIOD_MINUTES,
    ForecastSettings,
    HouseholdHistory,
    MeterHistory,
)
from planning.strategy import PvArray

__all__ = ["WINDOW_MARGIN", "forecast_windows", "read_forecast_histories"]

#: How far each lag window reaches beyond the targets' span shifted back: the hour a clock change
#: moves wall-clock times by, plus the neighbouring half-hour the profile smooths over.
WINDOW_MARGIN = timedelta(minutes=90)
#: The continuous history read before the first target: a whole day always holds dark periods
#: (the household's base demand) and daylight ones (its latest clear-sky index).
LAST_DAY = timedelta(days=1)


def forecast_windows(
    period_starts_utc: Sequence[datetime], *, settings: ForecastSettings = DEFAULT_SETTINGS
) -> list[tuple[datetime, datetime]]:
    """The spans ``[start, end)`` of history the forecast of ``period_starts_utc`` uses, merged.

    For each lag day of the demand profile (:attr:`ForecastSettings.lag_days`), the targets'
    span that many days earlier, widened by :data:`WINDOW_MARGIN`; and the whole last day before
    the first target. Nothing at or after the first target (it is not known yet).

    Parameters
    ----------
    period_starts_utc : sequence of datetime
        The periods to forecast, aware.
    settings : ForecastSettings
        The forecast's windows.
    """
    if not period_starts_utc:
        return []
    first = min(period_starts_utc).astimezone(UTC)
    end = max(period_starts_utc).astimezone(UTC) + timedelta(minutes=PERIOD_MINUTES)
    spans = [(first - LAST_DAY, first)]
    for lag in settings.lag_days:
        back = timedelta(days=lag)
        spans.append((first - back - WINDOW_MARGIN, min(end - back + WINDOW_MARGIN, first)))
    spans.sort()
    merged: list[tuple[datetime, datetime]] = []
    for start, stop in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], stop))
        else:
            merged.append((start, stop))
    return merged


def _epoch_seconds(column: Any, dialect: str) -> Any:
    """The column's instant as whole seconds since the epoch, computed by the database."""
    if dialect == "postgresql":
        return sa.cast(sa.func.extract("epoch", column), sa.BigInteger)
    return sa.cast(sa.func.strftime("%s", column), sa.BigInteger)


def read_forecast_histories(
    session: Session,
    *,
    period_starts_utc: Sequence[datetime],
    pv_by_household: Mapping[str, PvArray | None] | None = None,
    household_ids: Sequence[str] | None = None,
    settings: ForecastSettings = DEFAULT_SETTINGS,
) -> list[HouseholdHistory]:
    """Each household's history for forecasting ``period_starts_utc``, in one query.

    Parameters
    ----------
    session : Session
        Read only.
    period_starts_utc : sequence of datetime
        The periods the forecast is for (aware); the history read is :func:`forecast_windows`.
    pv_by_household : mapping of household id to PvArray, optional
        Each household's declared array, from its strategy (None or absent: no PV).
    household_ids : sequence of str, optional
        These households (a list of ids, in IN lists of at most
        :data:`~market.database.IN_LIST_SIZE`); by default every active household.
    settings : ForecastSettings
        The forecast's windows.

    Returns
    -------
    list of HouseholdHistory
        One per household, by id (those without data with an empty history).
    """
    pv_by_household = pv_by_household or {}
    if household_ids is None:
        participants = ParticipantRow.__table__  # type: ignore[attr-defined]
        ids = list(
            session.execute(
                sa.select(participants.c.id)
                .where(participants.c.kind == HOUSEHOLD, participants.c.active)
                .order_by(participants.c.id)
            ).scalars()
        )
    else:
        ids = sorted(set(household_ids))
    windows = forecast_windows(period_starts_utc, settings=settings)
    code_of = {household_id: code for code, household_id in enumerate(ids)}
    rows: list[Any] = []
    if windows and ids:
        energy = IntervalEnergyRow.__table__  # type: ignore[attr-defined]
        meters = MeterRow.__table__  # type: ignore[attr-defined]
        start = _epoch_seconds(energy.c.interval_start_utc, session.get_bind().dialect.name)
        query = (
            sa.select(
                meters.c.participant_id, start, energy.c.import_wh, energy.c.export_wh, energy.c.estimated
            )
            .select_from(energy.join(meters, meters.c.id == energy.c.meter_id))
            .where(
                energy.c.is_current,
                energy.c.length_minutes == PERIOD_MINUTES,
                sa.or_(
                    *(
                        sa.and_(energy.c.interval_start_utc >= begin, energy.c.interval_start_utc < end)
                        for begin, end in windows
                    )
                ),
            )
        )
        if household_ids is None:
            rows = list(session.execute(query).all())
        else:
            for chunk in chunks(ids):
                rows += session.execute(query.where(meters.c.participant_id.in_(chunk))).all()
        rows = [row for row in rows if row[0] in code_of]  # an inactive household's meters
    return _histories(ids, rows, code_of, pv_by_household)


def _histories(
    ids: list[str],
    rows: list[Any],
    code_of: dict[str, int],
    pv_by_household: Mapping[str, PvArray | None],
) -> list[HouseholdHistory]:
    """Rows ``(household, start_s, import_wh, export_wh, estimated)`` to one history each."""
    if not rows:
        return [HouseholdHistory(i, MeterHistory.empty(), pv_by_household.get(i)) for i in ids]
    households, starts, imports, exports, estimates = zip(*rows)
    code = np.fromiter((code_of[h] for h in households), dtype=np.int64, count=len(rows))
    start_s = np.asarray(starts, dtype=np.int64)
    order = np.lexsort((start_s, code))
    code, start_s = code[order], start_s[order]
    import_wh = np.asarray(imports, dtype=np.int64)[order]
    export_wh = np.asarray(exports, dtype=np.int64)[order]
    estimated = np.asarray(estimates, dtype=np.bool_)[order]
    # One entry per household and period: several meters' rows are summed.
    new = np.ones(len(code), dtype=np.bool_)
    new[1:] = (code[1:] != code[:-1]) | (start_s[1:] != start_s[:-1])
    heads = np.flatnonzero(new)
    code, start_s = code[heads], start_s[heads]
    import_wh = np.add.reduceat(import_wh, heads)
    export_wh = np.add.reduceat(export_wh, heads)
    estimated = np.maximum.reduceat(estimated, heads)
    bounds = np.searchsorted(code, np.arange(len(ids) + 1))
    histories = []
    for index, household_id in enumerate(ids):
        a, b = int(bounds[index]), int(bounds[index + 1])
        histories.append(
            HouseholdHistory(
                household_id,
                MeterHistory(start_s[a:b], import_wh[a:b], export_wh[a:b], estimated[a:b]),
                pv_by_household.get(household_id),
            )
        )
    return histories
