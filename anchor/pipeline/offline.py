"""Offline rendering with the live stages: audio file -> analysis -> render -> MP4.

The same `AnalysisStage` and `RenderStage` classes the server runs, unpaced (no clock, no idle
fill): the file is one segment, frames are written as fast as they are rendered, and the MP4
sink replaces the player. Frame n carries audio samples [n*640, (n+1)*640), so the audio and
video tracks have the same length up to AAC framing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anchor.mouth.visemes import SpeechCues
from anchor.pipeline.items import (
    STAMP_OUT,
    EndOfStream,
    InputAudio,
    OutputFrame,
    SegmentEnd,
    SegmentStart,
)
from anchor.pipeline.models import PipelineModels
from anchor.pipeline.observers import ObserverList, PipelineObserver, StageRecorder
from anchor.pipeline.runner import Pipeline, QueuePlan
from anchor.pipeline.sinks import Mp4Writer
from anchor.pipeline.stages import (
    run_until_first_failure,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RenderResult:
    path: Path | None
    frames: int
    speech_frames: int
    duration_s: float
    elapsed_s: float
    lookahead_ms: float

    @property
    def render_fps(self) -> float:
        return self.frames / self.elapsed_s if self.elapsed_s > 0 else 0.0


async def run_offline(
    samples: np.ndarray,
    models: PipelineModels,
    sink: Callable[[OutputFrame], None],
    *,
    chunk_ms: int = 200,
    max_batch: int = 4,
    observers: list[PipelineObserver] | None = None,
    source: str = "file",
    cues: SpeechCues | None = None,
) -> int:
    """Push `samples` (16 kHz mono float32) through the stages; `sink(frame)` runs in a worker
    thread for every frame in order. Returns the number of frames. `cues`: the TTS's phoneme and
    word timings of a synthesised text (seconds from the first sample)."""
    rate = models.audio.sample_rate
    obs = ObserverList(list(observers or []))
    # The same stages and queues as live (anchor.pipeline.runner), unpaced, drained here.
    pipeline = Pipeline(models, QueuePlan.offline(), observers=obs, live=False,
                        max_batch=max_batch)
    audio_q, out_q = pipeline.audio_queue, pipeline.playout_queue
    sink_pool = ThreadPoolExecutor(1, thread_name_prefix="anchor-sink")
    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    chunk = max(1, rate * chunk_ms // 1000)
    count = 0

    async def feed() -> None:
        now = time.monotonic()
        await audio_q.put(SegmentStart(source, now, False, rate, cues))
        for i in range(0, len(x), chunk):
            await audio_q.put(InputAudio(x[i : i + chunk], time.monotonic()))
        await audio_q.put(SegmentEnd(source))
        await audio_q.put(EndOfStream())

    async def drain() -> None:
        nonlocal count
        loop = asyncio.get_running_loop()
        while True:
            item = await out_q.get()
            if isinstance(item, EndOfStream):
                return
            await loop.run_in_executor(sink_pool, sink, item)
            item.timestamps[STAMP_OUT] = time.monotonic()
            obs.on_frame(item)
            count += 1

    try:
        await run_until_first_failure([feed(), *(run() for _n, run in pipeline.stages()),
                                       drain()])
    finally:
        pipeline.shutdown(wait=True)
        sink_pool.shutdown(wait=True)
    return count


def render_samples_to_mp4(
    samples: np.ndarray,
    out: str | Path,
    models: PipelineModels,
    *,
    progress: bool = False,
    max_batch: int = 4,
    cues: SpeechCues | None = None,
) -> RenderResult:
    """16 kHz mono samples -> MP4 at `out` (atomically), rendered by the pipeline stages."""
    width, height = models.engine.frame_size
    n_expected = -(-len(samples) // models.samples_per_frame)
    writer = Mp4Writer(
        out, fps=models.fps, sample_rate=models.audio.sample_rate, width=width, height=height
    )
    recorder = StageRecorder(keep_frames=1)
    bar = None
    if progress:
        from anchor.progress import progress_bar

        bar = progress_bar(total=n_expected, unit="frame", desc=f"render {Path(out).name}")

    def sink(frame: OutputFrame) -> None:
        writer.write(frame.image, frame.audio)
        if bar is not None:
            bar.update(1)

    t0 = time.monotonic()
    try:
        n = asyncio.run(
            run_offline(samples, models, sink, max_batch=max_batch, observers=[recorder],
                        cues=cues)
        )
        path = writer.close()
    except BaseException:
        writer.abort()
        raise
    finally:
        if bar is not None:
            bar.close()
    elapsed = time.monotonic() - t0
    return RenderResult(
        path=path, frames=n, speech_frames=recorder.speech_frames_out,
        duration_s=n / models.fps, elapsed_s=elapsed, lookahead_ms=models.lookahead_ms,
    )


def render_file_to_mp4(
    audio: str | Path, out: str | Path, models: PipelineModels, *, progress: bool = False
) -> RenderResult:
    from anchor.audio.decode import decode_audio

    samples = decode_audio(audio, models.audio.sample_rate)
    return render_samples_to_mp4(samples, out, models, progress=progress)
