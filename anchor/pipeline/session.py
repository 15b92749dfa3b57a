"""`AnchorSession`: one anchor's live pipeline — audio in, paced frames out to every viewer.

    AudioInput(s) ─► [audio queue] ─► AnalysisStage ─► [feature queue] ─► RenderStage
                                                                              │
                    viewers ◄─ FrameBroadcaster ◄─ Player ◄─ [playout queue] ◄┘

Queues and their policies (capacities from ServerConfig, in milliseconds of media):
- audio queue (audio_queue_ms, BLOCK): a source pushing faster than real time waits.
- feature queue (audio_queue_ms, BLOCK): holds the frames of a live segment's jitter buffer.
- playout queue (video_queue_ms, BLOCK): how far rendering may run ahead of the deadlines
  (idle frames are made only 2 frames ahead, so a live segment can start on time).
- per viewer: video LATEST (1 frame), audio DROP_OLDEST (viewer_audio_ms); drops are counted.

One input at a time: a live input (microphone, push connection) owns the session until it closes;
files (`speak`) queue behind one another. `interrupt()` stops speech within one frame: it drops
everything queued, restarts the stages at the player's next frame and returns to the idle loop.

Files are decoded on the session's own decode thread(s) (ServerConfig.speak_decode_workers, run
at a lower OS priority), never on the default executor that aiortc's encoders use, and are capped
at ServerConfig.max_speak_s of decoded audio. A queued file is held as 200 ms chunks that are
freed as they play; everything is dropped (and the heap trimmed) when playback ends or on
interrupt.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import dataclasses
import functools
import logging
import os
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from anchor.audio.resample import StreamResampler
from anchor.clock import MediaClock
from anchor.config import PlannerConfig, ServerConfig
from anchor.errors import StreamError
from anchor.mouth.visemes import SpeechCues
from anchor.pipeline.fanout import FrameBroadcaster, Subscription
from anchor.pipeline.items import InputAudio, SegmentEnd, SegmentStart
from anchor.pipeline.models import PipelineModels, live_latency_ms
from anchor.pipeline.observers import ObserverList, PipelineObserver, StageRecorder
from anchor.pipeline.queues import QueueClosed
from anchor.pipeline.runner import Pipeline, QueuePlan
from anchor.pipeline.stages import (
    AudioItem,
    Player,
)

log = logging.getLogger(__name__)


class InputBusy(StreamError):
    """Another input owns the session."""


class DecoderBusy(InputBusy):
    """Every decode thread stayed busy for ServerConfig.speak_decode_wait_s (try again later)."""


def to_float_mono(samples: np.ndarray) -> np.ndarray:
    """int16 PCM or float samples (any shape, channels last or interleaved mono) -> float32."""
    x = np.asarray(samples)
    if x.dtype == np.int16:
        return (x.astype(np.float32) / 32768.0).reshape(-1)
    return x.astype(np.float32, copy=False).reshape(-1)


class AudioInput:
    """A source's handle: push mono audio at its own rate; the session resamples to 16 kHz.

    A live input's segment starts at its first push (and again after an interrupt, so a
    microphone that keeps talking keeps being lip-synced); `close()` ends it and frees the session.
    """

    def __init__(self, session: AnchorSession, name: str, sample_rate: int, live: bool,
                 cues: SpeechCues | None = None) -> None:
        if sample_rate <= 0:
            raise StreamError(f"input {name}: invalid sample rate {sample_rate}")
        self.session = session
        self.name = name
        self.sample_rate = int(sample_rate)
        self.live = live
        self.cues = cues  # a TTS sentence's timings (the first segment only: interrupts drop them)
        self.closed = False
        self.samples_in = 0
        self._resampler = StreamResampler(self.sample_rate, session.sample_rate)
        self._generation = -1  # session generation of the open segment (-1: none)

    def set_rate(self, sample_rate: int) -> None:
        """A live source changed its rate (e.g. a WebRTC track): continue with a new resampler."""
        if sample_rate != self.sample_rate:
            self.sample_rate = int(sample_rate)
            self._resampler = StreamResampler(self.sample_rate, self.session.sample_rate)

    async def push(self, samples: np.ndarray, arrival: float | None = None) -> None:
        if self.closed:
            raise StreamError(f"input {self.name} is closed")
        x = to_float_mono(samples)
        if x.size == 0:
            return
        s = self.session
        t = s.clock.monotonic() if arrival is None else arrival
        if self._generation != s.generation:
            self._resampler.reset()
            start = t - x.size / self.sample_rate if self.live else t
            self._generation = s.generation
            await self._put(SegmentStart(self.name, start, self.live, s.sample_rate, self.cues))
            self.cues = None
        self.samples_in += x.size
        y = self._resampler.process(x)
        if y.size and self._generation == s.generation:
            await self._put(InputAudio(y, t))

    async def _put(self, item: AudioItem) -> None:
        try:
            await self.session.audio_queue.put(item)
        except QueueClosed:
            raise StreamError(f"input {self.name}: the anchor session has stopped") from None

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        s = self.session
        try:
            if self._generation == s.generation and not s.audio_queue.closed:
                tail = self._resampler.flush()
                if tail.size:
                    await self._put(InputAudio(tail, s.clock.monotonic()))
                await self._put(SegmentEnd(self.name))
        except StreamError:
            pass  # the session stopped: nothing left to end
        finally:
            s._release_input(self)


@dataclasses.dataclass
class _SpeakJob:
    name: str
    chunks: deque[np.ndarray]  # 16 kHz mono float32, played (and freed) front to back
    # Resolved once the job is over: True when all of it went into the pipeline, False when it
    # was dropped (interrupt, a live input, shutdown). Lets /say and /rundown pace themselves.
    done: asyncio.Future[bool] | None = None
    cues: SpeechCues | None = None  # text input: the TTS's phoneme and word timings

    def release(self, played: bool = False) -> None:
        self.chunks.clear()
        if self.done is not None and not self.done.done():
            self.done.set_result(played)


def _lower_priority() -> None:
    """Decode threads run niced, so a burst of uploads yields the CPU to render and encode."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)  # Linux: per thread


def _trim_heap() -> None:
    """Give freed sample memory back to the OS now: glibc keeps freed chunks of a thread's
    arena mapped, so RSS would otherwise stay at its peak after a long file."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None where there is none (musl, macOS)."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


class AnchorSession:
    def __init__(
        self,
        models: PipelineModels,
        server: ServerConfig,
        *,
        clock: MediaClock | None = None,
        observers: list[PipelineObserver] | None = None,
        max_queued_files: int = 8,
        render_executor: ThreadPoolExecutor | None = None,
        planner: PlannerConfig | None = None,
    ) -> None:
        """`render_executor`: a renderer worker shared with other sessions (channels of one
        server take turns on one thread instead of oversubscribing the cores); it is not shut
        down with this session."""
        self.models = models
        self.server = server
        self.fps = models.fps
        self.sample_rate = models.audio.sample_rate
        self.samples_per_frame = models.samples_per_frame
        self.clock = clock or MediaClock()
        self.recorder = StageRecorder()
        self.observers = ObserverList([self.recorder, *(observers or [])])
        self.broadcaster = FrameBroadcaster(self.fps, float(server.viewer_audio_ms))
        self.generation = 0
        self.live_latency_s = live_latency_ms(models, server.latency_margin_ms) / 1000.0
        # The stages, their queues and worker threads: one declaration for live and offline.
        self.pipeline = Pipeline(
            models, QueuePlan.live(server, self.live_latency_s), observers=self.observers,
            live=True, clock=self.clock, publish=self.broadcaster.publish,
            live_latency_s=self.live_latency_s, resync_frames=server.resync_frames,
            render_executor=render_executor, planner=planner,
        )
        p = self.pipeline
        self.audio_queue, self.feature_queue, self.playout_queue = (
            p.audio_queue, p.feature_queue, p.playout_queue)
        self.analyzer, self.analysis, self.render = p.analyzer, p.analysis, p.render
        assert p.player is not None
        self.player: Player = p.player
        self._input: AudioInput | None = None
        self._input_free = asyncio.Event()
        self._input_free.set()
        self._speak_queue: asyncio.Queue[_SpeakJob] = asyncio.Queue(max_queued_files)
        self._speak_job: _SpeakJob | None = None  # the file playing now
        decoders = max(1, server.speak_decode_workers)
        self._decode_pool = ThreadPoolExecutor(
            decoders, thread_name_prefix="anchor-decode", initializer=_lower_priority
        )
        # One slot per decode thread, so uploads wait here (bounded) rather than in the pool.
        self._decode_slots = asyncio.Semaphore(decoders)
        self._decode_cancels: set[threading.Event] = set()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._running = False
        self._interrupt_lock = asyncio.Lock()

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._running

    async def start(self) -> None:
        if self._running:
            return
        self._running = True
        await self._warm_up()
        self.clock.start()
        for name, run in self.pipeline.stages():
            self._start_stage(name, run)
        self._start_stage("speak", self._speak_worker)
        log.info(
            "session started: %d fps, lookahead %.0f ms, hop %.0f ms, live latency target %.0f ms",
            self.fps, self.models.lookahead_ms, self.models.streaming.hop_ms,
            1000 * self.live_latency_s,
        )

    async def _warm_up(self) -> None:
        await self.pipeline.warm_up()

    def _start_stage(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        self._tasks[name] = asyncio.create_task(self._supervise(name, run), name=f"anchor-{name}")

    async def _supervise(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        """Keep a stage alive: a crash is logged and counted, then the stage restarts idle."""
        while self._running:
            try:
                await run()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("pipeline stage %s failed; restarting it", name)
                self.observers.on_event("stage_error")
                await asyncio.sleep(0.1)
                # The speak worker ends its own segment (its input closes on the way out).
                if name not in ("player", "speak"):
                    self.generation += 1  # the segment in flight is lost
                    self.render.reset(self.player.next_index)

    async def aclose(self) -> None:
        if not self._running:
            return
        self._running = False
        tasks = list(self._tasks.values())
        for ev in self._decode_cancels:
            ev.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.pipeline.close_queues()  # a source still pushing gets QueueClosed -> StreamError
        for sub in self.broadcaster.subscribers:
            self.broadcaster.unsubscribe(sub)
        self.pipeline.shutdown(wait=False)
        self._drop_speech()
        self._decode_pool.shutdown(wait=False, cancel_futures=True)
        with contextlib.suppress(Exception):
            self.models.engine.close()

    # -- viewers -------------------------------------------------------------------------------
    def subscribe(self) -> Subscription:
        return self.broadcaster.subscribe()

    def unsubscribe(self, sub: Subscription) -> None:
        self.broadcaster.unsubscribe(sub)

    # -- inputs --------------------------------------------------------------------------------
    @property
    def active_input(self) -> str | None:
        return self._input.name if self._input is not None else None

    def open_input(self, name: str, sample_rate: int, *, live: bool = True,
                   cues: SpeechCues | None = None) -> AudioInput:
        """Claim the session for a live source; InputBusy if another input owns it."""
        if self._input is not None:
            raise InputBusy(f"busy: input {self._input.name!r} is active")
        inp = AudioInput(self, name, sample_rate, live, cues)
        self._input = inp
        self._input_free.clear()
        log.info("input %s opened (%d Hz, %s)", name, sample_rate, "live" if live else "file")
        return inp

    def _release_input(self, inp: AudioInput) -> None:
        if self._input is inp:
            self._input = None
            self._input_free.set()
            log.info("input %s closed (%.1f s)", inp.name, inp.samples_in / inp.sample_rate)

    @property
    def _chunk_samples(self) -> int:
        return self.sample_rate // 5  # 200 ms pushes; the audio queue provides backpressure

    def _check_can_queue(self) -> None:
        if self._input is not None and self._input.live:
            raise InputBusy(f"busy: live input {self._input.name!r} is active")
        if self._speak_queue.full():
            raise InputBusy(
                f"busy: {self._speak_queue.maxsize} files are already waiting to be spoken"
            )

    def check_can_queue(self) -> None:
        """Raise InputBusy now if speech queued now would be refused (a live input owns the
        session, or the file queue is full)."""
        self._check_can_queue()

    def _queue_job(self, job: _SpeakJob) -> int:
        self._check_can_queue()
        self._speak_queue.put_nowait(job)
        return self._speak_queue.qsize()

    def speak(
        self, samples16k: np.ndarray, name: str = "speak", *, done: asyncio.Future[bool] | None = None,
        cues: SpeechCues | None = None,
    ) -> int:
        """Queue decoded speech (16 kHz mono float32); returns the number of jobs waiting.

        `done` (optional) is resolved when the job is over: True once all of it has been pushed
        into the pipeline (it is then still ~audio_queue_ms from the screen), False when it was
        dropped. Raises InputBusy when a live input owns the session or too many files are
        queued (`done` is then left alone). `cues`: the TTS's timings of this speech."""
        x = np.asarray(samples16k, np.float32).reshape(-1)
        n = self._chunk_samples
        job = _SpeakJob(name, deque(x[i : i + n] for i in range(0, x.size, n)), done, cues)
        return self._queue_job(job)

    async def speak_file(self, path: str | Path, *, max_seconds: float | None = None) -> int:
        """Decode an audio file on the session's decode thread and queue it.

        `max_seconds` defaults to ServerConfig.max_speak_s (<= 0: no limit). Raises AudioError
        if unreadable, AudioTooLong (an AudioError) as soon as the decoded audio passes the
        limit, InputBusy when a live input owns the session or the file queue is full, and
        DecoderBusy (an InputBusy) when no decode thread frees up within
        ServerConfig.speak_decode_wait_s."""
        from anchor.audio.decode import DecodeCancelled

        path = Path(path)
        self._check_can_queue()  # fail fast, before paying for a decode
        limit = self.server.max_speak_s if max_seconds is None else max_seconds
        wait = max(0.0, self.server.speak_decode_wait_s)
        try:
            async with asyncio.timeout(wait):
                await self._decode_slots.acquire()
        except TimeoutError:
            raise DecoderBusy(
                f"busy: the audio decoder is still busy with other uploads after {wait:g} s; "
                "try again shortly"
            ) from None
        loop = asyncio.get_running_loop()
        cancel = threading.Event()
        self._decode_cancels.add(cancel)
        try:
            fut = self._decode_pool.submit(
                _decode_chunks, path, self.sample_rate, self._chunk_samples,
                limit if limit > 0 else None, cancel,
            )
        except RuntimeError:  # the pool is shut down: the session is closing
            self._decode_slots.release()
            self._decode_cancels.discard(cancel)
            raise StreamError("the anchor session has stopped") from None

        def done(_f: Future[deque[np.ndarray]]) -> None:
            # The slot frees when the thread is really done (not when a waiter gave up).
            with contextlib.suppress(RuntimeError):  # the loop has closed
                loop.call_soon_threadsafe(self._decode_slots.release)

        fut.add_done_callback(done)
        try:
            chunks = await asyncio.wrap_future(fut)
        except asyncio.CancelledError:
            cancel.set()  # the client went away: stop decoding at the next frame
            raise
        except DecodeCancelled:  # aclose() stopped it: not the file's fault
            raise StreamError("the anchor session has stopped") from None
        finally:
            self._decode_cancels.discard(cancel)
        try:
            return self._queue_job(_SpeakJob(f"file:{path.name}", chunks))
        except InputBusy:
            chunks.clear()
            self._trim_soon()
            raise

    async def _speak_worker(self) -> None:
        while True:
            job = await self._speak_queue.get()
            self._speak_job = job
            played = False
            try:
                played = await self._play(job)
            finally:
                # Drop every reference to the samples, played or not, crash or not.
                job.release(played)
                self._speak_job = None
                del job
                self._trim_soon()

    async def _play(self, job: _SpeakJob) -> bool:
        """Push the job into the pipeline; True when all of it went in (not interrupted)."""
        await self._input_free.wait()
        if self._input is not None:  # a live input slipped in first: drop the file
            log.warning("dropping %s: input %s is active", job.name, self._input.name)
            return False
        if not job.chunks:  # released by an interrupt while it waited for the input
            return False
        inp = self.open_input(job.name, self.sample_rate, live=False, cues=job.cues)
        gen = self.generation
        try:
            while job.chunks and self.generation == gen:  # a new generation: interrupted
                await inp.push(job.chunks.popleft())
        finally:
            await inp.close()
        return self.generation == gen

    def _drop_speech(self) -> None:
        """Forget every queued file and the one playing (its worker stops at its next push)."""
        while not self._speak_queue.empty():
            self._speak_queue.get_nowait().release()
        if self._speak_job is not None:
            self._speak_job.release()
        self._trim_soon()

    def _trim_soon(self) -> None:
        # On a decode thread: trimming a big heap takes milliseconds the event loop should keep.
        with contextlib.suppress(RuntimeError):  # pool shut down
            self._decode_pool.submit(_trim_heap)

    # -- control -------------------------------------------------------------------------------
    async def interrupt(self, reason: str = "interrupt") -> int:
        """Stop speaking now: drop queued audio/frames, restart at the player's next frame idle.

        Returns the number of queued items dropped."""
        async with self._interrupt_lock:
            self.generation += 1
            self.player.interrupt()
            self._drop_speech()
            for name in ("analysis", "render"):
                task = self._tasks.get(name)
                if task is not None:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
            dropped = self.pipeline.flush()
            await self.analysis.reset()
            self.render.reset(self.player.next_index)
            self.broadcaster.flush_audio()
            if self._running:
                self._start_stage("analysis", self.analysis.run)
                self._start_stage("render", self.render.run)
            self.observers.on_event("interrupt")
            log.info("%s: dropped %d queued items; idle from frame %d", reason, dropped,
                     self.player.next_index)
            return dropped

    # -- state ---------------------------------------------------------------------------------
    def queue_depths_ms(self) -> dict[str, float]:
        return {
            q.name: q.depth_ms for q in (self.audio_queue, self.feature_queue, self.playout_queue)
        }

    def dropped_counts(self) -> dict[str, int]:
        out = {q.name: q.dropped for q in (self.audio_queue, self.feature_queue, self.playout_queue)}
        viewers = self.broadcaster.dropped()
        out["viewer_video"] = viewers["video"]
        out["viewer_audio"] = viewers["audio"]
        out["flushed"] = sum(
            q.flushed for q in (self.audio_queue, self.feature_queue, self.playout_queue)
        )
        # Frames of a live segment skipped because a stall made them too late to show.
        out.update(self.render.late_drops)
        return out

    def stats(self) -> dict[str, object]:
        return {
            "avatar": self.models.name,
            "fps_target": self.fps,
            "lookahead_ms": self.models.lookahead_ms,
            "hop_ms": self.models.streaming.hop_ms,
            "live_latency_target_ms": round(1000 * self.live_latency_s, 1),
            "frame": self.player.next_index,
            "input": self.active_input,
            "viewers": len(self.broadcaster.subscribers),
            "queues_ms": self.queue_depths_ms(),
            "dropped": self.dropped_counts(),
            **self.recorder.summary(),
        }


def _decode_chunks(
    path: Path, sample_rate: int, chunk: int, max_seconds: float | None, cancel: threading.Event
) -> deque[np.ndarray]:
    """Runs on a decode thread: the whole file (at most `max_seconds`) as 200 ms chunks."""
    from anchor.audio.decode import iter_audio

    try:
        return deque(
            iter_audio(path, sample_rate, chunk_s=chunk / sample_rate, max_seconds=max_seconds,
                       cancel=cancel)
        )
    except BaseException:
        _trim_heap()  # a rejected file's partial chunks are garbage now
        raise
