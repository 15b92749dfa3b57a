"""The render stage's decisions, as plain code: for each output frame, idle / hold / render /
skip / catch up, from the media clock and running cost estimates.

`FramePlanner` holds the live schedule of the current segment and decides; `RenderStage`
(stages.py) only waits, submits work and emits frames. Every constant is a `PlannerConfig`
field (config section `planner`), so none hides in the code. With no clock (offline) every
frame renders back to back and nothing is ever late.

The live schedule: a live segment's first frame plays `live_latency` after its first sample was
captured (`begin`); frame k of the segment k / fps after that. A source that pauses (its
segment open, nothing sent) is re-planned from its audio's own arrival (`reanchor`), so what it
sends afterwards is not late; a stall of ours (a resync, a slow render) makes the segment late,
and `catch_up` drops silent frames beyond `catchup_s` and speech beyond `max_behind_s`, counting
each in `late_drops`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

from anchor.config import PlannerConfig
from anchor.pipeline.items import STAMP_AUDIO_IN, SegmentStart, SpeechFrame

log = logging.getLogger(__name__)

# When a frame's first sample reached us, judged by the source's pace when the audio that let
# the frame be analysed (its lookahead) arrived: `audio_in` unless the source paused in between.
STAMP_PACED_IN = "paced_in"


class FramePlanner:
    """Decides what each output frame is; `deadline(index)` is the media clock's (None offline)."""

    def __init__(self, cfg: PlannerConfig, fps: int, *, live: bool, live_latency_s: float,
                 deadline: Callable[[int], float] | None, origin: Callable[[], float]) -> None:
        self.cfg = cfg
        self.fps = fps
        self.live = live and deadline is not None
        self.live_latency_s = live_latency_s
        self._deadline = deadline
        self._origin = origin
        # Frames skipped to win back latency, by kind; counters, never reset (not by interrupts).
        self.late_drops: dict[str, int] = {"late_speech": 0, "late_silence": 0}
        self.skipping_speech = False  # in a run of skipped speech (warn once per run)
        # Running estimates (s): an idle frame; maps + inference per frame; compositing per frame.
        self.idle_s = 0.01
        self.render_s = 0.02
        self.compose_s = 0.005
        self.segment: SegmentStart | None = None
        self.start_at = 0  # output frame of the segment's first frame (later after a pause)
        self.planned_start = 0.0  # monotonic time planned for the live segment's first frame
        self.on_event: Callable[[str], None] = lambda _name: None

    # -- costs ---------------------------------------------------------------------------------
    def record(self, kind: str, seconds: float) -> None:
        """A measured cost ("idle", "render" or "compose", seconds per frame)."""
        a = self.cfg.cost_smoothing
        name = f"{kind}_s"
        setattr(self, name, (1 - a) * getattr(self, name) + a * seconds)

    # -- schedule ------------------------------------------------------------------------------
    def deadline(self, index: int) -> float:
        assert self._deadline is not None
        return self._deadline(index)

    def start_index(self, seg: SegmentStart, next_index: int) -> int:
        """Output frame for a segment's first frame: live segments play `live_latency` after
        their first sample was captured (never before the next free frame)."""
        if not self.live or not seg.live:
            return next_index
        due = math.ceil((seg.start_time + self.live_latency_s - self._origin()) * self.fps - 1e-6)
        return max(next_index, due)

    def begin(self, seg: SegmentStart, next_index: int) -> None:
        self.segment = seg
        self.start_at = self.start_index(seg, next_index)
        if self.live:
            self.planned_start = self.deadline(self.start_at)  # absolute: resyncs move away

    def end(self) -> None:
        self.segment = None

    def behind_s(self, frame: SpeechFrame, index: int) -> float:
        """How much later than planned a frame of a live segment would play at output frame
        `index`. Clock resyncs and underrun holds add to it; an input that arrives faster than
        real time does not. Negative while a re-planned frame waits; 0 for files and offline."""
        seg = self.segment
        if not self.live or seg is None or not seg.live:
            return 0.0
        return self.deadline(index) - (self.planned_start + frame.index / self.fps)

    def reanchor(self, frame: SpeechFrame, next_index: int) -> None:
        """A source pause: re-plan the live segment from this frame's own arrival (when its
        audio, a pause inside its lookahead included, arrived more than `pause_s` later than
        the schedule allows), so the run loop holds until then instead of judging it late."""
        seg = self.segment
        arrived = frame.timestamps.get(STAMP_PACED_IN, frame.timestamps.get(STAMP_AUDIO_IN))
        if not self.live or seg is None or not seg.live or arrived is None:
            return
        planned = self.planned_start + frame.index / self.fps
        due = arrived + self.live_latency_s
        if due - planned <= self.cfg.pause_s:
            return
        due_index = math.ceil((due - self._origin()) * self.fps - 1e-6)
        self.planned_start = self.deadline(due_index) - frame.index / self.fps
        self.start_at = max(self.start_at, due_index)
        self.on_event("reanchor")
        log.info("live segment %s: the source paused %.2f s; frame %d re-planned for frame %d "
                 "(now %d)", seg.source, due - planned, frame.index, due_index, next_index)

    def catch_up(self, frame: SpeechFrame, index: int) -> bool:
        """Drop this frame (True) to win back latency a stall of ours added to a live segment:
        silent frames beyond `catchup_s` (inaudible, lips stay with their sound), speech only
        beyond `max_behind_s` (the backlog that can no longer be shown in time). Counted."""
        self.reanchor(frame, index)
        behind = self.behind_s(frame, index)
        cfg = self.cfg
        if behind > cfg.max_behind_s or (not frame.speech and behind > cfg.catchup_s):
            self.on_event("catchup" if not frame.speech else "catchup_speech")
            self.late_drops["late_speech" if frame.speech else "late_silence"] += 1
            if frame.speech and not self.skipping_speech:
                seg = self.segment
                log.warning("live segment %s is %.2f s behind: skipping speech that can no "
                            "longer play in time", seg.source if seg else "?", behind)
            self.skipping_speech = self.skipping_speech or frame.speech
            return True
        if frame.speech:
            self.skipping_speech = False
        return False

    # -- timing of the loop --------------------------------------------------------------------
    def idle_delay(self, index: int, now: float) -> float:
        """Seconds to wait before making idle frame `index`: idle frames are made just
        `idle_lead_frames` ahead of their deadline (further ahead would push the next live
        segment later than its latency target)."""
        lead = self.cfg.idle_lead_frames / self.fps + self.idle_s
        return self.deadline(index) - lead - now

    def underrun_at(self, index: int) -> float:
        """When frame `index`'s features are given up on (an underrun: hold the last image)."""
        return self.deadline(index) - (self.idle_s + self.cfg.underrun_guard_s)

    def would_miss(self, index: int, now: float) -> bool:
        """Would rendering frame `index` now finish after its deadline? (live only)"""
        if not self.live:
            return False
        return now + self.render_s + self.compose_s > self.deadline(index)

    def skips(self, n: int, first_index: int, now: float, image_pending: bool) -> list[bool]:
        """Which of a batch of `n` speech frames repeat the previous image instead of rendering:
        none on time; every other one when the renderer is slower than real time (audio stays
        whole, the stream real-time); a lone frame when an image of this segment exists."""
        if not self.would_miss(first_index, now):
            return [False] * n
        if n == 1 and image_pending:
            return [True]
        return [i % 2 == 1 for i in range(n)]
