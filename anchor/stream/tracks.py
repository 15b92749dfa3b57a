"""aiortc tracks that read one viewer's `Subscription` of the shared rendered stream.

Video frame n goes out with pts n * 90000 / fps (time base 1/90000); its audio (640 samples at
16 kHz, upsampled to 48 kHz) goes out as two 20 ms frames with pts n * 1920 and n * 1920 + 960
(time base 1/48000), the second released at its own deadline 20 ms later. Both tracks are fed by the same player at the
same moment, so each RTCP sender report maps both streams to the same wall clock: that is what
lets the browser play lips and sound together.
"""

from __future__ import annotations

import contextlib
import logging
from collections import OrderedDict, deque
from collections.abc import Callable
from fractions import Fraction

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from anchor.audio.resample import StreamResampler
from anchor.clock import MediaClock
from anchor.pipeline.fanout import Subscription
from anchor.pipeline.items import STAMP_SENT, OutputFrame
from anchor.pipeline.queues import QueueClosed

log = logging.getLogger(__name__)

VIDEO_CLOCK = 90000
AUDIO_CHUNK_MS = 20
OPUS_RATE = 48000


class SendLog:
    """When this viewer's tracks handed frame n's video and audio to their encoders."""

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


def even_crop(image: np.ndarray) -> np.ndarray:
    """yuv420p encoders need even sizes: drop an odd last row/column."""
    h, w = image.shape[:2]
    if h % 2 or w % 2:
        image = image[: h - h % 2, : w - w % 2]
    return np.ascontiguousarray(image)


class AnchorVideoTrack(MediaStreamTrack):
    kind = "video"

    def __init__(
        self,
        sub: Subscription,
        fps: int,
        clock: MediaClock,
        send_log: SendLog | None = None,
        on_sent: Callable[[OutputFrame], None] | None = None,
    ) -> None:
        super().__init__()
        self.sub = sub
        self.fps = fps
        self.clock = clock
        self.send_log = send_log
        self.on_sent = on_sent
        self.frames_sent = 0
        self._ticks = VIDEO_CLOCK // fps
        self._time_base = Fraction(1, VIDEO_CLOCK)

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        try:
            frame = await self.sub.video.get()
        except QueueClosed:
            self.stop()
            raise MediaStreamError from None
        vf = av.VideoFrame.from_ndarray(even_crop(frame.image), format="rgb24")
        vf.pts = frame.index * self._ticks
        vf.time_base = self._time_base
        now = self.clock.monotonic()
        frame.timestamps.setdefault(STAMP_SENT, now)  # the first viewer to send it
        if self.send_log is not None:
            self.send_log.video_sent(frame.index, now)
        self.frames_sent += 1
        if self.on_sent is not None:
            try:
                self.on_sent(frame)
            except Exception:  # stats must never stop the video
                log.exception("video track: on_sent failed")
        return vf


class AnchorAudioTrack(MediaStreamTrack):
    """Frame n's audio as two 20 ms frames at 48 kHz (what the Opus encoder wants).

    Feeding aiortc's Opus encoder anything but 960-sample 48 kHz frames makes its internal
    resampler hold back one frame (20 ms of A/V skew), so the 16 kHz timeline is upsampled here
    with a streaming polyphase filter primed by its own (sub-millisecond) delay.
    """

    kind = "audio"

    def __init__(
        self,
        sub: Subscription,
        fps: int,
        sample_rate: int,
        clock: MediaClock,
        send_log: SendLog | None = None,
    ) -> None:
        super().__init__()
        self.sub = sub
        self.fps = fps
        self.sample_rate = sample_rate
        self.clock = clock
        self.send_log = send_log
        self.samples_per_frame = sample_rate // fps
        self.ratio = OPUS_RATE // sample_rate if OPUS_RATE % sample_rate == 0 else 0
        self.chunk = OPUS_RATE * AUDIO_CHUNK_MS // 1000  # 960
        self._resampler = StreamResampler(sample_rate, OPUS_RATE)
        self._fifo = np.zeros(0, dtype=np.float32)
        self._primed = False
        self._time_base = Fraction(1, OPUS_RATE)
        self._pending: deque[tuple[av.AudioFrame, float]] = deque()  # (frame, due media time)

    def _upsample(self, samples: np.ndarray) -> np.ndarray:
        y = self._resampler.process(samples)
        want = len(samples) * OPUS_RATE // self.sample_rate
        if not self._primed:
            # the filter's look-ahead, paid once as leading silence so every packet fills
            # whole 20 ms frames from here on
            self._fifo = np.zeros(max(0, want - len(y)), dtype=np.float32)
            self._primed = True
        self._fifo = np.concatenate([self._fifo, y])
        n = min(want, len(self._fifo) - len(self._fifo) % self.chunk)
        out, self._fifo = self._fifo[:n], self._fifo[n:]
        return out

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if not self._pending:
            try:
                packet = await self.sub.audio.get()
            except QueueClosed:
                self.stop()
                raise MediaStreamError from None
            if self.send_log is not None:
                self.send_log.audio_sent(packet.index, self.clock.monotonic())
            pcm = (np.clip(self._upsample(packet.samples), -1.0, 1.0) * 32767.0).astype("<i2")
            start = packet.index * self.samples_per_frame * OPUS_RATE // self.sample_rate
            for off in range(0, len(pcm), self.chunk):
                part = pcm[off : off + self.chunk]
                af = av.AudioFrame.from_ndarray(part.reshape(1, -1), format="s16", layout="mono")
                af.sample_rate = OPUS_RATE
                af.pts = start + off
                af.time_base = self._time_base
                self._pending.append((af, (start + off) / OPUS_RATE))
            if not self._pending:
                return await self.recv()
            first, _ = self._pending.popleft()
            return first
        af, due = self._pending.popleft()
        await self.clock.sleep_until(due)  # the second 20 ms half leaves at its own time
        return af


async def drain_track(track: MediaStreamTrack) -> None:
    """Read and discard a remote track nobody uses (aiortc buffers unread frames forever)."""
    with contextlib.suppress(MediaStreamError):
        while True:
            await track.recv()
