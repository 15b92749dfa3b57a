"""One pipeline for live and offline: its stages, every queue between them and their threads.

    [audio] -> AnalysisStage -> [features] -> RenderStage -> [playout] -> Player (live)
                                                                        -> the caller's sink (offline)

`Pipeline` builds the same stages for both; what differs is the pacer: live, the render stage
schedules frames on the media clock and fills gaps with the idle loop, and the `Player` releases
each frame at its deadline; offline, frames are made back to back and the caller drains the
playout queue into a file. Every queue is declared here, in `QueuePlan`, sized in milliseconds
of media with its policy and the reason for it:

| queue    | policy | live size                                   | offline | why |
|----------|--------|---------------------------------------------|---------|-----|
| audio    | BLOCK  | server.audio_queue_ms (2 s)                 | 2 s     | speech is never dropped silently; a pusher faster than real time waits |
| features | BLOCK  | max(audio_queue_ms, live latency + 500 ms)  | 2 s     | holds the lookahead + jitter budget of analysed frames waiting for their deadline |
| playout  | BLOCK  | server.video_queue_ms (200 ms)              | 1 s     | rendered frames ahead of the player; the render stage paces itself against it |

Per-viewer queues (latest-wins video, drop-oldest audio) live in the fan-out and the shared
encoder, after the player (anchor/pipeline/fanout.py, anchor/stream/encoder.py).

Worker threads: one each for analysis (MFCC/VAD/TCN), rendering (facial map + renderer; may be
shared by several channels' pipelines) and compositing, so the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from anchor.clock import MediaClock
from anchor.config import PlannerConfig, ServerConfig
from anchor.pipeline.analysis import SpeechAnalyzer
from anchor.pipeline.items import OutputFrame
from anchor.pipeline.models import PipelineModels
from anchor.pipeline.observers import ObserverList
from anchor.pipeline.queues import DropPolicy, MediaQueue
from anchor.pipeline.stages import (
    AnalysisStage,
    AudioItem,
    FeatureItem,
    Player,
    PlayoutItem,
    RenderStage,
    audio_item_ms,
    frame_item_ms,
)


class Stage(Protocol):
    """What the runner needs of a stage: a name and `run()`, the loop from its input queue to
    its output (it returns at EndOfStream). Stages reset themselves on the control items that
    reach them (SegmentStart, SegmentEnd) and the session resets them on interrupt."""

    name: str

    async def run(self) -> None: ...


OFFLINE_MAX_BATCH = 4  # offline renders several frames per renderer call
LIVE_MAX_BATCH = 1  # live frames go one by one, each as soon as its features exist


@dataclass(frozen=True)
class QueuePlan:
    """The capacity (ms of media) of each queue of one pipeline (see the module table)."""

    audio_ms: float
    features_ms: float
    playout_ms: float

    @classmethod
    def live(cls, server: ServerConfig, live_latency_s: float) -> QueuePlan:
        return cls(
            audio_ms=float(server.audio_queue_ms),
            features_ms=max(float(server.audio_queue_ms), 1000.0 * live_latency_s + 500.0),
            playout_ms=float(server.video_queue_ms),
        )

    @classmethod
    def offline(cls) -> QueuePlan:
        return cls(audio_ms=2000.0, features_ms=2000.0, playout_ms=1000.0)


class Pipeline:
    """The stages and queues of one avatar's pipeline, live (`clock`, `publish`) or offline."""

    def __init__(
        self,
        models: PipelineModels,
        plan: QueuePlan,
        *,
        observers: ObserverList,
        live: bool,
        clock: MediaClock | None = None,
        publish: Callable[[OutputFrame], None] | None = None,
        live_latency_s: float = 0.0,
        resync_frames: int = 3,
        max_batch: int | None = None,
        render_executor: ThreadPoolExecutor | None = None,
        planner: PlannerConfig | None = None,
    ) -> None:
        if live and (clock is None or publish is None):
            raise ValueError("a live pipeline needs the media clock and a publish callback")
        self.models = models
        self.plan = plan
        self.live = live
        rate, fps = models.audio.sample_rate, models.fps
        self.audio_queue: MediaQueue[AudioItem] = MediaQueue(
            "audio", plan.audio_ms, DropPolicy.BLOCK, audio_item_ms(rate))
        self.feature_queue: MediaQueue[FeatureItem] = MediaQueue(
            "features", plan.features_ms, DropPolicy.BLOCK, frame_item_ms(fps))
        self.playout_queue: MediaQueue[PlayoutItem] = MediaQueue(
            "playout", plan.playout_ms, DropPolicy.BLOCK, frame_item_ms(fps))
        self.analysis_pool = ThreadPoolExecutor(1, thread_name_prefix="anchor-analysis")
        self.owns_render_pool = render_executor is None
        self.render_pool = render_executor or ThreadPoolExecutor(
            1, thread_name_prefix="anchor-render")
        self.compose_pool = ThreadPoolExecutor(1, thread_name_prefix="anchor-compose")
        time_fn = clock.monotonic if clock is not None else time.monotonic
        self.analyzer = SpeechAnalyzer(
            models.audio, models.streaming, models.mouth_model, models.infer, fps=fps,
            shaper=models.shaper, time_fn=time_fn,
        )
        self.analysis = AnalysisStage(
            self.analyzer, self.analysis_pool, self.audio_queue, self.feature_queue)
        batch = max_batch if max_batch is not None else (
            LIVE_MAX_BATCH if live else OFFLINE_MAX_BATCH)
        self.render = RenderStage(
            models.engine, self.render_pool, self.feature_queue, self.playout_queue, fps=fps,
            samples_per_frame=models.samples_per_frame, clock=clock, live=live,
            live_latency_s=live_latency_s, max_batch=batch, observers=observers,
            compose_executor=self.compose_pool, motion=models.new_motion(),
            warper=models.warper, time_fn=time_fn, planner=planner,
        )
        self.player: Player | None = None
        if live:
            assert clock is not None and publish is not None
            self.player = Player(self.playout_queue, clock, fps, publish,
                                 resync_frames=resync_frames, observers=observers)

    def stages(self) -> list[tuple[str, Callable[[], Coroutine[Any, Any, None]]]]:
        """(name, run) of every stage, in the order the data flows."""
        chain: list[Stage] = [self.analysis, self.render]
        if self.player is not None:
            chain.append(self.player)
        return [(s.name, s.run) for s in chain]

    async def warm_up(self) -> None:
        """Pay one-time costs (first MFCC/VAD/TCN call, first idle frame) before a clock
        starts, so they cannot make the first live frames late."""
        loop = asyncio.get_running_loop()
        rate = self.models.audio.sample_rate

        def analysis() -> None:
            self.analyzer.push(np.zeros(rate // 2, np.float32), 0.0)
            self.analyzer.finish()

        await asyncio.gather(
            loop.run_in_executor(self.analysis_pool, analysis),
            loop.run_in_executor(self.compose_pool, self.models.engine.idle_frame_at, 0),
        )

    def flush(self) -> int:
        """Empty every queue (an interrupt); the number of items dropped."""
        return self.audio_queue.flush() + self.feature_queue.flush() + self.playout_queue.flush()

    def close_queues(self) -> None:
        for q in (self.audio_queue, self.feature_queue, self.playout_queue):
            q.close()  # a source still pushing gets QueueClosed, not a hang

    def shutdown(self, wait: bool) -> None:
        """Stop the worker threads (a shared render worker is left to its owner)."""
        self.analysis_pool.shutdown(wait=wait, cancel_futures=not wait)
        if self.owns_render_pool:
            self.render_pool.shutdown(wait=wait, cancel_futures=not wait)
        self.compose_pool.shutdown(wait=wait, cancel_futures=not wait)
