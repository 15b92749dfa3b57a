"""Observers: per-stage timestamps keyed by frame index, outside the data path.

Stages stamp each item's `timestamps` dict as it passes (see anchor.pipeline.items); when the
player releases frame n it hands the frame to every observer. `StageRecorder` keeps the last few
thousand frames' stamps and derives per-stage latency, fps and event counts for /metrics, the
web client and the benchmarks. Observers must be cheap and must never raise into the pipeline.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, OrderedDict, deque
from typing import Protocol

from anchor.pipeline.items import (
    STAMP_ANALYSED,
    STAMP_AUDIO_IN,
    STAMP_OUT,
    STAMP_RENDER_START,
    STAMP_RENDERED,
    OutputFrame,
)

log = logging.getLogger(__name__)

# (latency name, from stamp, to stamp)
STAGE_SPANS: tuple[tuple[str, str, str], ...] = (
    ("analysis", STAMP_AUDIO_IN, STAMP_ANALYSED),  # waiting for lookahead + MFCC/TCN compute
    ("render_wait", STAMP_ANALYSED, STAMP_RENDER_START),  # queued before the render worker
    ("render", STAMP_RENDER_START, STAMP_RENDERED),  # map + renderer + compositor
    ("playout", STAMP_RENDERED, STAMP_OUT),  # jitter buffer: waiting for the frame's deadline
    ("total", STAMP_AUDIO_IN, STAMP_OUT),  # audio in -> frame out
)


def stage_latencies(timestamps: dict[str, float]) -> dict[str, float]:
    """Seconds spent in each span whose two stamps exist."""
    out: dict[str, float] = {}
    for name, a, b in STAGE_SPANS:
        if a in timestamps and b in timestamps:
            out[name] = timestamps[b] - timestamps[a]
    return out


class PipelineObserver(Protocol):
    def on_frame(self, frame: OutputFrame) -> None:
        """Frame released by the player (or written by the offline sink)."""

    def on_event(self, name: str, count: int = 1) -> None:
        """Something countable happened: underrun, resync, skipped, interrupt, ..."""


class ObserverList:
    """Fans out to observers; an observer that raises is logged and never breaks the stream."""

    def __init__(self, observers: list[PipelineObserver] | None = None) -> None:
        self.observers: list[PipelineObserver] = list(observers or [])

    def add(self, observer: PipelineObserver) -> None:
        self.observers.append(observer)

    def remove(self, observer: PipelineObserver) -> None:
        if observer in self.observers:
            self.observers.remove(observer)

    def on_frame(self, frame: OutputFrame) -> None:
        for obs in self.observers:
            try:
                obs.on_frame(frame)
            except Exception:  # an observer must never take the stream down
                log.exception("observer %r failed on frame %d", obs, frame.index)

    def on_event(self, name: str, count: int = 1) -> None:
        for obs in self.observers:
            try:
                obs.on_event(name, count)
            except Exception:
                log.exception("observer %r failed on event %s", obs, name)


class StageRecorder:
    """Keeps per-frame stamps (keyed by output frame index) and running statistics."""

    def __init__(self, keep_frames: int = 3000, fps_window_s: float = 2.0) -> None:
        self.keep_frames = keep_frames
        self.fps_window_s = fps_window_s
        self.frames: OrderedDict[int, dict[str, float]] = OrderedDict()
        self.speech: dict[int, bool] = {}
        self.events: Counter[str] = Counter()
        self.frames_out = 0
        self.speech_frames_out = 0
        self._out_times: deque[float] = deque()

    def on_frame(self, frame: OutputFrame) -> None:
        stamps = dict(frame.timestamps)
        self.frames[frame.index] = stamps
        self.speech[frame.index] = frame.speech
        while len(self.frames) > self.keep_frames:
            old, _ = self.frames.popitem(last=False)
            self.speech.pop(old, None)
        self.frames_out += 1
        self.speech_frames_out += int(frame.speech)
        t = stamps.get(STAMP_OUT)
        if t is not None:
            self._out_times.append(t)
            while self._out_times and t - self._out_times[0] > self.fps_window_s:
                self._out_times.popleft()

    def on_event(self, name: str, count: int = 1) -> None:
        self.events[name] += count

    def fps(self) -> float:
        """Frames released per second over the recent window."""
        if len(self._out_times) < 2:
            return 0.0
        span = self._out_times[-1] - self._out_times[0]
        return (len(self._out_times) - 1) / span if span > 0 else 0.0

    def latencies(self, speech_only: bool = True, last: int = 250) -> dict[str, list[float]]:
        """Per-span latencies (seconds) of the most recent frames."""
        out: dict[str, list[float]] = {name: [] for name, _, _ in STAGE_SPANS}
        items = list(self.frames.items())[-last:]
        for index, stamps in items:
            if speech_only and not self.speech.get(index, False):
                continue
            for name, value in stage_latencies(stamps).items():
                out[name].append(value)
        return out

    def summary(self, last: int = 250) -> dict[str, float | int]:
        """Medians of each span over recent speech frames, fps and counters (JSON-friendly)."""
        out: dict[str, float | int] = {
            "fps": round(self.fps(), 2),
            "frames_out": self.frames_out,
            "speech_frames_out": self.speech_frames_out,
        }
        for name, values in self.latencies(last=last).items():
            if values:
                out[f"{name}_ms_p50"] = round(1000 * percentile(values, 50), 1)
                out[f"{name}_ms_p95"] = round(1000 * percentile(values, 95), 1)
        for name, count in sorted(self.events.items()):
            out[name] = count
        return out


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of a non-empty list."""
    s = sorted(values)
    if not s:
        return math.nan
    pos = (len(s) - 1) * q / 100.0
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)
