"""The public price feed, without a token: a node's local prices for households' own tools.

``GET /open/v1/prices`` gives each period's cleared price at a node with the tariffs, as JSON or
CSV; ``GET /open/v1/prices/evcc`` gives evcc's custom tariff forecast (a JSON array of
``{"start", "end", "value"}``, £/kWh), the rate a household there buys or sells at.

Both are served from a cache each worker keeps, keyed by the request's normalised parameters
(:class:`FeedCache`). A worker asks the database at most every ``open_feed_check_seconds``
whether a clearing run, a tariff or a network version has been stored
(:func:`market.open_prices.feed_generation`, one small query) and drops its cache when one has:
a hit costs no database work beyond that, and its body is bytes serialised once. Every answer has
a strong ``ETag`` (from the body; ``If-None-Match`` answers 304) and ``Cache-Control: public,
max-age`` up to the next gate closure whose clearing could change it.

May import :mod:`api.deps`, :mod:`api.problems`, :mod:`api.schemas` and the market.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from api.deps import PlatformDep
from api.problems import PROBLEM_RESPONSES
from api.schemas import _DATE, _TIME, NO_NUL, DecimalText
from api.settings import Settings
from market.errors import MarketError
from market.intervals import SettlementPeriod, period_at, periods_of_day
from market.open_prices import (
    check_node,
    evcc_slots,
    feed_generation,
    periods_requested,
    pounds_per_kwh,
    published_prices,
)

log = logging.getLogger("smartbrum.open_prices")
router = APIRouter(responses={404: PROBLEM_RESPONSES[404], 422: PROBLEM_RESPONSES[422]}, tags=["open data"])

#: The longest ``max-age`` the feed is given: a re-clear (rare, an operator's) may change a period
#: already cleared, and a client should see it within minutes.
MAX_AGE_S = 300
#: ``max-age`` while a gate has closed and its clearing run has not been stored yet (it is due).
DUE_MAX_AGE_S = 5
#: A period whose gate closed longer ago than this and that is still not cleared is taken as
#: never to clear (no network then, a gap before the platform started): it does not shorten max-age.
CLEARING_DUE_WITHIN = timedelta(hours=1)
#: Most answers a worker keeps; past it, the cache starts again (a scan of odd ranges cannot grow it).
CACHE_ENTRIES = 2048
FEED_PATH = "/open/v1/prices"
PRICES_PATH = FEED_PATH
#: A date, or a date and time with its UTC offset (ISO 8601), as ``from`` and ``to`` take them.
_MOMENT = rf"^{_DATE}(T{_TIME})?$"
CSV_COLUMNS = (
    "node",
    "settlement_date",
    "settlement_period",
    "start",
    "end",
    "cleared",
    "price_p_per_kwh",
    "import_p_per_kwh",
    "export_p_per_kwh",
)


class OpenPricePeriodPublic(BaseModel):
    """One settlement period at the node (p/kWh, before fees and VAT)."""

    settlement_date: date
    settlement_period: int
    start: str = Field(
        description="UTC, ISO 8601 (`2026-12-06T12:00:00Z`)", examples=["2026-12-06T12:00:00Z"]
    )
    end: str = Field(description="UTC, ISO 8601; the next period's start")
    cleared: bool = Field(description="The interval has been cleared (its current clearing run)")
    price_p_per_kwh: DecimalText | None = Field(
        description="The node's cleared price; null until the period is cleared (never estimated)"
    )
    import_p_per_kwh: DecimalText | None = Field(description="The backstop's import tariff in force")
    export_p_per_kwh: DecimalText | None = Field(description="The backstop's export tariff in force")


class OpenPricesPublic(BaseModel):
    """A node's prices, period by period."""

    node: str
    unit: Literal["p/kWh"] = "p/kWh"
    periods: list[OpenPricePeriodPublic]


class EvccRatePublic(BaseModel):
    """One slot of evcc's custom tariff forecast."""

    start: str = Field(description="UTC, `YYYY-MM-DDTHH:MM:SSZ`")
    end: str = Field(description="UTC, `YYYY-MM-DDTHH:MM:SSZ`")
    value: float = Field(description="£/kWh, rounded half to even to £0.000001")


@dataclass(frozen=True)
class CachedFeed:
    """An answer as sent: its bytes, and what its freshness depends on."""

    generation: tuple[int, ...]
    body: bytes
    media_type: str
    etag: str
    #: The gate closure of each period in it still to be cleared (its clearing changes the answer).
    gates: tuple[datetime, ...]
    #: When the answer's window moves on (a period or a day ends), if it does.
    rolls_at: datetime | None


@dataclass
class FeedCache:
    """One worker's cache of the feed's answers, good while the market's generation stands.

    ``entries`` holds the answers by their normalised parameters; ``requests`` maps a request as
    it arrived (path, query string, whether it accepts CSV) to its answer's key, until the moment
    its window moves on, so that :class:`FeedCacheHits` can answer a repeated request before
    routing, validation and dependencies run.
    """

    check_seconds: float
    generation: tuple[int, ...] | None = None
    checked_at: float = -math.inf
    entries: dict[tuple[Any, ...], CachedFeed] = field(default_factory=dict)
    #: (path, query string, accepts CSV) -> (the answer's key, valid until, the matched route)
    requests: dict[tuple[str, bytes, bool], tuple[tuple[Any, ...], datetime | None, Any]] = field(
        default_factory=dict
    )

    async def refresh(self, engine: Engine) -> None:
        """Ask the database for the generation if ``check_seconds`` have passed; on a change,
        drop every answer built before it."""
        now = time.monotonic()
        if now - self.checked_at < self.check_seconds:
            return
        self.checked_at = now  # before the await: concurrent requests do not all ask at once
        try:
            generation = await run_in_threadpool(_generation, engine)
        except DBAPIError:
            # The database is away: what this worker has is still the last word it had; a miss
            # fails on its own, as any route would.
            log.warning("open price feed: could not check for new clearing runs", exc_info=True)
            return
        if generation != self.generation:
            self.generation = generation
            self.entries = {
                key: entry for key, entry in self.entries.items() if entry.generation == generation
            }

    def get(self, key: tuple[Any, ...]) -> CachedFeed | None:
        entry = self.entries.get(key)
        return entry if entry is not None and entry.generation == self.generation else None

    def put(self, key: tuple[Any, ...], entry: CachedFeed) -> None:
        if len(self.entries) >= CACHE_ENTRIES:
            self.entries = {}
        self.entries[key] = entry

    def remember(self, request: Request, key: tuple[Any, ...], until: datetime | None) -> None:
        """Note that ``request``, as it arrived, is answered by ``key`` until ``until``."""
        if len(self.requests) >= CACHE_ENTRIES:
            self.requests = {}
        self.requests[_raw_key(request.scope)] = (key, until, request.scope.get("route"))

    def hit(self, scope: Any, now: datetime) -> tuple[CachedFeed, Any] | None:
        """The answer to a request seen before, and its route; None if it must be worked out."""
        known = self.requests.get(_raw_key(scope))
        if known is None:
            return None
        key, until, route = known
        if until is not None and now >= until:
            return None
        entry = self.get(key)
        return None if entry is None else (entry, route)


def _raw_key(scope: Any) -> tuple[str, bytes, bool]:
    accept = next((value for name, value in scope["headers"] if name == b"accept"), b"")
    return scope["path"], scope["query_string"], b"text/csv" in accept


class FeedCacheHits:
    """Answers a request for the feed that this worker has answered before, from its cache, before
    FastAPI routes and validates it (a plain ASGI middleware, inside the security headers and the
    metrics, which it labels with the route). Anything else, and a miss, goes on to the routes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or not scope["path"].startswith(FEED_PATH):
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        cache: FeedCache | None = getattr(state, "open_price_feed", None)
        if cache is None:
            await self.app(scope, receive, send)
            return
        platform = state.platform
        await cache.refresh(platform.engine)
        now = platform.clock.now()
        found = cache.hit(scope, now)
        if found is None:
            await self.app(scope, receive, send)
            return
        entry, route = found
        scope["route"] = route  # for the metrics' route label
        if_none_match = next((v for n, v in scope["headers"] if n == b"if-none-match"), b"").decode("latin-1")
        status, headers, body = answer_parts(entry, now, if_none_match, vary=scope["path"] == PRICES_PATH)
        raw = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})


def _generation(engine: Engine) -> tuple[int, ...]:
    with Session(engine) as session:
        return feed_generation(session)


def feed_cache(request: Request, settings: Settings) -> FeedCache:
    """This app's cache (one per worker process), made on first use."""
    state = request.app.state
    cache: FeedCache | None = getattr(state, "open_price_feed", None)
    if cache is None:
        cache = FeedCache(check_seconds=settings.open_feed_check_seconds)
        state.open_price_feed = cache
    return cache


@router.get(
    "/prices",
    response_model=OpenPricesPublic,
    responses={
        200: {"content": {"text/csv": {"schema": {"type": "string"}}}},
        304: {"description": "Not modified: the answer still has the ETag sent in If-None-Match"},
    },
)
async def prices(
    request: Request,
    platform: PlatformDep,
    node: Annotated[str, Query(min_length=1, max_length=64, pattern=NO_NUL, description="A network node")],
    start: Annotated[
        str | None,
        Query(
            alias="from",
            pattern=_MOMENT,
            description="A settlement date (from its start) or an instant with its offset; "
            "default the start of today (Europe/London)",
        ),
    ] = None,
    end: Annotated[
        str | None,
        Query(
            alias="to",
            pattern=_MOMENT,
            description="A settlement date (to its end) or an instant (exclusive); default the end of "
            "the day after from's; at most 7 days after from",
        ),
    ] = None,
    format: Annotated[  # the query parameter's published name
        Literal["json", "csv"] | None,
        Query(description="json (the default) or csv; `Accept: text/csv` also asks for CSV"),
    ] = None,
) -> Response:
    """A node's price in each settlement period, with the tariffs, without a token.

    Each period's price in its current clearing run (p/kWh, decimal strings, before fees and VAT),
    the backstop's import and export tariffs in force, its settlement date and period and its
    UTC start and end. A period not yet cleared says so (`cleared: false`) and has no price. JSON,
    or CSV with `format=csv` or `Accept: text/csv`.
    """
    settings = platform.settings
    as_csv = format == "csv" or (format is None and "text/csv" in request.headers.get("accept", ""))
    starts = _moment(start, "from")
    ends = _moment(end, "to")
    now = platform.clock.now()
    today = period_at(now, length_minutes=settings.interval_minutes).settlement_date
    key = ("prices", node, starts, ends, as_csv, today if start is None else None)
    cache = feed_cache(request, settings)
    await cache.refresh(platform.engine)
    entry = cache.get(key)
    if entry is None:
        entry = await run_in_threadpool(
            _build_prices, platform.engine, settings, node, starts, ends, today, as_csv, start is None
        )
        cache.put(key, entry)
    until = (
        periods_of_day(today, length_minutes=settings.interval_minutes)[-1].end_utc if start is None else None
    )
    cache.remember(request, key, until)
    return _answer(request, entry, now, vary=True)


@router.get(
    "/prices/evcc",
    response_model=list[EvccRatePublic],
    responses={304: {"description": "Not modified: the answer still has the ETag sent in If-None-Match"}},
)
async def evcc(
    request: Request,
    platform: PlatformDep,
    node: Annotated[str, Query(min_length=1, max_length=64, pattern=NO_NUL, description="A network node")],
    kind: Annotated[
        Literal["grid", "feedin"],
        Query(description="grid: what a household pays to buy a kWh; feedin: what it is paid to sell one"),
    ] = "grid",
) -> Response:
    """evcc's custom tariff forecast for a node, without a token (`tariffs: grid: type: custom`).

    From the current settlement period to the end of tomorrow (Europe/London), a JSON array of
    `{"start", "end", "value"}`: UTC times, the value in £/kWh, what a household at the node pays
    per kWh it buys (`kind=grid`: the cleared price plus the platform fee, with VAT as settlement
    charges it) or is paid per kWh it sells (`kind=feedin`: the price less the fee and its VAT).
    A period not yet cleared is given the platform's own price outlook, the one automatic trading
    plans with, so that evcc can plan ahead.
    """
    settings = platform.settings
    now = platform.clock.now()
    current = period_at(now, length_minutes=settings.interval_minutes)
    key = ("evcc", node, kind, current.start_utc)
    cache = feed_cache(request, settings)
    await cache.refresh(platform.engine)
    entry = cache.get(key)
    if entry is None:
        entry = await run_in_threadpool(_build_evcc, platform.engine, settings, node, kind, current)
        cache.put(key, entry)
    cache.remember(request, key, current.end_utc)
    return _answer(request, entry, now, vary=False)


def _moment(text: str | None, name: str) -> date | datetime | None:
    """A ``from`` or ``to`` as the pattern allows it: a date, or an instant in UTC."""
    if text is None:
        return None
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
        return datetime.fromisoformat(text).astimezone(UTC)
    except ValueError as error:
        raise MarketError(name, str(error)) from None


def _build_prices(
    engine: Engine,
    settings: Settings,
    node: str,
    start: date | datetime | None,
    end: date | datetime | None,
    today: date,
    as_csv: bool,
    from_today: bool,
) -> CachedFeed:
    length = settings.interval_minutes
    rules = settings.market_rules()
    with Session(engine) as session:
        generation = feed_generation(session)  # before the data: an answer is never older than it
        periods = periods_requested(start, end, today=today, length_minutes=length)
        check_node(session, node, periods)
        published = published_prices(session, node_id=node, periods=periods)
    rows = [
        {
            "settlement_date": p.period.settlement_date.isoformat(),
            "settlement_period": p.period.period,
            "start": _utc_text(p.period.start_utc),
            "end": _utc_text(p.period.end_utc),
            "cleared": p.cleared,
            "price_p_per_kwh": _decimal_text(p.price_p_per_kwh),
            "import_p_per_kwh": _decimal_text(p.import_p_per_kwh),
            "export_p_per_kwh": _decimal_text(p.export_p_per_kwh),
        }
        for p in published
    ]
    if as_csv:
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\r\n")
        writer.writerow(CSV_COLUMNS)
        for row in rows:
            cleared = "true" if row["cleared"] else "false"
            writer.writerow([node, *(cleared if c == "cleared" else row[c] or "" for c in CSV_COLUMNS[1:])])
        body, media_type = text.getvalue().encode(), "text/csv; charset=utf-8"
    else:
        body = _json_bytes({"node": node, "unit": "p/kWh", "periods": rows})
        media_type = "application/json"
    gates = tuple(rules.gate_closure_utc(p.period) for p in published if not p.cleared)
    # With from defaulted, the window is today's: it moves on when today ends.
    rolls_at = periods_of_day(today, length_minutes=length)[-1].end_utc if from_today else None
    return _cached(generation, body, media_type, gates, rolls_at)


def _build_evcc(
    engine: Engine, settings: Settings, node: str, kind: str, current: SettlementPeriod
) -> CachedFeed:
    rules = settings.market_rules()
    with Session(engine) as session:
        generation = feed_generation(session)
        periods = periods_requested(
            current.start_utc,
            current.settlement_date + timedelta(days=1),
            today=current.settlement_date,
            length_minutes=settings.interval_minutes,
        )
        check_node(session, node, periods)
        slots = evcc_slots(
            session,
            node_id=node,
            periods=periods,
            kind=kind,
            vat_rate=settings.vat_rate,
            platform_fee_p_per_kwh=settings.platform_fee_p_per_kwh,
        )
    body = _json_bytes(
        [
            {
                "start": _utc_text(slot.period.start_utc),
                "end": _utc_text(slot.period.end_utc),
                "value": float(pounds_per_kwh(slot.rate_p_per_kwh)),  # at most 6 places: exact as text
            }
            for slot in slots
        ]
    )
    gates = tuple(rules.gate_closure_utc(slot.period) for slot in slots if not slot.cleared)
    return _cached(generation, body, "application/json", gates, current.end_utc)


def _cached(
    generation: tuple[int, ...],
    body: bytes,
    media_type: str,
    gates: tuple[datetime, ...],
    rolls_at: datetime | None,
) -> CachedFeed:
    etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
    return CachedFeed(generation, body, media_type, etag, gates, rolls_at)


def _answer(request: Request, entry: CachedFeed, now: datetime, *, vary: bool) -> Response:
    status, headers, body = answer_parts(entry, now, request.headers.get("if-none-match"), vary=vary)
    media_type = headers.pop("Content-Type", None)
    headers.pop("Content-Length", None)
    return Response(body, status_code=status, media_type=media_type, headers=headers)


def answer_parts(
    entry: CachedFeed, now: datetime, if_none_match: str | None, *, vary: bool
) -> tuple[int, dict[str, str], bytes]:
    """The status, headers and body that answer with ``entry`` at ``now``: 304 without a body when
    ``If-None-Match`` names its ETag."""
    headers = {
        "ETag": entry.etag,
        "Cache-Control": f"public, max-age={max_age_s(entry, now)}",
        "Access-Control-Allow-Origin": "*",
    }
    if vary:
        headers["Vary"] = "Accept"
    if _matches(if_none_match, entry.etag):
        return 304, headers, b""
    headers["Content-Type"] = entry.media_type
    headers["Content-Length"] = str(len(entry.body))
    return 200, headers, entry.body


def max_age_s(entry: CachedFeed, now: datetime) -> int:
    """How long a client may keep ``entry``: until the next gate closure whose clearing changes it,
    the end of its window, and :data:`MAX_AGE_S` at most; :data:`DUE_MAX_AGE_S` while a clearing
    it waits for is due (its gate has closed, the run is not stored yet)."""
    recent = now - CLEARING_DUE_WITHIN
    if any(recent < gate <= now for gate in entry.gates):
        return DUE_MAX_AGE_S
    limit = now + timedelta(seconds=MAX_AGE_S)
    upcoming = [gate for gate in entry.gates if gate > now]
    if upcoming:
        limit = min(limit, min(upcoming))
    if entry.rolls_at is not None:
        limit = min(limit, entry.rolls_at)
    return max(0, int((limit - now).total_seconds()))


def _matches(if_none_match: str | None, etag: str) -> bool:
    """``If-None-Match`` names ``etag`` (weak comparison, RFC 9110 13.1.2) or is ``*``."""
    if not if_none_match:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or etag in tags


def _utc_text(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _decimal_text(value: Any) -> str | None:
    return None if value is None else format(value, "f")


def _json_bytes(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
