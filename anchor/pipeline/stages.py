"""The pipeline's asyncio stages. Each owns a loop `run()` between two `MediaQueue`s; blocking work
runs in dedicated worker threads via `run_in_executor` (analysis; facial maps + renderer;
compositing), so the event loop never blocks.

    [audio queue] -> AnalysisStage -> [feature queue] -> RenderStage -> [playout queue] -> Player

- AnalysisStage: VAD + streaming MFCC + sliding TCN (`SpeechAnalyzer`) -> `SpeechFrame`s.
- RenderStage: assigns every frame its index n on the output timeline and renders it (facial map
  -> renderer in the render worker, compositor in the compose worker, so frame n is composited
  while frame n+1 is inferred; an emitter task keeps the order). Live, it fills time between segments with the idle
  loop, starts a live segment `live_latency` after its first sample was captured, and on an
  underrun (a frame not analysed by its deadline) repeats the last image with silence instead of
  stalling everyone. A live source that pauses (sends nothing for a while, its segment still
  open) re-plans the segment from the audio's own arrival when it goes on, so nothing it sends
  afterwards counts as late. When it falls behind real time it repeats the previous image
  instead of rendering (audio stays whole), and when a stall of ours has pushed a live segment
  later than its schedule it drops silent frames until it is back on time, and speech only
  beyond `max_behind_s`; each such frame is counted (`late_drops`). Offline it renders the
  segments back to back and stops at EndOfStream. Every one of these timing decisions is
  `FramePlanner`'s (planner.py, constants in config section `planner`); the stage only waits,
  submits work and emits frames.
- Player: releases frame n at clock deadline n / fps (absolute deadlines, so error never
  accumulates) and resyncs the clock with a warning when more than `resync_frames` late.

Audio rides inside each frame (frame n carries samples [n*640, (n+1)*640)), so sound leaves
with its lips: the audio is delayed by exactly the video path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np

from anchor.clock import MediaClock
from anchor.compose.motion import REST, HeadWarper, MotionDirector, Pose
from anchor.config import PlannerConfig
from anchor.pipeline.analysis import SpeechAnalyzer
from anchor.pipeline.items import (
    STAMP_OUT,
    STAMP_RENDER_START,
    STAMP_RENDERED,
    EndOfStream,
    InputAudio,
    OutputFrame,
    SegmentEnd,
    SegmentStart,
    SpeechFrame,
)
from anchor.pipeline.observers import ObserverList
from anchor.pipeline.planner import STAMP_PACED_IN, FramePlanner
from anchor.pipeline.queues import MediaQueue
from anchor.render.engine import FrameEngine

log = logging.getLogger(__name__)

AudioItem = InputAudio | SegmentStart | SegmentEnd | EndOfStream
FeatureItem = SpeechFrame | SegmentStart | SegmentEnd | EndOfStream
PlayoutItem = OutputFrame | EndOfStream



def audio_item_ms(sample_rate: int) -> Callable[[AudioItem], float]:
    def duration(item: AudioItem) -> float:
        return len(item.samples) * 1000.0 / sample_rate if isinstance(item, InputAudio) else 0.0

    return duration


def frame_item_ms(fps: int) -> Callable[[FeatureItem | PlayoutItem], float]:
    def duration(item: FeatureItem | PlayoutItem) -> float:
        return 1000.0 / fps if isinstance(item, SpeechFrame | OutputFrame) else 0.0

    return duration



async def run_until_first_failure(coros: list[Coroutine[Any, Any, Any]]) -> None:
    """Run coroutines as tasks until all finish; the first failure cancels the rest and is raised.

    Stages joined by queues would otherwise wait forever on a neighbour that died.
    """
    tasks = [asyncio.create_task(c) for c in coros]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for t in done:
            exc = t.exception()
            if exc is not None:
                raise exc
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

class AnalysisStage:
    """InputAudio -> SpeechFrames, one segment at a time, in the analysis worker thread."""

    name = "analysis"

    def __init__(
        self,
        analyzer: SpeechAnalyzer,
        executor: Executor,
        inq: MediaQueue[AudioItem],
        outq: MediaQueue[FeatureItem],
    ) -> None:
        self.analyzer = analyzer
        self.executor = executor
        self.inq = inq
        self.outq = outq
        self._received = 0  # samples of the current segment so far
        self._last_arrival: float | None = None  # of its latest audio

    async def reset(self) -> None:
        """Forget the current segment (after the in-flight worker call, which it queues behind)."""
        self._received, self._last_arrival = 0, None
        await asyncio.get_running_loop().run_in_executor(self.executor, self.analyzer.reset)

    def _begin(self, seg: SegmentStart) -> None:
        self.analyzer.reset()
        self.analyzer.begin(seg.cues)

    def _stamp_paced(self, frames: list[SpeechFrame]) -> None:
        """STAMP_PACED_IN: the latest arrival minus the audio received since the frame began."""
        if self._last_arrival is None:
            return
        spf, rate = self.analyzer.samples_per_frame, self.analyzer.audio_cfg.sample_rate
        for f in frames:
            ahead = max(0, self._received - f.index * spf)
            f.timestamps[STAMP_PACED_IN] = self._last_arrival - ahead / rate

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            item = await self.inq.get()
            if isinstance(item, InputAudio):
                frames = await loop.run_in_executor(
                    self.executor, self.analyzer.push, item.samples, item.arrival
                )
                self._received += len(item.samples)
                self._last_arrival = item.arrival
                self._stamp_paced(frames)
                for f in frames:
                    await self.outq.put(f)
            elif isinstance(item, SegmentStart):
                await loop.run_in_executor(self.executor, self._begin, item)
                self._received, self._last_arrival = 0, None
                await self.outq.put(item)
            elif isinstance(item, SegmentEnd):
                frames = await loop.run_in_executor(self.executor, self.analyzer.finish)
                self._stamp_paced(frames)
                self._received, self._last_arrival = 0, None
                for f in frames:
                    await self.outq.put(f)
                await self.outq.put(item)
            elif isinstance(item, EndOfStream):
                await self.outq.put(item)
                return


@dataclass
class _Job:
    """One output frame on its way to the playout queue, in order.

    `image` is ready, or a pending compose future (with the frame's position in its batch), or
    None: repeat the last speech image (a skipped render or an underrun hold)."""

    index: int
    audio: np.ndarray
    speech: bool
    source: str
    timestamps: dict[str, float]
    image: np.ndarray | None = None
    pending: asyncio.Future[list[np.ndarray]] | None = None
    position: int = 0
    pose: Pose = REST  # head motion / gesture of this frame


class RenderStage:
    """SpeechFrames -> OutputFrames on the output timeline (see the module docstring).

    Two workers overlap: facial maps + renderer inference for frame n+1 run in the render
    worker while frame n is composited in the compose worker (when one is given); an emitter
    task releases the frames in order.
    """

    name = "render"

    def __init__(
        self,
        engine: FrameEngine,
        executor: Executor,
        inq: MediaQueue[FeatureItem],
        outq: MediaQueue[PlayoutItem],
        *,
        fps: int,
        samples_per_frame: int,
        clock: MediaClock | None = None,
        live: bool = False,
        live_latency_s: float = 0.0,
        max_batch: int = 4,
        observers: ObserverList | None = None,
        time_fn: Callable[[], float] = time.monotonic,
        compose_executor: Executor | None = None,
        planner: PlannerConfig | None = None,
        motion: MotionDirector | None = None,
        warper: HeadWarper | None = None,
    ) -> None:
        if live and clock is None:
            raise ValueError("a live render stage needs the media clock")
        self.engine = engine
        self.executor = executor
        self.compose_executor = compose_executor or executor
        self.inq = inq
        self.outq = outq
        self.fps = fps
        self.samples_per_frame = samples_per_frame
        self.clock = clock
        self.live = live
        self.max_batch = max(1, max_batch)
        self.observers = observers or ObserverList()
        self.time_fn = time_fn
        cfg = planner or PlannerConfig()
        # Every timing decision (idle, hold, render, skip, catch up) is the planner's.
        self.planner = FramePlanner(
            cfg, fps, live=live, live_latency_s=live_latency_s,
            deadline=(lambda i: clock.deadline(i / fps)) if clock is not None else None,
            origin=(lambda: clock.origin) if clock is not None else (lambda: 0.0),
        )
        self.planner.on_event = self.observers.on_event
        self.in_flight = cfg.in_flight
        # Head motion and gestures: a pose per frame, decided in frame order, applied by warping
        # the finished frame in the compose worker (both or neither).
        self.motion = motion if motion is not None and motion.active and warper else None
        self.warper = warper
        self.next_index = 0
        self._silence = np.zeros(samples_per_frame, dtype=np.float32)
        self._speech_image_pending = False  # a speech image exists (or is coming) this segment
        self._waiting: SpeechFrame | None = None  # taken from the queue, held until its time
        self._jobs: asyncio.Queue[_Job | None] | None = None
        self._last_speech_image: np.ndarray | None = None  # emitter side

    # -- timing (the planner decides) ---------------------------------------------------------
    @property
    def late_drops(self) -> dict[str, int]:
        return self.planner.late_drops

    def deadline(self, index: int) -> float:
        return self.planner.deadline(index)

    def reset(self, next_index: int) -> None:
        """After an interrupt: forget the segment and continue at `next_index`."""
        self.next_index = next_index
        self.planner.end()
        self._waiting = None
        self._speech_image_pending = False
        self._last_speech_image = None

    def behind_s(self, frame: SpeechFrame, index: int) -> float:
        return self.planner.behind_s(frame, index)

    def _catch_up(self, frame: SpeechFrame, offset: int = 0) -> bool:
        """Drop this frame (True) to win back latency (FramePlanner.catch_up)."""
        return self.planner.catch_up(frame, self.next_index + offset)

    async def _pace_idle(self) -> None:
        delay = self.planner.idle_delay(self.next_index, self.time_fn())
        if delay > 0:
            await asyncio.sleep(delay)

    # -- loop ----------------------------------------------------------------------------------
    async def run(self) -> None:
        jobs: asyncio.Queue[_Job | None] = asyncio.Queue(self.in_flight)
        self._jobs = jobs
        self._last_speech_image = None

        async def produce() -> None:
            await self._run()
            await jobs.put(None)  # end of stream: the emitter drains and forwards it

        # Either side failing ends both (the other would wait on the job queue forever).
        await run_until_first_failure([produce(), self._emit_loop(jobs)])

    async def _run(self) -> None:
        while True:
            if self.planner.segment is None:
                if self.live:
                    await self._pace_idle()
                item = self.inq.get_nowait() if self.live else await self.inq.get()
                if item is None:
                    await self._submit_idle()
                elif isinstance(item, SegmentStart):
                    self._begin(item)
                elif isinstance(item, EndOfStream):
                    return
                # A SpeechFrame/SegmentEnd outside a segment belongs to an interrupted one.
                continue
            if self.live and self.next_index < self.planner.start_at:
                # The jitter buffer before a live segment starts (idle: no speech image yet) or
                # goes on after a source pause (the last image, as on an underrun).
                await self._pace_idle()
                await self._submit_hold()
                continue
            if self._waiting is not None:  # a frame re-planned after a source pause: its time
                item, self._waiting = self._waiting, None
            elif self.live:
                item = await self.inq.get_until(self.planner.underrun_at(self.next_index),
                                                self.time_fn)
                if item is None:
                    self.observers.on_event("underrun")
                    await self._submit_hold()
                    continue
            else:
                item = await self.inq.get()
            if isinstance(item, SpeechFrame):
                if self._catch_up(item):
                    continue
                if self.next_index < self.planner.start_at:  # re-planned: hold until its time
                    self._waiting = item
                    continue
                batch = [item]
                while len(batch) < self.max_batch and isinstance(self.inq.peek(), SpeechFrame):
                    nxt = self.inq.get_nowait()
                    assert isinstance(nxt, SpeechFrame)
                    if self._catch_up(nxt, len(batch)):
                        continue
                    if self.next_index + len(batch) < self.planner.start_at:
                        self._waiting = nxt  # re-planned: the batch goes first, it waits
                        break
                    batch.append(nxt)
                await self._submit_speech(batch)
            elif isinstance(item, SegmentEnd):
                self.planner.end()
                self._speech_image_pending = False
            elif isinstance(item, SegmentStart):  # the previous segment never ended
                self._begin(item)
            elif isinstance(item, EndOfStream):
                return

    def _begin(self, seg: SegmentStart) -> None:
        self.planner.begin(seg, self.next_index)
        self._speech_image_pending = False
        log.debug("segment %s starts at frame %d (now %d)", seg.source, self.planner.start_at,
                  self.next_index)

    # -- submitting (run loop side) ------------------------------------------------------------
    def _job(self, audio: np.ndarray, speech: bool, stamps: dict[str, float],
             words: tuple[str, ...] = (), idle: bool = False) -> _Job:
        seg = self.planner.segment
        src = "" if idle or seg is None else seg.source
        job = _Job(self.next_index, audio, speech, src, stamps)
        if self.motion is not None:
            job.pose = self.motion.step(job.index, audio, speech, src, words)
        self.next_index += 1
        return job

    def _idle_image(self, index: int, pose: Pose) -> np.ndarray:
        image = self.engine.idle_frame_at(index)
        return self.warper.warp(image, pose) if self.warper is not None else image

    async def _submit_idle(self) -> None:
        assert self._jobs is not None
        loop = asyncio.get_running_loop()
        t0 = self.time_fn()
        job = self._job(self._silence, False, {STAMP_RENDER_START: t0}, idle=True)
        job.image = await loop.run_in_executor(
            self.compose_executor, self._idle_image, job.index, job.pose
        )
        self.planner.record("idle", self.time_fn() - t0)
        await self._jobs.put(job)

    async def _submit_hold(self) -> None:
        """Underrun inside a segment: hold the last speech image with silence (no stall)."""
        if not self._speech_image_pending:
            await self._submit_idle()
            return
        assert self._jobs is not None
        await self._jobs.put(self._job(self._silence, False, {STAMP_RENDER_START: self.time_fn()}))

    async def _submit_speech(self, batch: list[SpeechFrame]) -> None:
        assert self._jobs is not None
        loop = asyncio.get_running_loop()
        counters = [self.next_index + i for i in range(len(batch))]
        # Falling behind (renderer slower than real time): repeat the previous image instead of
        # rendering, keeping audio whole and the stream real-time.
        skip = self.planner.skips(len(batch), counters[0], self.time_fn(),
                                  self._speech_image_pending)
        todo = [i for i, f in enumerate(batch) if f.speech and not skip[i]]
        t0 = self.time_fn()
        jobs = []
        for f in batch:  # in frame order: the poses are decided here
            stamps = dict(f.timestamps)
            stamps[STAMP_RENDER_START] = t0
            jobs.append(self._job(f.audio, f.speech, stamps, f.words))
        pending: asyncio.Future[list[np.ndarray]] | None = None
        if todo:
            feats = np.stack([batch[i].features for i in todo])
            tidx = [self.engine.idle_loop.index(counters[i]) for i in todo]
            poses = [jobs[i].pose for i in todo]
            faces = await loop.run_in_executor(self.executor, self._faces_sync, feats, tidx)
            pending = loop.run_in_executor(
                self.compose_executor, self._compose_sync, faces, tidx, poses
            )
            self.planner.record("render", (self.time_fn() - t0) / len(todo))
        for i, (f, job) in enumerate(zip(batch, jobs, strict=True)):
            if i in todo:
                job.pending, job.position = pending, todo.index(i)
                self._speech_image_pending = True
            elif skip[i] and f.speech:
                self.observers.on_event("skipped")  # job.image None: repeat the last image
            else:
                job.image = await loop.run_in_executor(
                    self.compose_executor, self._idle_image, job.index, job.pose
                )
            await self._jobs.put(job)

    def _faces_sync(self, feats: np.ndarray, template_indices: list[int]) -> np.ndarray:
        """Render worker: facial maps + renderer inference (compositing runs elsewhere)."""
        return self.engine.infer(self.engine.maps(feats, template_indices))

    def _compose_sync(self, faces: np.ndarray, template_indices: list[int],
                      poses: list[Pose] | None = None) -> list[np.ndarray]:
        """Compose worker: paste the faces into their body frames (and move the head)."""
        t0 = self.time_fn()
        images = self.engine.compose(faces, template_indices)
        if self.warper is not None and poses is not None:
            images = [self.warper.warp(im, p) for im, p in zip(images, poses, strict=True)]
        self.planner.record("compose", (self.time_fn() - t0) / max(1, len(faces)))
        return images

    # -- emitting (in order) -------------------------------------------------------------------
    async def _emit_loop(self, jobs: asyncio.Queue[_Job | None]) -> None:
        while True:
            job = await jobs.get()
            if job is None:
                await self.outq.put(EndOfStream())
                return
            image = job.image
            if job.pending is not None:
                images = await job.pending
                image = images[job.position]
            if image is None:  # repeat: the last speech image, else the idle frame
                image = self._last_speech_image
                if image is None:
                    image = self._idle_image(job.index, job.pose)
            elif job.speech:
                self._last_speech_image = image
            job.timestamps[STAMP_RENDERED] = self.time_fn()
            await self.outq.put(
                OutputFrame(
                    index=job.index, image=image, audio=job.audio, speech=job.speech,
                    source=job.source, timestamps=job.timestamps,
                )
            )


class Player:
    """Releases frames at their deadlines on the media clock and hands them to `publish`."""

    name = "player"

    def __init__(
        self,
        inq: MediaQueue[PlayoutItem],
        clock: MediaClock,
        fps: int,
        publish: Callable[[OutputFrame], None],
        *,
        resync_frames: int = 3,
        observers: ObserverList | None = None,
    ) -> None:
        self.inq = inq
        self.clock = clock
        self.fps = fps
        self.publish = publish
        self.resync_frames = resync_frames
        self.observers = observers or ObserverList()
        self.next_index = 0
        self.epoch = 0  # bumped by interrupts: a frame waiting for its deadline is then dropped
        self.frames_out = 0

    def interrupt(self) -> None:
        self.epoch += 1

    async def run(self) -> None:
        while True:
            item = await self.inq.get()
            if isinstance(item, EndOfStream):
                return
            if item.index < self.next_index:
                continue  # left over from before an interrupt
            epoch = self.epoch
            pts = item.index / self.fps
            late = self.clock.behind(pts)
            if late > self.resync_frames / self.fps:
                self.clock.rebase(pts)
                self.observers.on_event("resync")
            elif late < 0:
                await self.clock.sleep_until(pts)
            if epoch != self.epoch:
                continue
            item.timestamps[STAMP_OUT] = self.clock.monotonic()
            self.next_index = item.index + 1
            self.frames_out += 1
            self.publish(item)
            self.observers.on_frame(item)
