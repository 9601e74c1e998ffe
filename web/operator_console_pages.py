"""The energy company's console: its home, the Overview (the clock, clearing and its lag, the job
leader, failing meters, settlement and its balance, open alerts), and Households (search, invite,
deactivate), Meters, Settlement runs and the Audit log, each paged with its filters kept in the
query string.

Each page calls the market functions the JSON API (or the command line) calls for the same thing:
:func:`market.households.deactivate_household` as ``smartbrum participant deactivate``,
:func:`market.access.list_audit` as ``GET /v1/audit``, and :mod:`market.monitoring`'s reads.
May import :mod:`api.deps`, :mod:`market` and :mod:`web`'s own modules.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response
from sqlalchemy.engine import Engine
from sqlmodel import Session

from api.deps import PlatformDep
from api.observability import readiness_problems
from market.access import list_audit
from market.accounts import household_counts, participants_with_accounts
from market.clearing import latest_cleared_period
from market.database import transaction
from market.errors import MarketError, NotFoundError
from market.households import deactivate_household
from market.intervals import period_at
from market.monitoring import (
    find_households,
    invited_participants,
    list_settlement_runs,
    meter_states,
    settlement_run_ids,
    settlement_run_lines,
    unbalanced_runs,
)
from market.participants import HOUSEHOLD, Participant, get_participant
from market.settlement import INITIAL, get_settlement_run, pool_balance_cp
from market.units import CP_PER_PENNY
from web.format import duration, local_datetime, period_label
from web.rendering import render
from web.sessions import OperatorPageDep, PageRefusedError, check_csrf, refuse_nul_in_forms

router = APIRouter(include_in_schema=False, dependencies=[Depends(refuse_nul_in_forms)])

#: Rows per page on every list of the console.
PAGE_SIZE = 50
_MAX_PAGE = 1_000_000
_MAX_QUERY = 64


@dataclass(frozen=True)
class Pager:
    """Where one page of a list sits: its number, whether there are others, and their links
    (which keep the list's filters)."""

    number: int
    total: int | None
    first_row: int
    last_row: int
    previous_href: str | None
    next_href: str | None


def page_number(text: str) -> int:
    """A ``page=`` value as a page number: 1 when it is missing or no number."""
    try:
        number = int(text)
    except ValueError:
        return 1
    return min(max(number, 1), _MAX_PAGE)


def pager(
    path: str, filters: dict[str, str], number: int, shown: int, total: int | None, *, more: bool = False
) -> Pager:
    """The pager of page ``number`` of a list at ``path`` filtered by ``filters`` (empty ones
    left out of the links), showing ``shown`` of ``total`` rows (None: not counted, and ``more``
    says whether a next page has any)."""
    kept = {key: value for key, value in filters.items() if value}

    def href(to: int) -> str:
        query = urlencode({**kept, "page": str(to)} if to > 1 else kept)
        return f"{path}?{query}" if query else path

    first = (number - 1) * PAGE_SIZE
    return Pager(
        number=number,
        total=total,
        first_row=first + 1 if shown else 0,
        last_row=first + shown,
        previous_href=href(number - 1) if number > 1 else None,
        next_href=href(number + 1) if (more if total is None else first + shown < total) else None,
    )


def when(moment: datetime, length_minutes: int = 30) -> str:
    """An instant in London time with its settlement period: ``Sun 6 Dec 2026, 09:12 (period 19)``."""
    return f"{local_datetime(moment)} (period {period_at(moment, length_minutes=length_minutes).period})"


def failing_cutoff(platform: PlatformDep) -> tuple[datetime, timedelta]:
    """A meter not read since this instant is failing: five polling cycles ago (at least five
    minutes), and that span."""
    span = max(timedelta(seconds=5 * platform.settings.poll_seconds), timedelta(minutes=5))
    return platform.clock.now() - span, span


# --- overview --------------------------------------------------------------------------------------

#: Clearing further behind the clock than this is an alert.
CLEARING_LAG_ALERT = timedelta(minutes=5)
#: How many failing meters the Overview names (the Meters page lists them all).
FAILING_NAMED = 10


class BalancedRuns:
    """The settlement runs seen to balance, per database, so that the Overview sums only the
    lines of runs it has not seen balance yet (a month's ledger is tens of millions of lines).

    Safe because a run's lines are posted with it, in its one transaction, and never change (a
    reconciliation posts lines of its own run): a run that balanced once always will. A run that
    does not balance is summed again each time, so it is never forgotten.
    """

    def __init__(self) -> None:
        self._seen: weakref.WeakKeyDictionary[Engine, set[int]] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def unbalanced(self, engine: Engine, session: Session) -> tuple[dict[int, int], int]:
        """The runs that do not balance (what each leaves in the pool, hundredths of a penny),
        and how many runs there are."""
        run_ids = settlement_run_ids(session)
        return self.unbalanced_of(engine, session, run_ids), len(run_ids)

    def unbalanced_of(self, engine: Engine, session: Session, run_ids: list[int]) -> dict[int, int]:
        """Those of ``run_ids`` that do not balance, with what each leaves in the pool."""
        with self._lock:
            seen = self._seen.setdefault(engine, set())
            unseen = [run_id for run_id in run_ids if run_id not in seen]
        found = unbalanced_runs(session, run_ids=unseen) if unseen else {}
        with self._lock:
            seen.update(run_id for run_id in unseen if run_id not in found)
        return found


BALANCED_RUNS = BalancedRuns()


@router.get("/operator")
def overview_page(request: Request, platform: PlatformDep, found: OperatorPageDep) -> Response:
    """The operator's home: the platform's clock, clearing and its lag, the job leader, meters
    failing, the last settlement run and whether every run balances, and the open alerts in plain
    words (none when all is well)."""
    now = platform.clock.now()
    rules = platform.settings.market_rules()
    cutoff, span = failing_cutoff(platform)
    with Session(platform.engine) as session:
        counts = household_counts(session)
        cleared = latest_cleared_period(session, length_minutes=rules.interval_minutes)
        failing, failing_count = meter_states(session, failing_before=cutoff, limit=FAILING_NAMED)
        last_runs, _ = list_settlement_runs(session, limit=1)
        last_run = last_runs[0] if last_runs else None
        last_balance = None if last_run is None else pool_balance_cp(session, run_id=last_run.id)
        unbalanced, run_count = BALANCED_RUNS.unbalanced(platform.engine, session)
    lag = None
    if cleared is not None:
        lag = max(timedelta(0), now - rules.gate_closure_utc(cleared.next()))
    health = readiness_problems(platform)
    alerts = [f"{problem.field.replace('_', ' ').capitalize()}: {problem.reason}." for problem in health]
    if lag is not None and lag > CLEARING_LAG_ALERT:
        alerts.append(
            f"Clearing is {duration(lag)} behind: the interval after {period_label(cleared)} "  # type: ignore[arg-type]
            "is past its gate and not cleared."
        )
    if unbalanced:
        runs = ", ".join(str(run_id) for run_id in sorted(unbalanced)[:FAILING_NAMED])
        alerts.append(
            f"{len(unbalanced)} settlement run{'s do' if len(unbalanced) > 1 else ' does'} not balance "
            f"(run {runs}{', ...' if len(unbalanced) > FAILING_NAMED else ''})."
        )
    if failing_count:
        alerts.append(
            f"{failing_count} meter{'s are' if failing_count > 1 else ' is'} failing "
            "(never read, not read recently, or an invalid reading)."
        )
    return render(
        request,
        "operator_overview.html",
        {
            "title": "Overview",
            "nav": "operator",
            "now": now,
            "when": when,
            "period": period_at(now, length_minutes=rules.interval_minutes),
            "households": counts.households,
            "active": counts.active,
            "joined": counts.joined,
            "cleared": cleared,
            "lag": lag,
            "health": health,
            "failing": failing,
            "failing_count": failing_count,
            "span": span,
            "last_run": last_run,
            "last_balance": last_balance,
            "money": exact_pounds,
            "run_count": run_count,
            "unbalanced": unbalanced,
            "alerts": alerts,
        },
    )


# --- households ------------------------------------------------------------------------------------


@router.get("/operator/households")
def households_page(
    request: Request, platform: PlatformDep, found: OperatorPageDep, q: str = "", page: str = "1"
) -> Response:
    """Households found by id, name, MPAN or node: active or not, with an account or invited."""
    query = q.strip()[:_MAX_QUERY]
    number = page_number(page)
    with Session(platform.engine) as session:
        households, total = find_households(
            session, query=query, limit=PAGE_SIZE, offset=(number - 1) * PAGE_SIZE
        )
        ids = [h.id for h in households]
        joined = participants_with_accounts(session)
        invited = invited_participants(session, participant_ids=ids, now=platform.clock.now())
    return render(
        request,
        "operator_households.html",
        {
            "title": "Households",
            "nav": "households",
            "q": query,
            "households": households,
            "joined": joined,
            "invited": invited,
            "pager": pager("/operator/households", {"q": query}, number, len(households), total),
        },
    )


def _household(platform: PlatformDep, participant_id: str) -> Participant:
    missing = PageRefusedError(404, f"There is no household {participant_id[:64]}.")
    if len(participant_id) > 64:
        raise missing
    with Session(platform.engine) as session:
        try:
            household = get_participant(session, participant_id)
        except NotFoundError:
            raise missing from None
    if household.kind != HOUSEHOLD:
        raise missing
    return household


@router.get("/operator/households/{participant_id}/deactivate")
def deactivate_page(
    request: Request,
    platform: PlatformDep,
    found: OperatorPageDep,
    participant_id: str,
) -> Response:
    """Ask before deactivating a household, with a reason."""
    household = _household(platform, participant_id)
    return render(
        request,
        "operator_deactivate.html",
        {"title": f"Deactivate {household.id}", "nav": "households", "household": household, "errors": {}},
    )


@router.post("/operator/households/{participant_id}/deactivate")
def deactivate_form(
    request: Request,
    platform: PlatformDep,
    found: OperatorPageDep,
    participant_id: str,
    csrf_token: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
) -> Response:
    """Deactivate a household (it can no longer sign in or trade; its sessions end at once) and
    show what was done."""
    check_csrf(found, csrf_token)
    household = _household(platform, participant_id)
    reason = reason.strip()
    context: dict[str, object] = {
        "title": f"Deactivate {household.id}",
        "nav": "households",
        "household": household,
        "reason": reason,
    }
    try:
        with transaction(platform.engine) as session:
            done = deactivate_household(
                session,
                participant_id=household.id,
                rules=platform.settings.market_rules(),
                now=platform.clock.now(),
                actor=found.participant.id,
                reason=reason,
                method=request.method,
                path=request.url.path,
                client=request.client.host if request.client else "",
            )
        request.state.audited = True  # the row above, with what was done: not the middleware's too
    except MarketError as error:
        if error.field == "reason":
            errors = {"reason": "The reason is too long: keep it to 300 characters."}
        elif "already inactive" in error.reason:
            errors = {"household": f"{household.id} is already inactive: nothing was done."}
        else:
            errors = {"household": f"{household.id} was not deactivated: {error.reason}."}
        return render(request, "operator_deactivate.html", {**context, "errors": errors}, status=422)
    return render(request, "operator_deactivate.html", {**context, "done": done, "errors": {}})


# --- audit log -------------------------------------------------------------------------------------


@router.get("/operator/audit")
def audit_page(
    request: Request, platform: PlatformDep, found: OperatorPageDep, actor: str = "", page: str = "1"
) -> Response:
    """Every state-changing request, newest first, as ``GET /v1/audit`` lists them."""
    who = actor.strip()[:_MAX_QUERY]
    number = page_number(page)
    with Session(platform.engine) as session:
        events = list_audit(session, actor=who or None, limit=PAGE_SIZE + 1, offset=(number - 1) * PAGE_SIZE)
    shown = events[:PAGE_SIZE]
    return render(
        request,
        "operator_audit.html",
        {
            "title": "Audit log",
            "nav": "audit",
            "actor": who,
            "events": shown,
            "when": when,
            "pager": pager(
                "/operator/audit", {"actor": who}, number, len(shown), None, more=len(events) > PAGE_SIZE
            ),
        },
    )


# --- settlement runs -------------------------------------------------------------------------------

#: Each ledger line's kind in plain words.
LINE_KINDS = {
    "trade_buy": "Local trade: bought",
    "trade_sell": "Local trade: sold",
    "backstop_import": "Backstop: bought from the supplier",
    "backstop_export": "Backstop: sold to the supplier",
    "imbalance_import": "Imbalance: used more than traded",
    "imbalance_export": "Imbalance: exported more than traded",
    "network_fee": "Network fee",
    "congestion_rent": "Congestion rent",
    "platform_fee": "Platform fee",
    "vat": "VAT",
    "rounding": "Rounding",
}
RUN_STATUSES = {
    "complete": "Complete",
    "partial": "Partial: some households wait for meter data",
    "pending": "Pending: the interval is not cleared yet",
}


def exact_pounds(amount_cp: int) -> str:
    """Hundredths of a penny as pounds, exactly: ``£0.40``, ``£0.4025``, ``−£1.00``."""
    pounds = Decimal(amount_cp) / (CP_PER_PENNY * 100)
    digits = max(2, -int(pounds.normalize().as_tuple().exponent))
    sign = "\u2212" if pounds < 0 else ""
    return f"{sign}£{abs(pounds):,.{digits}f}"


def _settlement_date(text: str) -> tuple[date | None, str | None]:
    """A ``date=`` filter: the date, or an error in plain words."""
    if not text:
        return None, None
    try:
        return date.fromisoformat(text), None
    except ValueError:
        return None, "Give the date as year-month-day, for example 2026-12-06."


@router.get("/operator/settlement")
def settlement_page(
    request: Request, platform: PlatformDep, found: OperatorPageDep, date: str = "", page: str = "1"
) -> Response:
    """Settlement runs newest first, of one settlement date or all: each with its interval, type,
    status, lines and whether its pool balances (the sum :func:`market.settlement.pool_balance_cp`
    makes, grouped by :func:`market.monitoring.unbalanced_runs`; runs seen to balance are not summed
    again)."""
    text = date.strip()[:32]
    on, error = _settlement_date(text)
    number = page_number(page)
    with Session(platform.engine) as session:
        runs, total = list_settlement_runs(
            session, settlement_date=on, limit=PAGE_SIZE, offset=(number - 1) * PAGE_SIZE
        )
        left = BALANCED_RUNS.unbalanced_of(platform.engine, session, [run.id for run in runs])
        balances = {run.id: left.get(run.id, 0) for run in runs}
    return render(
        request,
        "operator_settlement.html",
        {
            "title": "Settlement runs",
            "nav": "settlement",
            "date_text": text,
            "on": on,
            "error": error,
            "runs": runs,
            "balances": balances,
            "money": exact_pounds,
            "initial": INITIAL,
            "statuses": RUN_STATUSES,
            "pager": pager(
                "/operator/settlement",
                {"date": text if on else ""},
                number,
                len(runs),
                total,
            ),
        },
        status=422 if error else 200,
    )


@router.get("/operator/settlement/{run_id}")
def settlement_run_page(
    request: Request,
    platform: PlatformDep,
    found: OperatorPageDep,
    run_id: str,
    page: str = "1",
) -> Response:
    """One settlement run and its ledger lines, paged."""
    number = page_number(page)
    missing = PageRefusedError(404, f"There is no settlement run {run_id[:20]}.")
    if not run_id.isdigit() or len(run_id) > 18:
        raise missing
    with Session(platform.engine) as session:
        try:
            run = get_settlement_run(session, int(run_id))
        except NotFoundError:
            raise missing from None
        lines, total = settlement_run_lines(
            session, run_id=run.id, limit=PAGE_SIZE, offset=(number - 1) * PAGE_SIZE
        )
        balance = pool_balance_cp(session, run_id=run.id)
    return render(
        request,
        "operator_settlement_run.html",
        {
            "title": f"Settlement run {run.id}",
            "nav": "settlement",
            "run": run,
            "lines": lines,
            "balance": balance,
            "balance_text": exact_pounds(balance),
            "initial": INITIAL,
            "statuses": RUN_STATUSES,
            "kinds": LINE_KINDS,
            "money": exact_pounds,
            "when": when,
            "pager": pager(f"/operator/settlement/{run.id}", {}, number, len(lines), total),
        },
    )


# --- meters ----------------------------------------------------------------------------------------

#: The quality filter's choices: a reading's quality, never read, or failing.
METER_QUALITIES = {
    "good": "Good",
    "suspect": "Suspect: a value other than the counters was dropped",
    "invalid": "Invalid: an energy counter was unusable",
    "none": "Never read",
    "failing": "Failing: invalid, or not read recently",
}


@router.get("/operator/meters")
def meters_page(
    request: Request,
    platform: PlatformDep,
    found: OperatorPageDep,
    participant: str = "",
    quality: str = "",
    page: str = "1",
) -> Response:
    """Each meter's household, its latest reading's time and quality, and whether it is failing."""
    owner = participant.strip()[:_MAX_QUERY]
    chosen = quality if quality in METER_QUALITIES else ""
    number = page_number(page)
    cutoff, span = failing_cutoff(platform)
    with Session(platform.engine) as session:
        meters, total = meter_states(
            session,
            participant_id=owner or None,
            quality=chosen if chosen not in ("", "failing") else None,
            failing_before=cutoff if chosen == "failing" else None,
            limit=PAGE_SIZE,
            offset=(number - 1) * PAGE_SIZE,
        )
    return render(
        request,
        "operator_meters.html",
        {
            "title": "Meters",
            "nav": "meters",
            "participant": owner,
            "quality": chosen,
            "qualities": METER_QUALITIES,
            "meters": meters,
            "cutoff": cutoff,
            "span": span,
            "now": platform.clock.now(),
            "when": when,
            "pager": pager(
                "/operator/meters", {"participant": owner, "quality": chosen}, number, len(meters), total
            ),
        },
    )
