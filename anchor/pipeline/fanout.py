"""Render once, fan out: every viewer subscribes to the one stream the player releases.

Each subscription has its own bounded queues, so a slow viewer never slows the others: video is
latest-wins (a viewer whose encoder lags sees the newest frame; skipped frames are counted),
audio drops its oldest packets beyond `audio_ms` (counted) so it can never drift behind video.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from anchor.pipeline.items import OutputFrame
from anchor.pipeline.queues import DropPolicy, MediaQueue

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AudioPacket:
    """The audio of output frame `index` (samples [index*spf, (index+1)*spf) of the timeline)."""

    index: int
    samples: np.ndarray
    speech: bool


class Subscription:
    def __init__(self, sub_id: int, fps: int, audio_ms: float) -> None:
        self.id = sub_id
        frame_ms = 1000.0 / fps
        self.video: MediaQueue[OutputFrame] = MediaQueue(
            f"video[{sub_id}]", frame_ms, DropPolicy.LATEST, lambda _f: frame_ms
        )
        self.audio: MediaQueue[AudioPacket] = MediaQueue(
            f"audio[{sub_id}]", max(audio_ms, frame_ms), DropPolicy.DROP_OLDEST, lambda _p: frame_ms
        )
        self.closed = False

    def push(self, frame: OutputFrame) -> None:
        if self.closed:
            return
        self.video.put_nowait(frame)
        self.audio.put_nowait(AudioPacket(frame.index, frame.audio, frame.speech))

    def close(self) -> None:
        self.closed = True
        self.video.close()
        self.audio.close()


class FrameBroadcaster:
    def __init__(self, fps: int, audio_ms: float = 200.0) -> None:
        self.fps = fps
        self.audio_ms = audio_ms
        self._subs: dict[int, Subscription] = {}
        self._ids = itertools.count(1)
        self.latest: OutputFrame | None = None
        # Sinks get every frame, in order, without blocking (the shared encoder, a recorder);
        # each bounds its own queue. `flush` hooks drop their queued audio on an interrupt.
        self._sinks: list[Callable[[OutputFrame], None]] = []
        self._flush_hooks: list[Callable[[], None]] = []

    def subscribe(self) -> Subscription:
        sub = Subscription(next(self._ids), self.fps, self.audio_ms)
        self._subs[sub.id] = sub
        if self.latest is not None:  # a new viewer gets a picture at once
            sub.video.put_nowait(self.latest)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.pop(sub.id, None)
        sub.close()

    @property
    def subscribers(self) -> list[Subscription]:
        return list(self._subs.values())

    def add_sink(
        self, sink: Callable[[OutputFrame], None], flush_audio: Callable[[], None] | None = None
    ) -> None:
        self._sinks.append(sink)
        if flush_audio is not None:
            self._flush_hooks.append(flush_audio)

    def publish(self, frame: OutputFrame) -> None:
        self.latest = frame
        for sink in self._sinks:
            sink(frame)
        for sub in list(self._subs.values()):
            sub.push(frame)

    def flush_audio(self) -> None:
        """Interrupt: audio already queued for viewers is dropped so speech stops at once."""
        for sub in self._subs.values():
            sub.audio.flush()
        for hook in self._flush_hooks:
            hook()

    def dropped(self) -> dict[str, int]:
        """Frames / packets lost to slow viewers so far (current subscribers)."""
        return {
            "video": sum(s.video.dropped for s in self._subs.values()),
            "audio": sum(s.audio.dropped for s in self._subs.values()),
        }
