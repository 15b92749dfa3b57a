"""Bounded asyncio queues sized in milliseconds of media, each with a stated drop policy.

Every edge of the pipeline is one `MediaQueue`. Its capacity is in milliseconds (an item reports
its own duration, control items count 0 ms), so a queue of 40 ms video frames and one of 20 ms
audio chunks are bounded by the same unit. Policies:

- BLOCK: `put` waits while the queue is full (audio and features: never dropped silently).
- DROP_OLDEST: `put` never waits; the oldest items are dropped (and counted) to make room.
- LATEST: keep only the newest item (a slow video viewer sees the latest frame).

`flush()` empties the queue on interrupt; flushed items are counted separately from drops.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class DropPolicy(enum.Enum):
    BLOCK = "block"
    DROP_OLDEST = "drop-oldest"
    LATEST = "latest"


class QueueClosed(Exception):
    """Raised by `get` on a closed, empty queue and by `put` on a closed queue."""


class MediaQueue(Generic[T]):
    def __init__(
        self,
        name: str,
        capacity_ms: float,
        policy: DropPolicy,
        duration_ms: Callable[[T], float],
    ) -> None:
        if capacity_ms <= 0:
            raise ValueError(f"queue {name}: capacity must be > 0 ms")
        self.name = name
        self.capacity_ms = float(capacity_ms)
        self.policy = policy
        self._duration = duration_ms
        self._items: deque[tuple[T, float]] = deque()
        self._depth_ms = 0.0
        # One event per "something changed"; replaced after every notification so waiters
        # (single-threaded asyncio) re-check their condition. Sync callers can notify too.
        self._changed: asyncio.Event | None = None
        self._closed = False
        self.dropped = 0  # items lost to the policy (DROP_OLDEST / LATEST)
        self.flushed = 0  # items removed by flush() (interrupts)
        self.put_count = 0

    # -- state ---------------------------------------------------------------------------------
    @property
    def depth_ms(self) -> float:
        return self._depth_ms

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    def full_for(self, duration_ms: float) -> bool:
        # An item longer than the whole capacity may still enter an empty queue.
        return bool(self._items) and self._depth_ms + duration_ms > self.capacity_ms + 1e-9

    async def _wait_change(self) -> None:
        if self._changed is None:
            self._changed = asyncio.Event()
        await self._changed.wait()

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    # -- producer ------------------------------------------------------------------------------
    async def put(self, item: T) -> None:
        d = float(self._duration(item))
        if self.policy is DropPolicy.BLOCK:
            while not self._closed and self.full_for(d):
                await self._wait_change()
        if self._closed:
            raise QueueClosed(self.name)
        self._append(item, d)

    def put_nowait(self, item: T) -> bool:
        """Non-blocking put. For BLOCK queues returns False (nothing queued) when full."""
        if self._closed:
            raise QueueClosed(self.name)
        d = float(self._duration(item))
        if self.policy is DropPolicy.BLOCK and self.full_for(d):
            return False
        self._append(item, d)
        return True

    def _append(self, item: T, d: float) -> None:
        if self.policy is DropPolicy.LATEST:
            self.dropped += len(self._items)
            self._items.clear()
            self._depth_ms = 0.0
        elif self.policy is DropPolicy.DROP_OLDEST:
            while self.full_for(d):
                _, old = self._items.popleft()
                self._depth_ms -= old
                self.dropped += 1
        self._items.append((item, d))
        self._depth_ms += d
        self.put_count += 1
        self._notify()

    # -- consumer ------------------------------------------------------------------------------
    async def get(self) -> T:
        while not self._items:
            if self._closed:
                raise QueueClosed(self.name)
            await self._wait_change()
        return self._pop()

    async def get_until(self, deadline_s: float, time_fn: Callable[[], float]) -> T | None:
        """`get`, but give up (None) when monotonic `time_fn()` reaches `deadline_s`."""
        while not self._items:
            if self._closed:
                raise QueueClosed(self.name)
            left = deadline_s - time_fn()
            if left <= 0:
                return None
            try:
                await asyncio.wait_for(self._wait_change(), left)
            except TimeoutError:
                return None
        return self._pop()

    def get_nowait(self) -> T | None:
        if not self._items:
            return None
        return self._pop()

    def peek(self) -> T | None:
        return self._items[0][0] if self._items else None

    def _pop(self) -> T:
        item, d = self._items.popleft()
        self._depth_ms = max(0.0, self._depth_ms - d) if self._items else 0.0
        self._notify()
        return item

    # -- control -------------------------------------------------------------------------------
    def flush(self) -> int:
        """Drop everything queued (interrupt); returns how many items went."""
        n = len(self._items)
        self._items.clear()
        self._depth_ms = 0.0
        self.flushed += n
        self._notify()
        return n

    def close(self) -> None:
        """Wake every waiter; later puts raise, gets drain what is left then raise."""
        self._closed = True
        self._notify()
