"""Stalls of a live segment: a source that pauses loses nothing; our own backlog is skipped only
where it can no longer be shown in time, and every skipped frame is counted under `dropped`."""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor, ThreadPoolExecutor

import numpy as np
import pytest
from pipeline_helpers import SPF, speechlike
from test_pipeline_session import SERVER, FrameTap, StallingEngine, assert_sound_passes_through

from anchor.clock import FakeTime, MediaClock
from anchor.pipeline.analysis import SpeechAnalyzer
from anchor.pipeline.items import (
    STAMP_AUDIO_IN,
    InputAudio,
    OutputFrame,
    SegmentEnd,
    SegmentStart,
    SpeechFrame,
)
from anchor.pipeline.models import PipelineModels
from anchor.pipeline.planner import STAMP_PACED_IN
from anchor.pipeline.queues import DropPolicy, MediaQueue
from anchor.pipeline.session import AnchorSession
from anchor.pipeline.stages import (
    AnalysisStage,
    AudioItem,
    FeatureItem,
    PlayoutItem,
    RenderStage,
    audio_item_ms,
    frame_item_ms,
)

FPS = 25
LATENCY = 0.32  # live latency of the decision-level stage
ORIGIN = 100.0  # media clock origin (monotonic seconds)
CAPTURED = 100.5  # the live segment's first sample was captured
CHUNK = 0.02  # the source pushes 20 ms chunks
ANALYSIS = 0.24  # lookahead + hop: a frame is analysed this long after its audio arrived


# -- the decision logic, with explicit times -------------------------------------------------------
def live_stage(models: PipelineModels) -> tuple[RenderStage, FakeTime]:
    """A live render stage on a hand-driven clock, in a segment that began at CAPTURED and
    whose first frame is due LATENCY later (output frame 21)."""
    fake = FakeTime(CAPTURED + CHUNK)
    clock = MediaClock(fake)
    clock.start(ORIGIN)
    inq: MediaQueue[FeatureItem] = MediaQueue("f", 2000, DropPolicy.BLOCK, frame_item_ms(FPS))
    outq: MediaQueue[PlayoutItem] = MediaQueue("p", 200, DropPolicy.BLOCK, frame_item_ms(FPS))
    stage = RenderStage(
        models.engine, Executor(), inq, outq, fps=FPS, samples_per_frame=SPF, clock=clock,
        live=True, live_latency_s=LATENCY, time_fn=fake,
    )
    stage.next_index = 14  # the idle loop runs 2 frames ahead of the clock
    stage._begin(SegmentStart("ws", CAPTURED, live=True))
    assert stage.planner.start_at == 21
    return stage, fake


def frame(k: int, arrived: float, speech: bool = True) -> SpeechFrame:
    return SpeechFrame(k, np.zeros(10, np.float32), speech, np.zeros(SPF, np.float32),
                       {STAMP_AUDIO_IN: arrived})


def place(stage: RenderStage, f: SpeechFrame) -> int | None:
    """The run loop's decision for one frame now: the output frame it plays at (holding until
    its time, as the loop does with the jitter buffer), or None when it is skipped."""
    if stage._catch_up(f):
        return None
    stage.next_index = max(stage.next_index, stage.planner.start_at)
    stage.next_index += 1
    return stage.next_index - 1


def play_realtime(stage: RenderStage, fake: FakeTime, first: int, n: int, start: float,
                  silent: range = range(0)) -> list[int | None]:
    """Frames first..first+n-1 whose audio arrived in real time from `start` on, each decided
    when the analysis delivers it."""
    out = []
    for k in range(first, first + n):
        arrived = start + CHUNK + (k - first) / FPS
        fake.t = arrived + ANALYSIS
        out.append(place(stage, frame(k, arrived, speech=k not in silent)))
    return out


@pytest.mark.parametrize("pause_s", [0.5, 2.5])
def test_speech_after_a_source_pause_is_replanned_not_dropped(
    models: PipelineModels, pause_s: float
) -> None:
    stage, fake = live_stage(models)
    before = play_realtime(stage, fake, 0, 25, CAPTURED)
    assert before == list(range(21, 46))
    # The source sends nothing for `pause_s` (its segment stays open): underrun holds move the
    # output on with the clock.
    resumed = CAPTURED + 1.0 + pause_s
    fake.t = resumed + CHUNK + ANALYSIS
    stage.next_index = int((fake.t - ORIGIN + 0.015) * FPS) + 1
    after = play_realtime(stage, fake, 25, 37, resumed, silent=range(40, 46))
    # Everything it sends afterwards plays, silence included, on consecutive frames...
    assert None not in after, after
    played = [i for i in after if i is not None]
    assert played == list(range(played[0], played[0] + 37))
    # ...`live_latency` after it arrived (not earlier: the jitter buffer refilled).
    late = ORIGIN + played[0] / FPS - (resumed + CHUNK)
    assert LATENCY - 1e-6 <= late < LATENCY + 1 / FPS, late
    assert stage.late_drops == {"late_speech": 0, "late_silence": 0}


def test_our_backlog_is_skipped_only_beyond_max_behind_and_counted(
    models: PipelineModels,
) -> None:
    stage, fake = live_stage(models)
    assert play_realtime(stage, fake, 0, 10, CAPTURED) == list(range(21, 31))
    # Our renderer stalls for 1.98 s at frame 10 while the audio keeps arriving on time; the
    # player resyncs its clock: frame 31 is due when the stall ends.
    fake.t = ORIGIN + 31 / FPS + 1.98  # (frame 31 was planned for ORIGIN + 31 / FPS)
    stage.clock.rebase(31 / FPS)  # type: ignore[union-attr]
    backlog = [place(stage, frame(k, CAPTURED + CHUNK + k / FPS)) for k in range(10, 60)]
    # Frames 10..34 would play more than max_behind_s (1 s) late: skipped; the rest play.
    assert backlog[:25] == [None] * 25
    assert backlog[25:] == list(range(31, 56))
    assert stage.late_drops == {"late_speech": 25, "late_silence": 0}
    # Real-time input goes on, one second late; the next silence wins it back (silent frames
    # only), then speech plays on time again.
    rest = [place(stage, frame(k, CAPTURED + CHUNK + k / FPS, speech=k < 60 or k >= 90))
            for k in range(60, 100)]
    assert rest[:23] == [None] * 23
    assert None not in rest[23:]
    assert stage.late_drops == {"late_speech": 25, "late_silence": 23}
    assert stage.behind_s(frame(100, 0.0), stage.next_index) < stage.planner.cfg.catchup_s


def test_a_pause_inside_a_frames_lookahead_replans_it(models: PipelineModels) -> None:
    """The last frames before a pause have their audio on time but are analysed only when the
    lookahead arrives after the pause: they are re-planned too, by STAMP_PACED_IN."""
    stage, fake = live_stage(models)
    assert play_realtime(stage, fake, 0, 20, CAPTURED) == list(range(21, 41))
    resumed = CAPTURED + 1.0 + 2.5
    fake.t = resumed + 0.16 + ANALYSIS
    stage.next_index = int((fake.t - ORIGIN + 0.015) * FPS) + 1
    held = []
    for k in range(20, 30):  # frames 20..24 were waiting for the audio of 25..28
        f = frame(k, CAPTURED + CHUNK + k / FPS)
        f.timestamps[STAMP_PACED_IN] = resumed + 0.16 - (29 - k) / FPS
        held.append(place(stage, f))
    assert None not in held, held
    assert stage.late_drops["late_speech"] == 0


def test_analysis_stamps_the_source_pace_of_each_frame(models: PipelineModels) -> None:
    async def main() -> list[SpeechFrame]:
        analyzer = SpeechAnalyzer(models.audio, models.streaming, models.mouth_model,
                                  models.infer, fps=FPS)
        inq: MediaQueue[AudioItem] = MediaQueue("a", 10_000, DropPolicy.BLOCK,
                                                audio_item_ms(16000))
        outq: MediaQueue[FeatureItem] = MediaQueue("f", 10_000, DropPolicy.BLOCK,
                                                   frame_item_ms(FPS))
        with ThreadPoolExecutor(1) as pool:
            stage = AnalysisStage(analyzer, pool, inq, outq)
            task = asyncio.create_task(stage.run())
            x = speechlike(1.6)
            await inq.put(SegmentStart("ws", CAPTURED, live=True))
            for n, i in enumerate(range(0, len(x), 320)):  # 20 ms chunks, 2.5 s pause at 1 s
                await inq.put(InputAudio(x[i : i + 320], CAPTURED + (n + 1) * CHUNK
                                         + (2.5 if i >= 16000 else 0.0)))
            await inq.put(SegmentEnd("ws"))
            frames = []
            while not isinstance(item := await outq.get(), SegmentEnd):
                if isinstance(item, SpeechFrame):
                    frames.append(item)
            task.cancel()
        return frames

    frames = asyncio.run(main())
    assert [f.index for f in frames] == list(range(40))
    paced = np.array([f.timestamps[STAMP_PACED_IN] for f in frames])
    captured = CAPTURED + np.arange(40) / FPS
    # Paced by the source: the capture time of the frame's first sample, 2.5 s later after the
    # pause — also for the last frames before it, whose lookahead came after the pause.
    on_time = [f.index for f in frames if f.timestamps[STAMP_AUDIO_IN] < CAPTURED + 1.5]
    released_late = [k for k in on_time if paced[k] > CAPTURED + 3.0]
    assert released_late, paced
    assert np.allclose(paced[: released_late[0]], captured[: released_late[0]], atol=0.021)
    assert np.allclose(paced[released_late[0] :], captured[released_late[0] :] + 2.5, atol=0.021)


# -- the live session, in real time ----------------------------------------------------------------
async def push_with_pause(
    session: AnchorSession, parts: list[np.ndarray], pause_s: float
) -> list[float]:
    """One live input pushing 20 ms chunks in real time, silent for `pause_s` between the parts
    (the connection stays open); the monotonic time each part began."""
    inp = session.open_input("test-mic", 16000, live=True)
    loop = asyncio.get_running_loop()
    starts = []
    for n, x in enumerate(parts):
        if n:
            await asyncio.sleep(pause_s)
        starts.append(session.clock.monotonic())
        t0 = loop.time()
        for k, i in enumerate(range(0, len(x), 320)):
            await inp.push(x[i : i + 320])
            await asyncio.sleep(max(0.0, t0 + (k + 1) * 0.02 - loop.time()))
    await inp.close()
    return starts


def run_with_pause(
    models: PipelineModels, parts: list[np.ndarray], pause_s: float, tail_s: float = 0.8
) -> tuple[list[OutputFrame], AnchorSession, list[float]]:
    async def main() -> tuple[list[OutputFrame], AnchorSession, list[float]]:
        tap = FrameTap()
        session = AnchorSession(models, SERVER, observers=[tap])
        await session.start()
        starts = await push_with_pause(session, parts, pause_s)
        await asyncio.sleep(session.live_latency_s + tail_s)
        await session.aclose()
        return tap.frames, session, starts

    return asyncio.run(main())


def input_frames_out(frames: list[OutputFrame]) -> int:
    """Released frames made from input frames (holds and idle frames carry no audio_in)."""
    return sum(1 for f in frames if f.source == "test-mic" and STAMP_AUDIO_IN in f.timestamps)


def test_a_pusher_that_pauses_for_2_5_s_loses_nothing(models: PipelineModels) -> None:
    first, second = speechlike(1.0), speechlike(1.5, seed=1)
    frames, session, starts = run_with_pause(models, [first, second], pause_s=2.5)
    x = np.concatenate([first, second])
    events = dict(session.recorder.events)
    # Every frame it sent was released: the sound once, in order; none skipped or counted.
    assert_sound_passes_through(frames, x, "test-mic")
    assert input_frames_out(frames) == -(-len(x) // SPF), events
    after = [f for f in frames if f.timestamps.get(STAMP_AUDIO_IN, 0.0) >= starts[1]]
    assert sum(f.speech for f in after) > 25, events
    dropped = session.dropped_counts()
    assert dropped["late_speech"] == 0, (dropped, events)
    if not events.get("resync"):  # (a loaded machine may stall us too: silence may then go)
        assert not any(dropped.values()), (dropped, events)
    # ...and it plays `live_latency` after it arrived again.
    late = [f.timestamps["out"] - f.timestamps[STAMP_AUDIO_IN] for f in after if f.speech]
    slack = 0.1 + 0.2 * events.get("resync", 0)
    assert -0.04 < float(np.median(late)) - session.live_latency_s < slack, np.round(late, 3)


def test_a_render_stall_skips_only_the_late_backlog_and_counts_it(
    models: PipelineModels,
) -> None:
    models.engine = StallingEngine(models.engine, stall_at=5, stall_s=1.8)  # type: ignore[assignment]
    x = np.concatenate([speechlike(3.0), np.zeros(int(1.3 * 16000), np.float32)])
    second = speechlike(1.0, seed=1)
    frames, session, starts = run_with_pause(models, [x, second], pause_s=0.0)
    events = dict(session.recorder.events)
    dropped = session.dropped_counts()
    # The backlog beyond max_behind_s (~0.8 s of speech) was skipped, and shows under dropped.
    assert 5 <= dropped["late_speech"] <= 35, (dropped, events)
    assert dropped["late_speech"] == events["catchup_speech"]
    assert dropped["late_silence"] == events.get("catchup", 0)
    # Nothing else went missing: every input frame was released or counted as skipped.
    n_in = -(-(len(x) + len(second)) // SPF)
    assert input_frames_out(frames) + dropped["late_speech"] + dropped["late_silence"] == n_in
    # The speech after the backlog plays, on time again after the silence won the lag back.
    after = [f for f in frames if f.timestamps.get(STAMP_AUDIO_IN, 0.0) >= starts[1]]
    assert sum(f.speech for f in after) > 15, events
    late = [f.timestamps["out"] - f.timestamps[STAMP_AUDIO_IN] for f in after if f.speech][-15:]
    assert abs(float(np.median(late)) - session.live_latency_s) < 0.1, np.round(late, 3)
