"""Single-order placements that reach a worker together, committed together.

Households' own tools send one order a request. Each request on its own pays a transaction's
fixed costs: a threadpool hop, a session, ``BEGIN``, ``COMMIT`` and the database's flush of its
log. :class:`GroupCommit` lets the placements that arrive while one transaction is writing share
the next one: a writer task per event loop takes what waits (up to :data:`MAX_GROUP`), writes it
in one transaction in the threadpool, answers each placement, and goes on while more wait. A
placement that finds no writer running starts one, so a quiet worker adds no delay.

Nothing changes for a household: each order is checked by :func:`market.orders.place_order` as
before, in the same transaction as its ``placed`` event and its request's audit row, and is
answered once that transaction has committed. A refusal (a market rule, an idempotency key used
for something else) is raised before the order writes anything, so it leaves the others in the
transaction alone. Households are locked in the order of their ids, as every many-household
writer of the platform locks them. If the transaction fails before its commit for any other
reason (the database refusing a statement, a deadlock with another worker, a lost connection),
every placement of it is tried again in a transaction of its own, so one bad placement never
fails another. If the commit itself fails, whether the database kept the transaction is unknown:
nothing is tried again (that could place an order twice), and every request of the group hears
the error, as a lone placement's request would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from api.audit import audit_entry
from api.deps import Platform
from market.access import record_audits
from market.database import transaction
from market.errors import MarketError
from market.orders import MarketOrder

#: At most this many placements share a transaction (the rest wait for the next).
MAX_GROUP = 64

Placed = tuple[MarketOrder, bool]


@dataclass
class Placement:
    """One request's order, ready to write: ``place(session)`` places it as
    :func:`market.orders.place_order` does; ``request`` is audited with its status."""

    participant_id: str
    place: Callable[[Session], Placed]
    request: Request
    outcome: asyncio.Future[Placed] | None = None


class GroupCommit:
    """A worker's placements of single orders (``POST /v1/orders``), committed together when
    they arrive together (see the module's description).

    Each event loop has its own queue and writer task (a worker runs one loop; a test client may
    run one a request). The writer is a task of its own, not one of the requests, so a request
    whose client goes away takes nothing with it: its order is written, with its audit row, and
    answered to nobody, as a write already in the threadpool is.
    """

    def __init__(self, platform: Platform, *, max_group: int = MAX_GROUP) -> None:
        self.platform = platform
        self.max_group = max_group
        self._waiting: dict[asyncio.AbstractEventLoop, list[Placement]] = {}
        self._writers: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}
        #: The transactions this worker has committed and the placements in them.
        self.transactions = 0
        self.placements = 0

    async def place(self, placement: Placement) -> Placed:
        """Write ``placement`` (with whatever waits beside it) and return its order and whether
        it was created now; raises its refusal as :func:`place_order` would."""
        loop = asyncio.get_running_loop()
        placement.outcome = loop.create_future()
        self._waiting.setdefault(loop, []).append(placement)
        if loop not in self._writers:
            self._writers[loop] = loop.create_task(self._write_waiting(loop))
        outcome = placement.outcome
        try:
            return await asyncio.shield(outcome)
        except asyncio.CancelledError:
            # The client went away. Its placement is written anyway; wait for that, as a write in
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
                except Exception as error:  # not the placements': every one of them hears it
                    outcomes = [error] * len(group)
                except BaseException as error:  # cancelled: so are they, and the writer
                    for placement in group:
                        _settle(placement, error)
                    raise
                for placement, outcome in zip(group, outcomes, strict=True):
                    _settle(placement, outcome)
        finally:
            del self._writers[loop]
            del self._waiting[loop]
            for placement in waiting:  # only if cancelled: they hear so rather than wait forever
                _settle(placement, asyncio.CancelledError())

    def _commit(self, group: list[Placement]) -> list[Placed | BaseException]:
        """The group's placements in one transaction (each alone if that transaction fails)."""
        if len(group) > 1:
            try:
                return self._commit_together(group)
            except _CommitFailedError as failed:
                # The commit itself failed (the connection lost as it was sent, say): whether the
                # database kept the transaction is unknown, so trying again could place an order
                # twice. Every request hears the error, as a lone placement's would; a client
                # that retries with its Idempotency-Key gets the order, once.
                return [failed.error] * len(group)
            except Exception:  # rolled back before its commit: each tried again alone, below
                pass
        outcomes: list[Placed | BaseException] = []
        for placement in group:
            try:
                outcomes.extend(self._commit_together([placement]))
            except Exception as error:  # raised to this placement's request alone
                outcomes.append(error)
        return outcomes

    def _commit_together(self, group: list[Placement]) -> list[Placed | BaseException]:
        # Households locked in id order, as every many-household writer locks them: two workers'
        # groups never wait on each other in a circle.
        order = sorted(range(len(group)), key=lambda i: group[i].participant_id)
        committing = False
        try:
            with transaction(self.platform.engine) as session:
                outcomes = self._place_all(session, group, order)
                committing = True
        except Exception as error:
            if committing:
                raise _CommitFailedError(error) from error
            raise
        for i, outcome in outcomes.items():
            if not isinstance(outcome, BaseException):
                group[i].request.state.audited = True
        self.transactions += 1
        self.placements += len(group)
        return [outcomes[i] for i in range(len(group))]

    def _place_all(
        self, session: Session, group: list[Placement], order: list[int]
    ) -> dict[int, Placed | BaseException]:
        """Each placement of ``group`` in ``session``, in ``order``, and the audit rows of those
        placed; a refusal is kept as the placement's outcome."""
        outcomes: dict[int, Placed | BaseException] = {}
        for i in order:
            try:
                outcomes[i] = group[i].place(session)
            except MarketError as refusal:  # raised before the placement wrote anything
                outcomes[i] = refusal
        record_audits(
            session,
            [
                audit_entry(group[i].request, self.platform, 201 if outcome[1] else 200)
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


def _settle(placement: Placement, outcome: Placed | BaseException) -> None:
    future = placement.outcome
    if future is None or future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
