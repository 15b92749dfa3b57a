"""FramePlanner: the render stage's timing decisions as plain code, on explicit times."""

from __future__ import annotations

import numpy as np

from anchor.config import PlannerConfig
from anchor.pipeline.items import STAMP_AUDIO_IN, SegmentStart, SpeechFrame
from anchor.pipeline.planner import FramePlanner

FPS = 25
ORIGIN = 100.0


def planner(cfg: PlannerConfig | None = None, latency: float = 0.2) -> FramePlanner:
    return FramePlanner(cfg or PlannerConfig(), FPS, live=True, live_latency_s=latency,
                        deadline=lambda i: ORIGIN + i / FPS, origin=lambda: ORIGIN)


def frame(k: int, arrived: float, speech: bool = True) -> SpeechFrame:
    return SpeechFrame(k, np.zeros(10, np.float32), speech, np.zeros(640, np.float32),
                       {STAMP_AUDIO_IN: arrived})


def test_offline_renders_everything_back_to_back() -> None:
    p = FramePlanner(PlannerConfig(), FPS, live=False, live_latency_s=0.3, deadline=None,
                     origin=lambda: 0.0)
    p.begin(SegmentStart("file", 5.0, live=False), next_index=7)
    assert p.start_at == 7
    assert not p.catch_up(frame(0, 0.0), 7) and p.behind_s(frame(0, 0.0), 500) == 0.0
    assert p.skips(3, 7, now=1e9, image_pending=True) == [False, False, False]


def test_a_live_segment_starts_one_latency_after_its_capture() -> None:
    p = planner(latency=0.2)
    p.begin(SegmentStart("mic", ORIGIN + 1.0, live=True), next_index=10)
    assert p.start_at == 30  # 1.0 s + 0.2 s after the origin
    p.begin(SegmentStart("mic", ORIGIN - 5.0, live=True), next_index=10)
    assert p.start_at == 10  # never before the next free frame


def test_late_silence_is_dropped_early_and_speech_only_beyond_max_behind() -> None:
    p = planner(PlannerConfig(catchup_s=0.08, max_behind_s=1.0))
    p.begin(SegmentStart("ws", ORIGIN, live=True), next_index=0)  # frame k planned at k + 5
    on_time = [frame(k, ORIGIN + k / FPS) for k in range(3)]
    assert [p.catch_up(f, 5 + f.index) for f in on_time] == [False] * 3
    # 0.2 s late (a stall of ours): silence goes, speech stays
    assert p.catch_up(frame(3, ORIGIN + 3 / FPS, speech=False), 13)
    assert not p.catch_up(frame(4, ORIGIN + 4 / FPS), 14)
    # 1.2 s late: speech goes too
    assert p.catch_up(frame(5, ORIGIN + 5 / FPS), 40)
    assert p.late_drops == {"late_speech": 1, "late_silence": 1}


def test_the_constants_come_from_the_config() -> None:
    lenient = planner(PlannerConfig(catchup_s=0.5))
    lenient.begin(SegmentStart("ws", ORIGIN, live=True), next_index=0)
    assert not lenient.catch_up(frame(3, ORIGIN + 3 / FPS, speech=False), 13)  # 0.2 s < 0.5 s
    lead = planner(PlannerConfig(idle_lead_frames=5))
    assert abs(lead.idle_delay(10, now=ORIGIN) - (10 / FPS - 5 / FPS - lead.idle_s)) < 1e-9


def test_a_source_pause_is_replanned_not_late() -> None:
    p = planner()
    p.begin(SegmentStart("ws", ORIGIN, live=True), next_index=0)
    # frame 10's audio arrived 2 s later than planned: the segment moves, nothing is dropped
    assert not p.catch_up(frame(10, ORIGIN + 10 / FPS + 2.0), 20)
    assert p.start_at == round((10 / FPS + 2.0 + 0.2) * FPS)


def test_a_slow_renderer_repeats_every_other_frame() -> None:
    p = planner()
    p.record("render", 0.5)  # the running estimate jumps towards half a second per frame
    assert p.render_s > 0.1
    now = ORIGIN
    assert p.skips(4, 1, now, image_pending=False) == [False, True, False, True]
    assert p.skips(1, 1, now, image_pending=True) == [True]
    assert p.skips(2, 1000, now, image_pending=True) == [False, False]  # far ahead: on time
