"""Encode once, fan out: the shared stream is encoded once per codec, in one worker thread, and
every viewer's aiortc sender packetizes the same `av.Packet`s (it encodes only when a track
returns frames), so a viewer costs packetization and SRTP, not an encoder.

    Player ─► FrameBroadcaster ─► [encoder queue] ─► SharedEncoder ─► ViewerFeed × N ─► senders
                                                       (VP8 / H.264 + Opus, one thread)   └► recorder

Queues and their policies:
- encoder queue (DROP_OLDEST, 1 s of frames): every frame the player releases. When frames are
  waiting the encoder skips their video (the viewers repeat a picture) but always encodes their
  audio, so sound stays whole; skipped and dropped frames are counted.
- per viewer video (`viewer_video_ms`): an encoded stream cannot lose a delta frame, so a viewer
  that falls that far behind loses what it has queued (counted) and waits for the next keyframe,
  which it requests (rate-limited, shared by everyone on that codec).
- per viewer audio (`server.viewer_audio_ms`, DROP_OLDEST): Opus packets decode independently.

Priorities: the render workers and the media clock never wait for the encoder (the player hands
frames over without blocking); the encoder never waits for a viewer (feeds are non-blocking);
viewers' senders only read their own feeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
from av.video.frame import PictureType

from anchor.audio.resample import StreamResampler
from anchor.clock import MediaClock
from anchor.config import BroadcastConfig
from anchor.pipeline.fanout import FrameBroadcaster
from anchor.pipeline.items import OutputFrame
from anchor.pipeline.queues import DropPolicy, MediaQueue, QueueClosed

log = logging.getLogger(__name__)

VIDEO_CLOCK = 90000
OPUS_RATE = 48000
AUDIO_CHUNK = OPUS_RATE // 50  # 20 ms: what Opus and WebRTC players expect
CODECS = ("vp8", "h264")


@dataclass(frozen=True)
class EncodedVideo:
    index: int  # output frame
    packet: av.Packet  # shared by every viewer: senders only read it
    keyframe: bool
    frame: OutputFrame  # the source frame (timestamps for stats)


@dataclass(frozen=True)
class EncodedAudio:
    index: int  # output frame whose audio this packet carries (part of)
    packet: av.Packet
    due: float  # media time (s) the packet is due: its pts
    first: bool  # the frame's first packet


def even_crop(image: np.ndarray) -> np.ndarray:
    """yuv420p encoders need even sizes: drop an odd last row/column."""
    h, w = image.shape[:2]
    if h % 2 or w % 2:
        image = image[: h - h % 2, : w - w % 2]
    return np.ascontiguousarray(image)


class VideoEncoder:
    """One PyAV encoder for the shared stream (encode-worker thread only)."""

    def __init__(self, codec: str, width: int, height: int, fps: int, cfg: BroadcastConfig) -> None:
        if codec not in CODECS:
            raise ValueError(f"unsupported video codec {codec!r} (use one of {', '.join(CODECS)})")
        self.codec = codec
        self.size = (width, height)
        self.ticks = VIDEO_CLOCK // fps
        gop = max(1, round(cfg.keyframe_interval_s * fps))
        ctx = av.CodecContext.create("libvpx" if codec == "vp8" else "libx264", "w")
        ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
        ctx.time_base = Fraction(1, VIDEO_CLOCK)
        ctx.framerate = Fraction(fps, 1)
        ctx.bit_rate = cfg.video_bitrate_kbps * 1000
        ctx.gop_size = gop
        threads = str(max(1, cfg.encode_threads))
        if codec == "vp8":
            # real-time, no look-ahead (every frame leaves at once), error resilient for loss
            ctx.options = {
                "deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0",
                "error-resilient": "1", "auto-alt-ref": "0", "threads": threads,
            }
        else:
            # baseline-compatible, no B-frames, SPS/PPS with every keyframe so a viewer that
            # joins at any keyframe can decode
            ctx.options = {
                "preset": "ultrafast", "tune": "zerolatency", "profile": "baseline",
                "threads": threads,
                "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:repeat-headers=1",
            }
        self.ctx = ctx

    def encode(self, image: np.ndarray, index: int, keyframe: bool) -> list[av.Packet]:
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
        frame.pts = index * self.ticks
        frame.time_base = self.ctx.time_base
        if keyframe:
            frame.pict_type = PictureType.I
        packets = list(self.ctx.encode(frame))
        for p in packets:
            p.pts = index * self.ticks  # one frame in, one packet out (no look-ahead)
            p.time_base = self.ctx.time_base
        return packets

    def close(self) -> None:
        self.ctx = None  # type: ignore[assignment]


class AudioEncoder:
    """The timeline's 16 kHz audio -> 20 ms Opus packets at 48 kHz (two per 40 ms frame).

    Upsampled with a streaming polyphase filter primed by its own delay, so every frame fills
    whole 20 ms packets and packet k of frame n has pts exactly n*1920 + k*960."""

    def __init__(self, sample_rate: int, fps: int, cfg: BroadcastConfig) -> None:
        self.sample_rate = sample_rate
        self.samples_per_frame = sample_rate // fps
        self._resampler = StreamResampler(sample_rate, OPUS_RATE)
        self._fifo = np.zeros(0, dtype=np.float32)
        self._primed = False
        ctx = av.CodecContext.create("libopus", "w")
        ctx.bit_rate = cfg.audio_bitrate_kbps * 1000
        ctx.format = "s16"
        ctx.layout = "mono"
        ctx.sample_rate = OPUS_RATE
        ctx.time_base = Fraction(1, OPUS_RATE)
        ctx.options = {"application": "voip"}
        self.ctx = ctx
        self.time_base = Fraction(1, OPUS_RATE)

    def _upsample(self, samples: np.ndarray) -> np.ndarray:
        y = self._resampler.process(samples)
        want = len(samples) * OPUS_RATE // self.sample_rate
        if not self._primed:
            self._fifo = np.zeros(max(0, want - len(y)), dtype=np.float32)
            self._primed = True
        self._fifo = np.concatenate([self._fifo, y])
        n = min(want, len(self._fifo) - len(self._fifo) % AUDIO_CHUNK)
        out, self._fifo = self._fifo[:n], self._fifo[n:]
        return out

    def encode(self, samples: np.ndarray, index: int) -> list[EncodedAudio]:
        pcm = (np.clip(self._upsample(samples), -1.0, 1.0) * 32767.0).astype("<i2")
        start = index * self.samples_per_frame * OPUS_RATE // self.sample_rate
        out: list[EncodedAudio] = []
        for off in range(0, len(pcm) - AUDIO_CHUNK + 1, AUDIO_CHUNK):
            af = av.AudioFrame.from_ndarray(
                pcm[off : off + AUDIO_CHUNK].reshape(1, -1), format="s16", layout="mono"
            )
            af.sample_rate = OPUS_RATE
            af.pts = start + off
            for p in self.ctx.encode(af):
                p.pts = start + off  # libopus is one packet per 20 ms frame; its pts lags by
                p.time_base = self.time_base  # the encoder delay, which the timeline ignores
                out.append(EncodedAudio(index, p, (start + off) / OPUS_RATE, not out))
        return out


def _below_render_priority() -> None:
    """The encode thread yields the CPU to the render workers (render and clock come first)."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 4)  # Linux: per thread


class ViewerFeed:
    """One viewer's (or the recorder's) view of the shared encoded stream."""

    def __init__(
        self,
        feed_id: int,
        codec: str,
        fps: int,
        video_ms: float,
        audio_ms: float,
        request_keyframe: Callable[[str], None],
    ) -> None:
        self.id = feed_id
        self.codec = codec
        self.frame_ms = 1000.0 / fps
        self.video: MediaQueue[EncodedVideo] = MediaQueue(
            f"encoded-video[{feed_id}]", max(video_ms, self.frame_ms), DropPolicy.DROP_OLDEST,
            lambda _v: self.frame_ms,
        )
        self.audio: MediaQueue[EncodedAudio] = MediaQueue(
            f"encoded-audio[{feed_id}]", max(audio_ms, self.frame_ms), DropPolicy.DROP_OLDEST,
            lambda _a: 20.0,
        )
        self._request_keyframe = request_keyframe
        self.waiting_for_keyframe = True  # a decoder can only start at a keyframe
        self.started = False  # has had its first keyframe
        self.join_skipped = 0  # frames before the first keyframe (not a loss: nothing to decode)
        self.dropped_video = 0  # encoded frames lost after that (the viewer fell behind)
        self.bytes_out = 0
        self.closed = False

    def push_video(self, item: EncodedVideo) -> None:
        if self.closed:
            return
        if self.waiting_for_keyframe:
            if not item.keyframe:
                if self.started:
                    self.dropped_video += 1
                else:
                    self.join_skipped += 1
                return
            self.waiting_for_keyframe = False
            self.started = True
        elif self.video.full_for(self.frame_ms):
            # Behind by a whole queue: what is queued is useless without the frames before it.
            self.dropped_video += len(self.video) + 1
            self.video.flush()
            self.waiting_for_keyframe = True
            self._request_keyframe(self.codec)
            return
        self.bytes_out += item.packet.size
        self.video.put_nowait(item)

    def push_audio(self, item: EncodedAudio) -> None:
        if not self.closed:
            self.bytes_out += item.packet.size
            self.audio.put_nowait(item)

    def flush_audio(self) -> None:
        self.audio.flush()

    def close(self) -> None:
        self.closed = True
        self.video.close()
        self.audio.close()


class SharedEncoder:
    """Encodes what the player releases once per codec in use, and feeds every viewer."""

    def __init__(
        self,
        broadcaster: FrameBroadcaster,
        fps: int,
        sample_rate: int,
        clock: MediaClock,
        cfg: BroadcastConfig,
        viewer_audio_ms: float,
        time_fn: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fps = fps
        self.cfg = cfg
        self.clock = clock
        self.viewer_audio_ms = viewer_audio_ms
        self.time_fn = time_fn
        frame_ms = 1000.0 / fps
        self.queue: MediaQueue[OutputFrame] = MediaQueue(
            "encoder", 1000.0, DropPolicy.DROP_OLDEST, lambda _f: frame_ms
        )
        broadcaster.add_sink(self._accept, self.flush_audio)
        self._pool = ThreadPoolExecutor(
            1, thread_name_prefix="anchor-encode", initializer=_below_render_priority
        )
        self._video: dict[str, VideoEncoder] = {}
        self._audio = AudioEncoder(sample_rate, fps, cfg)
        self._feeds: dict[int, ViewerFeed] = {}
        self._ids = itertools.count(1)
        self._keyframe_wanted: set[str] = set(CODECS)  # the first frame of a codec is a keyframe
        self._last_forced: dict[str, float] = {}
        self.encode_ms = 0.0  # running mean of the worker's time per frame (all codecs + audio)
        self.frames_encoded = 0
        self.video_skipped = 0  # frames whose video was not encoded (the encoder was behind)
        self.keyframes_forced = 0
        self.bytes_out_closed = 0  # bytes of feeds that have gone
        self._task: asyncio.Task[None] | None = None

    def _accept(self, frame: OutputFrame) -> None:
        if not self.queue.closed:
            self.queue.put_nowait(frame)  # drop-oldest: the player never waits for the encoder

    # -- feeds ---------------------------------------------------------------------------------
    def add_feed(self, codec: str) -> ViewerFeed:
        codec = codec.lower()
        if codec not in CODECS:
            raise ValueError(f"unsupported video codec {codec!r}")
        feed = ViewerFeed(
            next(self._ids), codec, self.fps, self.cfg.viewer_video_ms, self.viewer_audio_ms,
            self.request_keyframe,
        )
        self._feeds[feed.id] = feed
        self.request_keyframe(codec)  # a new viewer waits for one
        return feed

    def remove_feed(self, feed: ViewerFeed) -> None:
        if self._feeds.pop(feed.id, None) is not None:
            self.bytes_out_closed += feed.bytes_out
        feed.close()

    @property
    def feeds(self) -> list[ViewerFeed]:
        return list(self._feeds.values())

    def request_keyframe(self, codec: str) -> None:
        """A PLI/FIR, a new viewer or a viewer that fell behind: the next frame of that codec
        should be a keyframe (at most one forced keyframe per keyframe_min_interval_ms)."""
        self._keyframe_wanted.add(codec.lower())

    def _take_keyframe(self, codec: str, now: float) -> bool:
        if codec not in self._keyframe_wanted:
            return False
        last = self._last_forced.get(codec)
        if last is not None and now - last < self.cfg.keyframe_min_interval_ms / 1000.0:
            return False  # stays wanted: forced at the first frame the limit allows
        self._keyframe_wanted.discard(codec)
        self._last_forced[codec] = now
        self.keyframes_forced += 1
        return True

    def flush_audio(self) -> None:
        """Interrupt: encoded audio already queued for viewers is dropped so speech stops."""
        for feed in self._feeds.values():
            feed.flush_audio()

    def audio_extradata(self) -> bytes:
        """The Opus header (OpusHead) a container needs to play the shared audio packets."""
        return bytes(self._audio.ctx.extradata or b"")

    def bytes_out(self) -> int:
        return self.bytes_out_closed + sum(f.bytes_out for f in self._feeds.values())

    def dropped_video(self) -> int:
        return sum(f.dropped_video for f in self._feeds.values())

    # -- the worker ----------------------------------------------------------------------------
    def _encode(
        self, frame: OutputFrame, codecs: dict[str, bool], skip_video: bool
    ) -> tuple[dict[str, list[av.Packet]], list[EncodedAudio], float]:
        t0 = time.perf_counter()
        video: dict[str, list[av.Packet]] = {}
        if not skip_video:
            image = even_crop(frame.image)
            h, w = image.shape[:2]
            for codec, keyframe in codecs.items():
                enc = self._video.get(codec)
                if enc is None or enc.size != (w, h):
                    enc = self._video[codec] = VideoEncoder(codec, w, h, self.fps, self.cfg)
                    keyframe = True
                video[codec] = enc.encode(image, frame.index, keyframe)
        audio = self._audio.encode(frame.audio, frame.index)
        return video, audio, time.perf_counter() - t0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="anchor-encode")

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                frame = await self.queue.get()
            except QueueClosed:
                return
            feeds = list(self._feeds.values())
            now = self.time_fn()
            in_use = {f.codec for f in feeds}
            codecs = {c: self._take_keyframe(c, now) for c in sorted(in_use)}
            # More frames waiting: this one's picture would be late anyway; keep its sound.
            skip_video = len(self.queue) > 0
            if skip_video:
                self.video_skipped += 1
                for c, forced in codecs.items():
                    if forced:
                        self._keyframe_wanted.add(c)
                        self._last_forced.pop(c, None)
            try:
                video, audio, seconds = await loop.run_in_executor(
                    self._pool, self._encode, frame, codecs, skip_video
                )
            except Exception:  # one bad frame must not end the broadcast
                log.exception("shared encoder: frame %d failed", frame.index)
                self._video.clear()  # start the encoders afresh (each begins with a keyframe)
                continue
            self.frames_encoded += 1
            self.encode_ms = seconds * 1000.0 if self.frames_encoded == 1 else (
                0.9 * self.encode_ms + 0.1 * seconds * 1000.0
            )
            items = {
                c: [EncodedVideo(frame.index, p, bool(p.is_keyframe), frame) for p in packets]
                for c, packets in video.items()
            }
            for feed in self._feeds.values():  # feeds may have gone while encoding
                for item in items.get(feed.codec, ()):
                    feed.push_video(item)
                for a in audio:
                    feed.push_audio(a)

    async def aclose(self) -> None:
        self.queue.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for feed in list(self._feeds.values()):
            self.remove_feed(feed)
        self._pool.shutdown(wait=True)
        for enc in self._video.values():
            enc.close()
        self._video.clear()
