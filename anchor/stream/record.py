"""Record the broadcast as it is sent: the shared encoder's own packets, muxed, never re-encoded.

    SharedEncoder ─► ViewerFeed (like any viewer's) ─► BroadcastRecorder ─► [mux worker] ─► file

- `.mp4`: H.264 + Opus, *fragmented* (a fragment per keyframe, `broadcast.keyframe_interval_s`),
  so a crash or a kill leaves a file that plays up to its last fragment. H.264 is the codec
  that MP4 players read; the encoder makes it once for the recording and any H.264 viewers.
- `.webm` / `.mkv`: VP8 + Opus, the very packets VP8 viewers receive. Matroska is written as a
  stream of clusters, so a cut-off file plays as far as it got.

The recording starts at a keyframe; its timeline is the broadcast's, rebased to 0, so its
duration is what was broadcast while it ran and its audio and video keep their offset. Muxing
(file I/O) runs in the recorder's own worker thread; the feed's queues bound what waits for it
(a disk too slow for the stream loses frames to the next keyframe, counted, never the viewers).
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from anchor.errors import StreamError
from anchor.pipeline.queues import QueueClosed
from anchor.stream.encoder import OPUS_RATE, VIDEO_CLOCK, EncodedAudio, EncodedVideo, SharedEncoder

log = logging.getLogger(__name__)

CONTAINERS = {".mp4": ("mp4", "h264"), ".webm": ("webm", "vp8"), ".mkv": ("matroska", "vp8")}
# empty_moov + a fragment at every keyframe: playable at any moment, no index at the end
# needed; flush_packets writes each fragment through to the file (not only PyAV's buffer)
MP4_OPTIONS = {"movflags": "frag_keyframe+empty_moov+default_base_moof", "flush_packets": "1"}
MKV_OPTIONS = {"flush_packets": "1"}


class RecordError(StreamError):
    """The recording cannot start (HTTP 400 / CLI one-line error)."""


def check_record_path(path: Path) -> tuple[str, str]:
    """(container format, video codec) for a recording path; RecordError if it cannot be one."""
    suffix = path.suffix.lower()
    if suffix not in CONTAINERS:
        raise RecordError(f"{path.name}: record to .mp4 (H.264 + Opus) or .webm/.mkv (VP8 + Opus)")
    if not path.parent.is_dir():
        raise RecordError(f"{path}: the folder {path.parent} does not exist")
    if path.is_dir():
        raise RecordError(f"{path}: is a folder")
    return CONTAINERS[suffix]


def h264_parameter_sets(data: bytes) -> bytes:
    """The SPS and PPS NAL units of an Annex-B keyframe (MP4 needs them in its header)."""
    out = b""
    for nal in data.split(b"\x00\x00\x01")[1:]:
        nal = nal.rstrip(b"\x00")  # the next start code's leading zero
        if nal and nal[0] & 0x1F in (7, 8):
            out += b"\x00\x00\x00\x01" + nal
    return out


class BroadcastRecorder:
    def __init__(self, encoder: SharedEncoder, path: str | Path, fps: int) -> None:
        self.path = Path(path)
        self.format, self.codec = check_record_path(self.path)
        self.encoder = encoder
        self.fps = fps
        self._ticks = VIDEO_CLOCK // fps
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="anchor-record")
        self._container: Any = None
        self._video_stream: Any = None
        self._audio_stream: Any = None
        self._first_index: int | None = None
        self.frames = 0
        self.audio_packets = 0
        self.started_at: float | None = None
        self.error = ""
        self._feed = encoder.add_feed(self.codec)
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self.started_at = time.time()
        self._tasks = [asyncio.create_task(self._video_loop(), name="anchor-record-video"),
                       asyncio.create_task(self._audio_loop(), name="anchor-record-audio")]
        log.info("recording the broadcast to %s (%s)", self.path, self.codec)

    def status(self) -> dict[str, Any]:
        return {
            "recording": bool(self._tasks) and not self._feed.closed,
            "path": str(self.path),
            "codec": self.codec,
            "frames": self.frames,
            "seconds": round(self.frames / self.fps, 3),
            "dropped_frames": self._feed.dropped_video,
            "error": self.error,
        }

    async def aclose(self) -> dict[str, Any]:
        """Stop and finalise the file (the last fragment is written); returns the status."""
        self.encoder.remove_feed(self._feed)  # ends both loops at their next get
        await asyncio.gather(*self._tasks, return_exceptions=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._pool, self._close_container)
        self._pool.shutdown(wait=True)
        status = self.status()
        log.info("recording %s closed: %d frames (%.2f s)", self.path, self.frames,
                 self.frames / self.fps)
        return status

    # -- the loops (event loop side) -----------------------------------------------------------
    async def _video_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                item = await self._feed.video.get()
            except QueueClosed:
                return
            try:
                await loop.run_in_executor(self._pool, self._mux_video, item)
            except Exception as exc:  # a full disk must not take the broadcast down
                self.error = f"{self.path}: {exc}"
                log.error("recording stopped: %s", self.error)
                self.encoder.remove_feed(self._feed)
                return

    async def _audio_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                item = await self._feed.audio.get()
            except QueueClosed:
                return
            if self._first_index is None or item.index < self._first_index:
                continue  # before the first keyframe: no picture to go with it
            try:
                await loop.run_in_executor(self._pool, self._mux_audio, item)
            except Exception as exc:
                self.error = f"{self.path}: {exc}"
                log.error("recording stopped: %s", self.error)
                self.encoder.remove_feed(self._feed)
                return

    # -- muxing (worker thread) ----------------------------------------------------------------
    def _open(self, first: EncodedVideo) -> None:
        image = first.frame.image
        h, w = image.shape[0] - image.shape[0] % 2, image.shape[1] - image.shape[1] % 2
        options = MP4_OPTIONS if self.format == "mp4" else MKV_OPTIONS
        container = av.open(str(self.path), "w", format=self.format, options=options)
        video = container.add_stream("h264" if self.codec == "h264" else "libvpx", rate=self.fps)
        video.width, video.height, video.pix_fmt = w, h, "yuv420p"
        video.time_base = Fraction(1, VIDEO_CLOCK)
        if self.codec == "h264":
            video.codec_context.extradata = h264_parameter_sets(bytes(first.packet))
        audio = container.add_stream("libopus", rate=OPUS_RATE)
        audio.codec_context.extradata = self.encoder.audio_extradata()
        audio.time_base = Fraction(1, OPUS_RATE)
        self._container, self._video_stream, self._audio_stream = container, video, audio

    def _mux_video(self, item: EncodedVideo) -> None:
        if self._container is None:
            self._open(item)
            self._first_index = item.index
        assert self._first_index is not None
        # a copy: the shared packet is still being sent to viewers
        packet = av.Packet(bytes(item.packet))
        packet.pts = packet.dts = (item.index - self._first_index) * self._ticks
        packet.time_base = Fraction(1, VIDEO_CLOCK)
        packet.is_keyframe = item.keyframe
        packet.stream = self._video_stream
        self._container.mux(packet)
        self.frames += 1

    def _mux_audio(self, item: EncodedAudio) -> None:
        if self._container is None or self._first_index is None:
            return
        start = self._first_index * OPUS_RATE // self.fps
        packet = av.Packet(bytes(item.packet))
        packet.pts = packet.dts = int(item.packet.pts or 0) - start
        packet.time_base = Fraction(1, OPUS_RATE)
        packet.stream = self._audio_stream
        self._container.mux(packet)
        self.audio_packets += 1

    def _close_container(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
