"""aiortc tracks that read one viewer's `ViewerFeed` of the shared encoded stream.

Video frame n goes out with pts n * 90000 / fps (time base 1/90000); its audio (640 samples at
16 kHz, upsampled to 48 kHz and Opus-encoded once for everyone) goes out as two 20 ms packets
with pts n * 1920 and n * 1920 + 960 (time base 1/48000), the second released at its own
deadline 20 ms later. Both tracks are fed by the same encoder at the same moment, so each RTCP
sender report maps both streams to the same wall clock: that is what lets the browser play lips
and sound together.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from anchor.clock import MediaClock
from anchor.pipeline.items import STAMP_SENT, OutputFrame
from anchor.pipeline.queues import MediaQueue, QueueClosed
from anchor.stream.encoder import ViewerFeed

log = logging.getLogger(__name__)

T = TypeVar("T")


class SendLog:
    """When this viewer's tracks handed frame n's video and audio to their senders."""

    def __init__(self, keep: int = 256) -> None:
        self.keep = keep
        self.video: OrderedDict[int, float] = OrderedDict()
        self.audio: OrderedDict[int, float] = OrderedDict()

    def _put(self, d: OrderedDict[int, float], index: int, t: float) -> None:
        d[index] = t
        while len(d) > self.keep:
            d.popitem(last=False)

    def video_sent(self, index: int, t: float) -> None:
        self._put(self.video, index, t)

    def audio_sent(self, index: int, t: float) -> None:
        self._put(self.audio, index, t)

    def av_offset(self, index: int) -> float | None:
        """Seconds video left after its audio for frame `index` (positive: video late)."""
        v, a = self.video.get(index), self.audio.get(index)
        return None if v is None or a is None else v - a


class _FeedTrack(MediaStreamTrack):
    """A track reading one queue of a `ViewerFeed`, which exists once negotiation has chosen
    the codec (`attach`)."""

    def __init__(self, clock: MediaClock, send_log: SendLog | None) -> None:
        super().__init__()
        self.clock = clock
        self.send_log = send_log
        self.feed: ViewerFeed | None = None
        self._attached = asyncio.Event()

    def attach(self, feed: ViewerFeed) -> None:
        self.feed = feed
        self._attached.set()

    async def _next(self, queue_of: Callable[[ViewerFeed], MediaQueue[T]]) -> T:
        if self.readyState != "live":
            raise MediaStreamError
        await self._attached.wait()
        assert self.feed is not None
        try:
            return await queue_of(self.feed).get()
        except QueueClosed:
            self.stop()
            raise MediaStreamError from None


class EncodedVideoTrack(_FeedTrack):
    """A viewer's video: the shared encoder's packets, which aiortc's sender packetizes as they
    are (no per-viewer encode). Frame n has pts n * 90000 / fps."""

    kind = "video"

    def __init__(
        self,
        clock: MediaClock,
        send_log: SendLog | None = None,
        on_sent: Callable[[OutputFrame], None] | None = None,
    ) -> None:
        super().__init__(clock, send_log)
        self.on_sent = on_sent
        self.frames_sent = 0

    async def recv(self) -> av.Packet:  # type: ignore[override]
        item = await self._next(lambda feed: feed.video)
        now = self.clock.monotonic()
        frame = item.frame
        frame.timestamps.setdefault(STAMP_SENT, now)  # the first viewer to send it
        if self.send_log is not None:
            self.send_log.video_sent(frame.index, now)
        self.frames_sent += 1
        if self.on_sent is not None:
            try:
                self.on_sent(frame)
            except Exception:  # stats must never stop the video
                log.exception("video track: on_sent failed")
        return item.packet


class EncodedAudioTrack(_FeedTrack):
    """A viewer's audio: the shared 20 ms Opus packets, each released at its own deadline (the
    first of a frame's two leaves with the frame's video, the second 20 ms later)."""

    kind = "audio"

    async def recv(self) -> av.Packet:  # type: ignore[override]
        item = await self._next(lambda feed: feed.audio)
        await self.clock.sleep_until(item.due)
        if item.first and self.send_log is not None:
            self.send_log.audio_sent(item.index, self.clock.monotonic())
        return item.packet


async def drain_track(track: MediaStreamTrack) -> None:
    """Read and discard a remote track nobody uses (aiortc buffers unread frames forever)."""
    with contextlib.suppress(MediaStreamError):
        while True:
            await track.recv()
