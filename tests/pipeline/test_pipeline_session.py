"""AnchorSession: the live pipeline — idle loop, live input, files, interrupt, fan-out."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from pipeline_helpers import SPF, speechlike

from anchor.config import ServerConfig
from anchor.pipeline.fanout import Subscription
from anchor.pipeline.items import OutputFrame
from anchor.pipeline.models import PipelineModels
from anchor.pipeline.session import AnchorSession, InputBusy

SERVER = ServerConfig(latency_margin_ms=80)


def assert_sound_passes_through(frames: list[OutputFrame], x: np.ndarray, source: str) -> None:
    """Every input frame that is not silent left exactly once, in order, on consecutive output
    frames. (Under load the pipeline may drop silent frames to win back latency, or hold an
    image with silence on an underrun; it never drops, repeats or reorders sound.)"""
    n = -(-len(x) // SPF)
    padded = np.concatenate([x, np.zeros(n * SPF - len(x), np.float32)]).reshape(n, SPF)
    loud = [k for k in range(n) if np.abs(padded[k]).max() > 1e-3]
    out = [f for f in frames if f.source == source and np.abs(f.audio).max() > 1e-3]
    assert len(out) == len(loud), (len(out), len(loud), [f.index for f in out])
    for f, k in zip(out, loud, strict=True):
        np.testing.assert_allclose(f.audio, padded[k], atol=2e-3)
    assert all(b.index > a.index for a, b in zip(out, out[1:], strict=False))


async def collect(sub: Subscription, n: int, timeout: float = 10.0) -> list[OutputFrame]:
    frames = []
    async with asyncio.timeout(timeout):
        while len(frames) < n:
            frames.append(await sub.video.get())
    return frames


async def push_realtime(
    session: AnchorSession, x: np.ndarray, rate: int = 16000, speed: float = 1.0
) -> None:
    """A live input pushing 20 ms chunks at `speed` x real time."""
    inp = session.open_input("test-mic", rate, live=True)
    chunk = rate // 50  # 20 ms
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for k, i in enumerate(range(0, len(x), chunk)):
        await inp.push(x[i : i + chunk])
        await asyncio.sleep(max(0.0, t0 + (k + 1) * 0.02 / speed - loop.time()))
    await inp.close()


class FrameTap:
    """A pipeline observer that keeps every frame the player releases (viewers may skip some)."""

    def __init__(self) -> None:
        self.frames: list[OutputFrame] = []

    def on_frame(self, frame: OutputFrame) -> None:
        self.frames.append(frame)

    def on_event(self, name: str, count: int = 1) -> None:
        pass


def run_bursts(
    models: PipelineModels, x: np.ndarray, speed: float = 1.0
) -> tuple[list[OutputFrame], AnchorSession]:
    """Push `x` live at `speed` x real time; every released frame and the session."""

    async def main() -> tuple[list[OutputFrame], AnchorSession]:
        tap = FrameTap()
        session = AnchorSession(models, SERVER, observers=[tap])
        await session.start()
        await push_realtime(session, x, speed=speed)
        await asyncio.sleep(session.live_latency_s + 0.3 + len(x) / 16000 * (1 - 1 / speed))
        await session.aclose()
        return tap.frames, session

    return asyncio.run(main())


def test_idle_stream_is_continuous(models: PipelineModels) -> None:
    async def main() -> list[OutputFrame]:
        session = AnchorSession(models, SERVER)
        await session.start()
        sub = session.subscribe()
        try:
            return await collect(sub, 15)
        finally:
            await session.aclose()

    frames = asyncio.run(main())
    idx = [f.index for f in frames]
    assert idx == list(range(idx[0], idx[0] + 15))  # nothing skipped for a keeping-up viewer
    assert not any(f.speech for f in frames)
    assert all(not f.audio.any() and len(f.audio) == SPF for f in frames)
    outs = [f.timestamps["out"] for f in frames]
    assert all(b > a for a, b in zip(outs, outs[1:], strict=False))


def test_live_input_is_lip_synced_and_delayed_by_the_video_path(models: PipelineModels) -> None:
    x = np.concatenate([speechlike(1.2), np.zeros(8000, np.float32)])
    frames, session = run_bursts(models, x)
    seg = [f for f in frames if f.source == "test-mic"]
    assert_sound_passes_through(frames, x, "test-mic")
    assert sum(f.speech for f in seg) > 20
    # audio-in -> frame-out is the live latency target, give or take the pacing jitter (and a
    # clock resync if this machine stalled the event loop; the next silence wins it back)
    total = [f.timestamps["out"] - f.timestamps["audio_in"] for f in seg if f.speech]
    slack = 0.1 + 0.2 * session.recorder.events["resync"]
    assert -0.04 < float(np.median(total)) - session.live_latency_s < slack, (
        np.round(total, 3), dict(session.recorder.events)
    )


def test_interrupt_returns_to_idle_within_a_frame(models: PipelineModels) -> None:
    async def main() -> tuple[list[OutputFrame], int, AnchorSession]:
        session = AnchorSession(models, SERVER)
        await session.start()
        sub = session.subscribe()
        session.speak(speechlike(3.0))
        frames = []
        while sum(f.speech for f in frames) < 10:
            frames.append(await sub.video.get())
        await session.interrupt()
        cut = len(frames)
        frames += await collect(sub, 10)
        await session.aclose()
        return frames, cut, session

    frames, cut, session = asyncio.run(main())
    after = frames[cut + 1 :]  # at most one frame was already on its way to the viewer
    assert not any(f.speech for f in after)
    assert all(f.source == "" for f in after)
    assert session.recorder.events["interrupt"] == 1
    assert session.dropped_counts()["flushed"] > 0


def test_one_live_input_at_a_time(models: PipelineModels) -> None:
    async def main() -> None:
        session = AnchorSession(models, SERVER)
        await session.start()
        try:
            first = session.open_input("a", 48000)
            with pytest.raises(InputBusy):
                session.open_input("b", 16000)
            with pytest.raises(InputBusy):
                session.speak(np.zeros(1600, np.float32))
            await first.close()
            session.open_input("b", 16000)
        finally:
            await session.aclose()

    asyncio.run(main())


def test_slow_viewer_gets_latest_frame_and_others_all(models: PipelineModels) -> None:
    async def main() -> tuple[list[OutputFrame], OutputFrame, Subscription]:
        session = AnchorSession(models, SERVER)
        await session.start()
        fast, slow = session.subscribe(), session.subscribe()
        frames = await collect(fast, 10)
        latest = await slow.video.get()  # never read until now: only the newest is kept
        await session.aclose()
        return frames, latest, slow

    frames, latest, slow = asyncio.run(main())
    assert latest.index >= frames[-1].index
    assert slow.video.dropped >= 8
    assert slow.audio.dropped > 0  # its audio queue is bounded too


class StallingEngine:
    """Wraps an engine; its `stall_at`-th render call blocks for `stall_s` (a hiccup), and every
    render takes at least `render_s` (a renderer slower than real time when > 40 ms)."""

    def __init__(self, engine: object, stall_at: int = 5, stall_s: float = 0.5,
                 render_s: float = 0.0) -> None:
        self.engine = engine
        self.calls = 0
        self.stall_at = stall_at
        self.stall_s = stall_s
        self.render_s = render_s

    def __getattr__(self, name: str) -> object:
        return getattr(self.engine, name)

    def infer(self, maps: np.ndarray) -> np.ndarray:
        import time

        self.calls += 1
        time.sleep(self.stall_s if self.calls == self.stall_at else self.render_s)
        return self.engine.infer(maps)  # type: ignore[attr-defined]


def test_a_stall_is_won_back_in_the_next_silence(models: PipelineModels) -> None:
    models.engine = StallingEngine(models.engine, stall_at=5, stall_s=0.5)  # type: ignore[assignment]
    gap = np.zeros(int(1.2 * 16000), np.float32)
    x = np.concatenate([speechlike(1.0), gap, speechlike(1.0, seed=1), gap[:8000]])
    frames, session = run_bursts(models, x)
    events = session.recorder.events
    assert events["resync"] >= 1  # the stall pushed the stream late...
    assert events["catchup"] >= 5  # ...and silent frames were dropped to win it back
    assert events["catchup_speech"] == 0
    second_burst_end = [f for f in frames if f.speech][-15:]
    late = [f.timestamps["out"] - f.timestamps["audio_in"] for f in second_burst_end]
    assert abs(float(np.median(late)) - session.live_latency_s) < 0.08


def test_slow_renderer_repeats_frames_but_keeps_time(models: PipelineModels) -> None:
    models.engine = StallingEngine(models.engine, stall_at=-1, render_s=0.07)  # type: ignore[assignment]
    x = speechlike(2.0)
    frames, session = run_bursts(models, x)
    seg = [f for f in frames if f.source == "test-mic"]
    assert_sound_passes_through(frames, x, "test-mic")
    assert session.recorder.events["skipped"] > 10
    late = [f.timestamps["out"] - f.timestamps["audio_in"] for f in seg if f.speech]
    assert float(np.percentile(late, 90)) < session.live_latency_s + 0.2


def test_live_input_faster_than_real_time_loses_nothing(models: PipelineModels) -> None:
    """A push client may send faster than real time (e.g. a TTS engine): the frames queue up
    and play at 1x; nothing is mistaken for lateness and dropped."""
    x = np.concatenate([speechlike(1.0), np.zeros(8000, np.float32), speechlike(1.0, seed=2)])
    frames, session = run_bursts(models, x, speed=4.0)
    assert_sound_passes_through(frames, x, "test-mic")
    assert session.recorder.events["catchup_speech"] == 0
