"""Items that flow between the pipeline's stages, and the stamps they carry.

Audio travels as `InputAudio` at 16 kHz between `SegmentStart` / `SegmentEnd` markers; the
analysis stage turns it into `SpeechFrame`s (one per video frame, carrying that
frame's 640 samples); the render stage turns those into `OutputFrame`s on the output timeline,
where frame n owns audio samples [n * 640, (n + 1) * 640). Every item carries a `timestamps` dict
(stage name -> monotonic seconds) that observers read; it is the only mutable part.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from anchor.mouth.visemes import SpeechCues

# Stage stamps, in pipeline order (the keys of `timestamps`).
STAMP_AUDIO_IN = "audio_in"  # the chunk holding the frame's first sample reached the server
STAMP_ANALYSED = "analysed"  # mouth features for the frame exist (MFCC + TCN window done)
STAMP_RENDER_START = "render_start"  # the render worker picked the frame up
STAMP_RENDERED = "rendered"  # facial map + renderer + compositor done
STAMP_OUT = "out"  # the paced player released the frame to the viewers / sink
STAMP_SENT = "sent"  # first viewer track handed it to its encoder


@dataclass(frozen=True)
class SegmentStart:
    """A contiguous run of input audio begins (a file, a push connection, a microphone).

    `start_time` is the monotonic time its first sample was captured (live) or arrived (file);
    `live` sources arrive at real-time pace, so the render stage schedules their first frame
    `live latency` after `start_time`; file segments start at the next free frame.
    """

    source: str
    start_time: float
    live: bool
    sample_rate: int = 16000
    # Text input: the TTS's phoneme and word timings for this segment (seconds from its start).
    cues: SpeechCues | None = None


@dataclass(frozen=True)
class SegmentEnd:
    """The segment has ended (a file, a push connection): analysis pads its windows with
    silence and flushes its last frames."""

    source: str = ""


@dataclass(frozen=True)
class InputAudio:
    """16 kHz mono float32 samples of the current segment, with the time they reached us."""

    samples: np.ndarray
    arrival: float


@dataclass(frozen=True)
class EndOfStream:
    """No more input ever (offline rendering): stages finish and return."""


@dataclass(frozen=True)
class SpeechFrame:
    """One input video frame after analysis: its mouth features, VAD state and audio.

    `index` counts frames within the segment; `audio` is exactly samples_per_frame float32
    samples (the segment's last frame is zero-padded).
    """

    index: int
    features: np.ndarray
    speech: bool
    audio: np.ndarray
    timestamps: dict[str, float] = field(default_factory=dict)
    words: tuple[str, ...] = ()  # text input: the words whose speech starts in this frame


@dataclass(frozen=True)
class OutputFrame:
    """Frame n of the output timeline: the composited image and the audio that plays with it."""

    index: int
    image: np.ndarray
    audio: np.ndarray
    speech: bool
    source: str = ""  # the segment it belongs to ("" = idle between segments)
    timestamps: dict[str, float] = field(default_factory=dict)
