"""A live run of the real pipeline, as the server runs it, instrumented for the benchmarks.

`run_live` starts an `AnchorSession` (anchor.pipeline.session) on an avatar, feeds audio at 1x
real time in 20 ms chunks into a live input (as a microphone would), and plays one viewer that
encodes every frame it receives with aiortc's VP8 encoder in its own thread (as an aiortc video
track's sender does). Every released frame keeps its pipeline stamps plus the viewer's
`sent` stamp (encoded) and how open the mouth the renderer was asked to draw is.

The mouth opening comes from a thin wrapper around the avatar engine that records, for every
image it makes, the inner-lip gap of the generated mouth (normalised units, relative to the
template's own mouth); idle images record 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from anchor.config import AnchorConfig
from anchor.pipeline.items import (
    STAMP_ANALYSED,
    STAMP_AUDIO_IN,
    STAMP_OUT,
    STAMP_RENDER_START,
    STAMP_RENDERED,
)

log = logging.getLogger(__name__)

STAMP_SENT = "sent"
# dlib 68: inner upper lip 61..63 against inner lower lip 67..65, as offsets in the 20 mouth points
INNER_UPPER = (13, 14, 15)
INNER_LOWER = (19, 18, 17)


def inner_lip_gap(mouth40: np.ndarray) -> float:
    pts = np.asarray(mouth40, dtype=np.float64).reshape(20, 2)
    return float(np.mean(np.linalg.norm(pts[list(INNER_UPPER)] - pts[list(INNER_LOWER)], axis=1)))


def _luma(rgb: np.ndarray) -> np.ndarray:
    x = np.asarray(rgb, dtype=np.float32)
    return 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]


class RecordingEngine:
    """Wraps an AvatarEngine; remembers the mouth opening of every image it returns (by id).

    The pipeline draws maps and runs the renderer in one worker and composites in another:
    `maps` computes the openings of its batch and `compose` (called in the same order) attaches
    them to the images it makes. Thread-safe.
    """

    def __init__(self, inner: Any, keep: int = 4096) -> None:
        self.inner = inner
        self.keep = keep
        self.openness: OrderedDict[int, float] = OrderedDict()
        self._pending: deque[tuple[tuple[int, ...], list[float]]] = deque()
        self._lock = threading.Lock()
        self._closed_gap: dict[int, float] = {}
        self._rois: dict[int, tuple[slice, slice, float, float]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @property
    def frame_size(self) -> tuple[int, int]:
        return tuple(self.inner.frame_size)  # type: ignore[return-value]

    @property
    def idle_loop(self) -> Any:
        return self.inner.idle_loop

    def _remember(self, image: np.ndarray, value: float) -> None:
        with self._lock:
            self.openness[id(image)] = value
            self.openness.move_to_end(id(image))
            while len(self.openness) > self.keep:
                self.openness.popitem(last=False)

    def mouth_opening(self, features: np.ndarray, template_index: int) -> float:
        b = self.inner.builder
        t = template_index % self.inner.n_templates
        template = self.inner.bundle.templates[t]
        if t not in self._closed_gap:
            self._closed_gap[t] = inner_lip_gap(
                b.mouth_normalised(template, np.zeros_like(features)))
        return inner_lip_gap(b.mouth_normalised(template, features)) - self._closed_gap[t]

    def _openings(self, mouth_features: np.ndarray,
                  template_indices: Sequence[int] | np.ndarray) -> tuple[tuple[int, ...], list[float]]:
        tidx = tuple(int(t) for t in np.asarray(template_indices).reshape(-1))
        feats = np.asarray(mouth_features, dtype=np.float32).reshape(len(tidx), -1)
        return tidx, [self.mouth_opening(f, t) for f, t in zip(feats, tidx, strict=True)]

    def maps(self, mouth_features: np.ndarray,
             template_indices: Sequence[int] | np.ndarray) -> np.ndarray:
        out = self.inner.maps(mouth_features, template_indices)
        entry = self._openings(mouth_features, template_indices)
        with self._lock:
            self._pending.append(entry)
        return out  # type: ignore[no-any-return]

    def compose(self, faces: np.ndarray,
                template_indices: Sequence[int] | np.ndarray) -> list[np.ndarray]:
        images: list[np.ndarray] = self.inner.compose(faces, template_indices)
        key = tuple(int(t) for t in np.asarray(template_indices).reshape(-1))
        values: list[float] = [0.0] * len(images)
        with self._lock:
            while self._pending:  # FIFO: composited in the order the maps were drawn
                k, found = self._pending.popleft()
                if k == key:
                    values = found
                    break
        for img, value in zip(images, values, strict=True):
            self._remember(img, value)
        return images

    def render_frames(self, mouth_features: np.ndarray,
                      template_indices: Sequence[int] | np.ndarray) -> list[np.ndarray]:
        images: list[np.ndarray] = self.inner.render_frames(mouth_features, template_indices)
        _, values = self._openings(mouth_features, template_indices)
        for img, value in zip(images, values, strict=True):
            self._remember(img, value)
        return images

    def idle_frame_at(self, counter: int) -> np.ndarray:
        image: np.ndarray = self.inner.idle_frame_at(counter)
        self._remember(image, 0.0)
        return image

    def warmup(self) -> None:
        self.inner.warmup()

    def close(self) -> None:
        self.inner.close()

    def _mouth_roi(self, template_index: int) -> tuple[slice, slice, float, float]:
        """Frame-pixel box around the template's mouth, the luma below which a pixel counts
        as mouth interior, and the idle frame's fraction of such pixels."""
        if template_index in self._rois:
            return self._rois[template_index]
        bundle = self.inner.bundle
        template = bundle.templates[template_index]
        x0, y0, x1, y1 = (float(v) for v in bundle.body.face_boxes[template_index])
        k = (x1 - x0) / template.size
        pts = np.asarray(template.crop_landmarks[48:68], dtype=np.float64) * k + (x0, y0)
        (mx0, my0), (mx1, my1) = pts.min(axis=0), pts.max(axis=0)
        w = mx1 - mx0
        h, wd = bundle.body.height, bundle.body.width
        ys = slice(int(max(0, my0 - 0.1 * w)), int(min(h, my1 + 0.45 * w)))  # opens downwards
        xs = slice(int(max(0, mx0 - 0.1 * w)), int(min(wd, mx1 + 0.1 * w)))
        idle = _luma(self.inner.compositor.base_frame(template_index)[ys, xs])
        dark = 0.8 * float(np.percentile(idle, 5)) if idle.size else 0.0
        base = float(np.mean(idle < dark)) if idle.size else 0.0
        self._rois[template_index] = (ys, xs, dark, base)
        return self._rois[template_index]

    def image_opening(self, image: np.ndarray, output_index: int) -> float:
        """Fraction of the mouth box darker than the idle face's darkest pixels, minus the idle
        frame's own: what a viewer sees of an open mouth, measured on the frame that left."""
        tidx = int(self.inner.idle_loop.index(output_index)) % self.inner.n_templates
        ys, xs, dark, base = self._mouth_roi(tidx)
        roi = _luma(image[ys, xs])
        return float(np.mean(roi < dark)) - base if roi.size else 0.0


class Vp8FrameEncoder:
    """aiortc's VP8 encoder on RGB frames, timed (what a viewer's video track pays per frame)."""

    def __init__(self, fps: int) -> None:
        from aiortc.codecs.vpx import Vp8Encoder

        self.encoder = Vp8Encoder()
        self.fps = fps
        self.n = 0
        self.bytes = 0

    def encode(self, rgb: np.ndarray) -> float:
        import av

        t0 = time.perf_counter()
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[:, :, :3]), format="rgb24")
        frame.pts = self.n * (90000 // self.fps)
        frame.time_base = Fraction(1, 90000)
        payloads, _ = self.encoder.encode(frame, force_keyframe=self.n == 0)
        self.n += 1
        self.bytes += sum(len(p) for p in payloads)
        return time.perf_counter() - t0


@dataclass
class LiveFrame:
    index: int
    speech: bool
    stamps: dict[str, float]
    opening: float  # generated mouth: inner-lip gap of the features drawn
    encode_s: float
    image_opening: float = 0.0  # the frame itself: dark-pixel growth in the mouth box


@dataclass
class LiveRun:
    frames: list[LiveFrame]
    chunk_arrivals: list[float]  # monotonic time chunk j was pushed
    chunk_samples: int
    sample_rate: int
    fps: int
    start: float  # monotonic time of the first push
    stats: dict[str, Any]
    viewer_dropped: int
    encoded_bytes: int
    lookahead_ms: float
    hop_frames: int
    live_latency_ms: float
    info: dict[str, Any] = field(default_factory=dict)

    def input_frame(self, frame: LiveFrame) -> int | None:
        """Index of the input frame (the live segment's own timeline) an output frame shows."""
        t_in = frame.stamps.get(STAMP_AUDIO_IN)
        if t_in is None:
            return None
        if not hasattr(self, "_chunk_of"):
            self._chunk_of = {t: j for j, t in enumerate(self.chunk_arrivals)}
        j = self._chunk_of.get(t_in)
        return None if j is None else j * self.chunk_samples // (self.sample_rate // self.fps)

    def arrival_of_sample(self, sample: int) -> float | None:
        """When the chunk holding input sample `sample` was pushed."""
        j = sample // self.chunk_samples
        return self.chunk_arrivals[j] if 0 <= j < len(self.chunk_arrivals) else None


def load_pipeline_models(bundle_path: Path, cfg: AnchorConfig) -> Any:
    """The server's models for a bundle, with the live TCN windows (server.hop_frames,
    server.lookahead_frames)."""
    from anchor.pipeline.models import load_models

    models = load_models(bundle_path, cfg, live=True)
    models.engine = RecordingEngine(models.engine)
    return models


async def _run_live(models: Any, cfg: AnchorConfig, audio: np.ndarray, chunk_ms: int,
                    tail_s: float, encode: bool) -> LiveRun:
    from anchor.pipeline.queues import QueueClosed
    from anchor.pipeline.session import AnchorSession

    session = AnchorSession(models, cfg.server)
    engine: RecordingEngine = models.engine
    frames: list[LiveFrame] = []
    pool = ThreadPoolExecutor(1, thread_name_prefix="bench-encoder")
    encoder = Vp8FrameEncoder(models.fps) if encode else None
    loop = asyncio.get_running_loop()
    await session.start()
    sub = session.subscribe()
    started = asyncio.Event()

    async def viewer() -> None:
        while True:
            try:
                frame = await sub.video.get()
            except QueueClosed:
                return
            while sub.audio.get_nowait() is not None:
                pass
            enc = await loop.run_in_executor(pool, encoder.encode, frame.image) if encoder else 0.0
            stamps = dict(frame.timestamps)
            stamps[STAMP_SENT] = time.monotonic()
            if started.is_set():
                frames.append(LiveFrame(frame.index, frame.speech, stamps,
                                        engine.openness.get(id(frame.image), 0.0), enc,
                                        engine.image_opening(frame.image, frame.index)))

    viewer_task = asyncio.create_task(viewer())
    sr = models.audio.sample_rate
    n = sr * chunk_ms // 1000
    arrivals: list[float] = []
    await asyncio.sleep(0.3)  # let the idle loop settle before the microphone opens
    inp = session.open_input("bench-mic", sr, live=True)
    t0 = time.monotonic()
    started.set()
    try:
        for j in range(0, len(audio) // n):
            due = t0 + j * chunk_ms / 1000
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            now = time.monotonic()
            arrivals.append(now)
            await inp.push(audio[j * n : (j + 1) * n], now)
        await inp.close()
        await asyncio.sleep(tail_s)
        stats = session.stats()
    finally:
        dropped = sub.video.dropped
        await session.aclose()
        viewer_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await viewer_task
        pool.shutdown(wait=True)
    return LiveRun(
        frames=frames, chunk_arrivals=arrivals, chunk_samples=n, sample_rate=sr, fps=models.fps,
        start=t0, stats=stats, viewer_dropped=dropped,
        encoded_bytes=encoder.bytes if encoder else 0, lookahead_ms=models.lookahead_ms,
        hop_frames=models.streaming.hop_frames, live_latency_ms=1000 * session.live_latency_s,
        info=dict(models.info),
    )


def run_live(models: Any, cfg: AnchorConfig, audio: np.ndarray, *, chunk_ms: int = 20,
             tail_s: float | None = None, encode: bool = True) -> LiveRun:
    """Feed `audio` (16 kHz mono float32) live through a session and record what leaves it."""
    streaming = models.streaming
    if tail_s is None:
        tail_s = (streaming.hop_frames + streaming.right_context_frames) / models.fps + 1.0
    return asyncio.run(_run_live(models, cfg, audio, chunk_ms, tail_s, encode))


# --------------------------------------------------------------------------------------------
# per-frame bookkeeping


def needed_sample(index: int, models_streaming: Any, audio_cfg: Any, fps: int) -> int:
    """Last input sample (exclusive) the analysis needs before frame `index` can be produced:
    the end of the MFCC rows of the last frame its TCN window reads."""
    from anchor.mouth.streaming import frames_available_for

    last_frame = frames_available_for(index, models_streaming)  # frames of audio needed
    rows = 4 * last_frame
    return audio_cfg.hop_samples * (rows - 1) + audio_cfg.win_samples


def frame_splits(run: LiveRun, frame: LiveFrame, streaming: Any,
                 audio_cfg: Any) -> dict[str, float] | None:
    """Seconds of one speech frame's audio-in -> sent latency spent in each part."""
    input_index = run.input_frame(frame)
    if input_index is None:
        return None
    s = frame.stamps
    keys = (STAMP_AUDIO_IN, STAMP_ANALYSED, STAMP_RENDER_START, STAMP_RENDERED, STAMP_OUT,
            STAMP_SENT)
    if any(k not in s for k in keys):
        return None
    ready = run.arrival_of_sample(needed_sample(input_index, streaming, audio_cfg, run.fps) - 1)
    if ready is None:  # needed audio beyond the input: padded at segment end
        return None
    lookahead = max(0.0, ready - s[STAMP_AUDIO_IN])
    analysis = max(0.0, s[STAMP_ANALYSED] - max(ready, s[STAMP_AUDIO_IN]))
    return {
        "total": s[STAMP_SENT] - s[STAMP_AUDIO_IN],
        "lookahead": lookahead,
        "analysis_compute": analysis,
        "render_queue": s[STAMP_RENDER_START] - s[STAMP_ANALYSED],
        "render_compute": s[STAMP_RENDERED] - s[STAMP_RENDER_START],
        "playout_wait": s[STAMP_OUT] - s[STAMP_RENDERED],
        "viewer_queue": s[STAMP_SENT] - s[STAMP_OUT] - frame.encode_s,
        "encode": frame.encode_s,
    }
