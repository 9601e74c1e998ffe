"""A household's order changes that reach a worker together, committed together.

Households' own tools send one change a request: an order placed, amended or cancelled. Each
request on its own pays a transaction's fixed costs: a threadpool hop, a session, ``BEGIN``,
``COMMIT`` and the database's flush of its log. :class:`GroupCommit` lets the changes that arrive
while one transaction is writing share the next one: a writer task per event loop takes what waits
(up to :data:`MAX_GROUP`), writes it in one transaction in the threadpool, answers each change,
and goes on while more wait. A change that finds no writer running starts one, so a quiet worker
adds no delay.

Nothing changes for a household: each change is made by the market's own function
(:func:`market.orders.place_order`, :func:`~market.orders.amend_order`,
:func:`~market.orders.cancel_order`) with its checks as before, in the same transaction as its
order event and its request's audit row, and is answered once that transaction has committed. A
refusal (a market rule, an order not open, an idempotency key used for something else) is raised
before the change writes anything, so it leaves the others in the transaction alone. Households
are locked in the order of their ids, as every many-household writer of the platform locks them;
one household's changes keep the order they arrived in. If the transaction fails before its
commit for any other reason (the database refusing a statement, a deadlock with another worker, a
lost connection), every change of it is tried again in a transaction of its own, so one bad
change never fails another. If the commit itself fails, whether the database kept the transaction
is unknown: nothing is tried again (that could place an order twice), and every request of the
group hears the error, as a lone request would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from fastapi import Request
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from api.audit import audit_entry
from api.deps import Platform
from market.access import record_audits
from market.database import transaction
from market.errors import MarketError
from market.orders import MarketOrder

#: At most this many changes share a transaction (the rest wait for the next).
MAX_GROUP = 64

T = TypeVar("T")
#: A placement's outcome: the order, and whether it was created now (not an idempotent replay).
Placed = tuple[MarketOrder, bool]


def _ok(_outcome: object) -> int:
    return 200


@dataclass
class OrderChange(Generic[T]):
    """One request's change to its household's orders, ready to write: ``write(session)`` makes
    it as the market's function does (raising its refusal before writing anything); ``request``
    is audited with ``status(outcome)`` (200 unless told otherwise: an amendment, a cancellation)."""

    participant_id: str
    write: Callable[[Session], T]
    request: Request
    status: Callable[[T], int] = _ok
    outcome: asyncio.Future[T] | None = None


def placement(
    participant_id: str, place: Callable[[Session], Placed], request: Request
) -> OrderChange[Placed]:
    """An order placed by ``place(session)`` (:func:`market.orders.place_order`): audited 201 when
    created now, 200 when its idempotency key had placed it already."""
    return OrderChange(participant_id, place, request, _placed_status)


def _placed_status(outcome: Placed) -> int:
    return 201 if outcome[1] else 200


class GroupCommit:
    """A worker's single order changes (``POST``, ``PATCH`` and ``DELETE`` of ``/v1/orders``),
    committed together when they arrive together (see the module's description).

    Each event loop has its own queue and writer task (a worker runs one loop; a test client may
    run one a request). The writer is a task of its own, not one of the requests, so a request
    whose client goes away takes nothing with it: its order is written, with its audit row, and
    answered to nobody, as a write already in the threadpool is.
    """

    def __init__(self, platform: Platform, *, max_group: int = MAX_GROUP) -> None:
        self.platform = platform
        self.max_group = max_group
        self._waiting: dict[asyncio.AbstractEventLoop, list[OrderChange[Any]]] = {}
        self._writers: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}
        #: The transactions this worker has committed and the changes in them.
        self.transactions = 0
        self.changes = 0

    async def write(self, order_change: OrderChange[T]) -> T:
        """Write ``order_change`` (with whatever waits beside it) and return its outcome; raises
        its refusal as the market's function would."""
        loop = asyncio.get_running_loop()
        outcome: asyncio.Future[T] = loop.create_future()
        order_change.outcome = outcome
        self._waiting.setdefault(loop, []).append(order_change)
        if loop not in self._writers:
            self._writers[loop] = loop.create_task(self._write_waiting(loop))
        try:
            return await asyncio.shield(outcome)
        except asyncio.CancelledError:
            # The client went away. Its change is written anyway; wait for that, as a write in
            # the threadpool would be waited for, so that its audit row is the transaction's and
            # the middleware does not write a second one.
            await asyncio.wait([outcome])
            if not outcome.cancelled():
                outcome.exception()  # retrieved: an error for a request nobody waits on is not news
            raise

    async def _write_waiting(self, loop: asyncio.AbstractEventLoop) -> None:
        waiting = self._waiting[loop]
        try:
            while waiting:
                group = waiting[: self.max_group]
                del waiting[: self.max_group]
                try:
                    outcomes = await run_in_threadpool(self._commit, group)
                except Exception as error:  # not the changes': every one of them hears it
                    outcomes = [error] * len(group)
                except BaseException as error:  # cancelled: so are they, and the writer
                    for order_change in group:
                        _settle(order_change, error)
                    raise
                for order_change, outcome in zip(group, outcomes, strict=True):
                    _settle(order_change, outcome)
        finally:
            del self._writers[loop]
            del self._waiting[loop]
            for order_change in waiting:  # only if cancelled: they hear so rather than wait forever
                _settle(order_change, asyncio.CancelledError())

    def _commit(self, group: list[OrderChange[Any]]) -> list[Any]:
        """The group's changes in one transaction (each alone if that transaction fails)."""
        if len(group) > 1:
            try:
                return self._commit_together(group)
            except _CommitFailedError as failed:
                # The commit itself failed (the connection lost as it was sent, say): whether the
                # database kept the transaction is unknown, so trying again could place an order
                # twice. Every request hears the error, as a lone request's would; a client
                # that retries with its Idempotency-Key gets the order, once.
                return [failed.error] * len(group)
            except Exception:  # rolled back before its commit: each tried again alone, below
                pass
        outcomes: list[Any] = []
        for order_change in group:
            try:
                outcomes.extend(self._commit_together([order_change]))
            except Exception as error:  # raised to this change's request alone
                outcomes.append(error)
        return outcomes

    def _commit_together(self, group: list[OrderChange[Any]]) -> list[Any]:
        # Households locked in id order, as every many-household writer locks them: two workers'
        # groups never wait on each other in a circle.
        order = sorted(range(len(group)), key=lambda i: group[i].participant_id)
        committing = False
        try:
            with transaction(self.platform.engine) as session:
                outcomes = self._write_all(session, group, order)
                committing = True
        except Exception as error:
            if committing:
                raise _CommitFailedError(error) from error
            raise
        for i, outcome in outcomes.items():
            if not isinstance(outcome, BaseException):
                group[i].request.state.audited = True
        self.transactions += 1
        self.changes += len(group)
        return [outcomes[i] for i in range(len(group))]

    def _write_all(self, session: Session, group: list[OrderChange[Any]], order: list[int]) -> dict[int, Any]:
        """Each change of ``group`` in ``session``, in ``order``, and the audit rows of those
        made; a refusal is kept as the change's outcome."""
        outcomes: dict[int, Any] = {}
        for i in order:
            try:
                outcomes[i] = group[i].write(session)
            except MarketError as refusal:  # raised before the change wrote anything
                outcomes[i] = refusal
        record_audits(
            session,
            [
                audit_entry(group[i].request, self.platform, group[i].status(outcome))
                for i, outcome in outcomes.items()
                if not isinstance(outcome, BaseException)
            ],
        )
        return outcomes


class _CommitFailedError(Exception):
    """A group's transaction failed at its commit: ``error`` is what the commit raised."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _settle(order_change: OrderChange[Any], outcome: object) -> None:
    future = order_change.outcome
    if future is None or future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
