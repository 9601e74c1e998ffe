"""What routes share: the platform a request runs on, a database session, and who is asking.

Every request authenticates with ``Authorization: Bearer <token>``: no or a bad token is 401, a
household on an operator route 403. Routes take these as annotated parameters
(``session: SessionDep``), so no route imports the app.

May import :mod:`api.clock`, :mod:`api.problems`, :mod:`api.settings` and the market.
"""

from __future__ import annotations

import json
import math
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.engine import Engine
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from api.clock import Clock, SystemClock
from api.problems import ApiProblemError, FieldProblem
from api.settings import Settings
from market.access import authenticate, token_hash
from market.participants import HOUSEHOLD, OPERATOR, Participant

T = TypeVar("T")

#: How long a worker trusts a token it has checked. A token revoked, or a participant made
#: inactive, stops working at once on the worker that did it and within this on the others.
TOKEN_CACHE_SECONDS = 5.0
_TOKEN_CACHE_SIZE = 50_000
#: Most client addresses whose failed authentications are remembered at once.
_CLIENTS_TRACKED = 100_000


@dataclass
class FailedAuthentications:
    """Failed authentications per client address, in a sliding window.

    Past ``limit`` failures within ``window_s`` seconds a client is refused (429) until its oldest
    failure leaves the window. Kept in memory by each worker, so with N workers a client has at
    most N times the limit; enough to make guessing a 256-bit token pointless and a flood cheap.
    """

    limit: int = 20
    window_s: float = 60.0
    _failures: dict[str, deque[float]] = field(default_factory=dict)

    def retry_after_s(self, client: str, now: float) -> float | None:
        """Seconds until ``client`` may try again, or None when it may now."""
        failures = self._failures.get(client)
        if failures is None:
            return None
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        if not failures:
            del self._failures[client]
            return None
        return failures[0] + self.window_s - now if len(failures) >= self.limit else None

    def record(self, client: str, now: float) -> None:
        """Count one failed authentication by ``client``."""
        if client not in self._failures and len(self._failures) >= _CLIENTS_TRACKED:
            self._failures.clear()  # a flood from many addresses: forget rather than grow
        self._failures.setdefault(client, deque()).append(now)


@dataclass
class Platform:
    """What the app runs on. ``jobs`` start with the app and stop with it (the scheduler)."""

    engine: Engine
    settings: Settings
    clock: Clock = field(default_factory=SystemClock)
    jobs: list = field(default_factory=list)  # objects with start() and shutdown()
    #: How long this worker trusts a token it has checked (0: ask the database every time).
    token_cache_seconds: float = TOKEN_CACHE_SECONDS
    #: token hash -> (the participant, when to check again: time.monotonic())
    tokens: dict[str, tuple[Participant, float]] = field(default_factory=dict)
    failed_authentications: FailedAuthentications = field(default_factory=FailedAuthentications)


async def get_platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


def get_session(platform: Annotated[Platform, Depends(get_platform)]) -> Iterator[Session]:
    """A session for reads; writes use their own transaction."""
    with Session(platform.engine, expire_on_commit=False) as session:
        yield session


async def read_in_thread(platform: Platform, read: Callable[[Session], T]) -> T:
    """``read(session)`` in the threadpool, with a session of its own: a read route's database
    work in one hop off the event loop.

    A plain ``def`` route with :data:`SessionDep` makes four (the session opened, the route, its
    answer checked against the response model, the session closed: FastAPI runs each of a sync
    route's parts in the threadpool); an ``async def`` route that hands its work here makes one.
    """

    def run() -> T:
        with Session(platform.engine, expire_on_commit=False) as session:
            return read(session)

    return await run_in_threadpool(run)


async def in_thread(work: Callable[[], T]) -> T:
    """``work()`` in the threadpool: a write route's transaction in one hop (see
    :func:`read_in_thread`)."""
    return await run_in_threadpool(work)


#: Declares the bearer token in the OpenAPI document (each operation's ``security``, the Authorize
#: button in /docs); the header is read and checked below.
bearer_token = HTTPBearer(
    auto_error=False, description="A participant's token: `Authorization: Bearer <token>`."
)


async def current_participant(
    request: Request,
    platform: Annotated[Platform, Depends(get_platform)],
    declared: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_token)],
) -> Participant:
    """The participant whose token the request carries; 401 without a live one.

    A worker remembers a token it has checked for ``platform.token_cache_seconds`` (only hashes
    are kept); the database is asked, off the event loop, when it has not or that has passed.
    """
    client = request.client.host if request.client else ""
    now = time.monotonic()
    wait_s = platform.failed_authentications.retry_after_s(client, now)
    if wait_s is not None:
        raise ApiProblemError(
            429,
            f"too many failed authentications from this client; try again in {math.ceil(wait_s)} s",
            headers={"Retry-After": str(math.ceil(wait_s))},
        )
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise ApiProblemError(401, "authentication required: send 'Authorization: Bearer <token>'")
    key = token_hash(secret.strip())
    known = platform.tokens.get(key)
    if known is not None and known[1] > now:
        participant = known[0]
    else:
        found = await run_in_threadpool(_authenticate, platform.engine, secret.strip())
        if found is None:
            platform.tokens.pop(key, None)
            platform.failed_authentications.record(client, now)
            raise ApiProblemError(401, "the token is unknown, revoked, or its participant is inactive")
        if len(platform.tokens) >= _TOKEN_CACHE_SIZE:
            platform.tokens.clear()
        platform.tokens[key] = (found, now + platform.token_cache_seconds)
        participant = found
    request.state.participant_id = participant.id
    request.state.participant_kind = participant.kind
    return participant


def _authenticate(engine: Engine, secret: str) -> Participant | None:
    with Session(engine) as session:
        return authenticate(session, secret)


async def household(participant: Annotated[Participant, Depends(current_participant)]) -> Participant:
    if participant.kind != HOUSEHOLD:
        raise ApiProblemError(403, "this is a household's route")
    return participant


async def operator(participant: Annotated[Participant, Depends(current_participant)]) -> Participant:
    if participant.kind != OPERATOR:
        raise ApiProblemError(403, "this route is for the energy company")
    return participant


PlatformDep = Annotated[Platform, Depends(get_platform)]
SessionDep = Annotated[Session, Depends(get_session)]
ParticipantDep = Annotated[Participant, Depends(current_participant)]
HouseholdDep = Annotated[Participant, Depends(household)]
OperatorDep = Annotated[Participant, Depends(operator)]


#: Bodies the form parser reads (the web app's forms), left to it.
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
#: NUL in a JSON string, as JSON writes it (a raw NUL byte is not JSON at all).
_JSON_NUL = b"\\u0000"


async def refuse_nul_characters(request: Request) -> None:
    """Refuse a NUL character anywhere in the path, the query or a JSON body's strings (422).

    No field of the platform may hold one, and PostgreSQL cannot store one in text: refused here,
    every route answers the same on every database, instead of a 404 on SQLite and a database
    error on PostgreSQL. The body is only parsed again when it holds an escaped NUL at all.
    """
    problems = [
        FieldProblem(field=name, reason="must not contain a NUL character")
        for name, value in (*request.path_params.items(), *request.query_params.multi_items())
        if isinstance(value, str) and "\x00" in value
    ]
    # A form's body is read by the form parser (the web app's pages check their own fields).
    form = request.headers.get("content-type", "").startswith(_FORM_TYPES)
    if not problems and request.method in ("POST", "PUT", "PATCH") and not form:
        body = await request.body()
        if _JSON_NUL in body:
            try:
                document = json.loads(body)
            except ValueError:
                document = None  # not JSON: the route's own validation answers
            problems = [
                FieldProblem(field=where or "body", reason="must not contain a NUL character")
                for where in _nul_fields(document, "")
            ]
    if problems:
        detail = "; ".join(f"{problem.field}: {problem.reason}" for problem in problems)
        raise ApiProblemError(422, detail, errors=problems)


def _nul_fields(value: object, where: str) -> list[str]:
    """The paths (``orders[0].note``) of the strings in a JSON value that hold a NUL."""
    if isinstance(value, str):
        return [where] if "\x00" in value else []
    if isinstance(value, dict):
        found = [f"{where}.{key}".lstrip(".") for key in value if isinstance(key, str) and "\x00" in key]
        for key, item in value.items():
            found += _nul_fields(item, f"{where}.{key}".lstrip("."))
        return found
    if isinstance(value, list):
        return [path for index, item in enumerate(value) for path in _nul_fields(item, f"{where}[{index}]")]
    return []
