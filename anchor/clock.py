"""The media clock: one per session, monotonic, injectable.

Audio is the master timeline, counted in samples; video frame n has pts n / fps on the same
origin. Pacing uses absolute deadlines (origin + pts) so error never accumulates.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

log = logging.getLogger(__name__)

AUDIO_TIME_BASE = Fraction(1, 16000)


def samples_to_seconds(samples: int, sample_rate: int) -> float:
    return samples / sample_rate


def frame_pts_seconds(index: int, fps: int) -> float:
    return index / fps


def frame_to_samples(index: int, fps: int, sample_rate: int) -> int:
    """First audio sample of video frame `index` on the shared timeline."""
    return index * sample_rate // fps


def samples_to_frame(samples: int, fps: int, sample_rate: int) -> int:
    """Video frame that contains audio sample `samples`."""
    return samples * fps // sample_rate


class MediaClock:
    """Monotonic clock with an origin; `now()` is seconds since `start()`.

    `time_fn` is injectable so tests can drive time by hand (see `FakeTime`).
    """

    def __init__(self, time_fn: Callable[[], float] = time.monotonic) -> None:
        self._time_fn = time_fn
        self._origin: float | None = None

    def start(self, at: float | None = None) -> None:
        self._origin = self._time_fn() if at is None else at

    @property
    def started(self) -> bool:
        return self._origin is not None

    @property
    def origin(self) -> float:
        if self._origin is None:
            self.start()
        assert self._origin is not None
        return self._origin

    def monotonic(self) -> float:
        return self._time_fn()

    def now(self) -> float:
        """Seconds of media time elapsed since the origin."""
        return self._time_fn() - self.origin

    def deadline(self, pts_seconds: float) -> float:
        """Absolute monotonic time at which media time `pts_seconds` is due."""
        return self.origin + pts_seconds

    def behind(self, pts_seconds: float) -> float:
        """How late (seconds, >0) the item with this pts is right now."""
        return self.now() - pts_seconds

    async def sleep_until(self, pts_seconds: float) -> None:
        delay = self.deadline(pts_seconds) - self._time_fn()
        if delay > 0:
            await asyncio.sleep(delay)

    def rebase(self, pts_seconds: float) -> None:
        """Move the origin so that `pts_seconds` is due now (resync after falling behind)."""
        log.warning("media clock resync: %.1f ms behind at pts %.3f s",
                    self.behind(pts_seconds) * 1000, pts_seconds)
        self._origin = self._time_fn() - pts_seconds


@dataclass
class FakeTime:
    """A hand-driven time source for tests: `clock = MediaClock(fake)`; `fake.advance(0.04)`."""

    t: float = 0.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds
