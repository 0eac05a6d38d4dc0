"""What the API needs from storage: create, read, cancel and move
timers."""

from __future__ import annotations

import contextlib
import hashlib

import msgspec

from wheel.core import ids
from wheel.core.states import Code, TimerState
from wheel.core.webhook_request import WebhookRequest, pack
from wheel.storage.errors import RedisUnavailable
from wheel.storage.replies import PastAttempt
from wheel.storage.shards import Idempotency, Record, ShardQueue


class IdempotencyMismatch(Exception):
    """An ``Idempotency-Key`` reused with a different request."""


class CancelRefused(Exception):
    """The timer is firing or finished; it cannot be cancelled."""

    def __init__(self, state: TimerState) -> None:
        super().__init__(f"the timer is {state.value}")
        self.state = state


class MoveRefused(CancelRefused):
    """The timer is firing or finished; it cannot be rescheduled."""


class KeptChanging(Exception):
    """The timer changed under every try to move it (retry the call)."""


class Timer(msgspec.Struct, frozen=True):
    """A timer as the API reports it."""

    id: str
    due_ms: int
    now_ms: int
    status: TimerState
    attempts: int = 0
    next_ms: int | None = None
    finished_ms: int | None = None
    result: str = ""
    url: str = ""
    request: bytes = b""
    history: tuple[PastAttempt, ...] = ()

    @property
    def left_ms(self) -> int:
        """Milliseconds until due; 0 once due, and for a cancelled timer
        (it will never fire: nothing is left of it)."""
        if self.status is TimerState.CANCELLED:
            return 0
        return max(0, self.due_ms - self.now_ms)

    @property
    def last_status(self) -> int | None:
        """The HTTP status of the last attempt, when it got an answer."""
        return int(self.result) if self.result.isdigit() else None

    @property
    def last_error(self) -> str | None:
        """The error of the last attempt, when it got no 2xx answer."""
        if not self.result or self.status is TimerState.FIRED:
            return None
        if self.result.isdigit():
            return f"HTTP {self.result}"
        return self.result


def idempotency(
    key: str,
    scope: str,
    url: str,
    parts: tuple[int, int, int],
    at_ms: int | None = None,
    request: WebhookRequest | None = None,
) -> Idempotency:
    """The digests of an ``Idempotency-Key`` and its request.

    ``scope`` separates the keys of API tokens (empty without tokens);
    the fingerprint covers the url and the three delay parts exactly as
    sent (and ``at`` and the request when given: a seed-shaped request
    keeps the fingerprint it always had), so the same key with another
    request is told apart.
    """
    key_digest = hashlib.sha256(
        scope.encode() + b"\0" + key.encode()
    ).digest()[:16]
    text = b"%d\0%d\0%d\0" % parts + url.encode()
    if at_ms is not None:
        text += b"\0at\0%d" % at_ms
    if request is not None:
        text += b"\0request\0" + pack(request)
    fingerprint = hashlib.sha256(text).digest()[:16]
    return Idempotency(key_digest, fingerprint)


def timer_of(timer_id: bytes, record: Record, url: str = "") -> Timer:
    """The API's view of a record (``url`` when known otherwise)."""
    return Timer(
        ids.to_text(timer_id),
        record.due_ms,
        record.now_ms,
        record.state,
        record.attempts,
        record.next_ms,
        record.finished_ms,
        record.result,
        record.url or url,
        record.request,
        record.history,
    )


class TimerService:
    """Creates, reads and cancels timers for the API: a script call
    each (creates of one shard made together share theirs)."""

    def __init__(self, queue: ShardQueue) -> None:
        self.queue = queue

    async def create(
        self,
        url: str,
        delay_ms: int,
        key: Idempotency | None = None,
        at_ms: int | None = None,
        request: WebhookRequest | None = None,
    ) -> tuple[Timer, bool]:
        """A new timer due ``delay_ms`` from Redis' now (or at
        ``at_ms``), sending ``request`` when given; and whether it is a
        repeat of an earlier request with the same idempotency key.

        Raises:
            IdempotencyMismatch: the key was used for another request.
        """
        created = await self.queue.create(
            url,
            delay_ms,
            key,
            at_ms=at_ms,
            request=b"" if request is None else pack(request),
        )
        if created.code is Code.MISMATCH:
            raise IdempotencyMismatch(ids.to_text(created.timer_id))
        if created.code is Code.CONFLICT:
            raise RuntimeError("timer id collision")
        repeat = key is not None and created.code is Code.EXISTS
        if repeat:
            # The key keeps the due time the timer was created with; it
            # may have been rescheduled, fired or cancelled since.
            with contextlib.suppress(RedisUnavailable):
                record = await self.queue.get(created.timer_id)
                if record is not None:
                    return timer_of(created.timer_id, record, url), True
        timer = Timer(
            ids.to_text(created.timer_id),
            created.due_ms,
            created.now_ms,
            TimerState.PENDING,
        )
        return timer, repeat

    async def get(self, text_id: str) -> Timer | None:
        """The timer ``text_id``, or None when unknown, expired or bad."""
        timer_id = ids.parse(text_id)
        if timer_id is None:
            return None
        record = await self.queue.get(timer_id)
        return None if record is None else timer_of(timer_id, record)

    async def cancel(self, text_id: str) -> bool:
        """Cancel a pending timer; False when there is no such timer.

        Raises:
            CancelRefused: the timer is firing, fired or failed.
        """
        timer_id = ids.parse(text_id)
        if timer_id is None:
            return False
        code, state = await self.queue.cancel(timer_id)
        if code is Code.NOT_FOUND:
            return False
        if code is Code.CONFLICT:
            raise CancelRefused(state or TimerState.FIRING)
        return True

    async def reschedule(
        self, text_id: str, delay_ms: int, at_ms: int | None
    ) -> Timer | None:
        """Move a pending timer; None when there is no such timer.

        Raises:
            MoveRefused: the timer is firing or finished.
            KeptChanging: it changed under every try.
        """
        timer_id = ids.parse(text_id)
        if timer_id is None:
            return None
        moved = await self.queue.reschedule(timer_id, delay_ms, at_ms)
        if moved.code is Code.NOT_FOUND:
            return None
        if moved.code is Code.CONFLICT:
            raise MoveRefused(moved.state or TimerState.FIRING)
        if moved.code is Code.STALE:
            raise KeptChanging()
        return await self.get(text_id)
