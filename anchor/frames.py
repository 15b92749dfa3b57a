"""Small frozen dataclasses that flow between pipeline stages, each carrying pts.

Audio pts are in samples at the pipeline rate (16 kHz); video items carry their frame index,
whose pts is index / fps on the same origin. Control items (`Interrupt`, `SegmentEnd`) travel
in the same queues so ordering is preserved.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class AudioChunk:
    """Mono float32 samples in [-1, 1]; `pts` is the index of the first sample."""

    pts: int
    samples: np.ndarray
    sample_rate: int
    speech: bool = True  # VAD decision for the chunk

    @property
    def end(self) -> int:
        return self.pts + len(self.samples)


@dataclass(frozen=True)
class MfccFrames:
    """MFCC rows (n, 13); `index` is the 100 Hz frame index of the first row."""

    index: int
    features: np.ndarray


@dataclass(frozen=True)
class MouthFrame:
    """10-D PCA mouth features for video frame `index` (pts = index / fps)."""

    index: int
    features: np.ndarray
    speech: bool = True
    created: float = 0.0  # monotonic time the features were produced (latency bookkeeping)


@dataclass(frozen=True)
class FaceMap:
    """Facial map (H, W, C) uint8 for video frame `index`, drawn from template frame `template_index`."""

    index: int
    template_index: int
    image: np.ndarray
    speech: bool = True


@dataclass(frozen=True)
class FaceImage:
    """Rendered face crop (H, W, 3) uint8 RGB."""

    index: int
    template_index: int
    image: np.ndarray
    speech: bool = True


@dataclass(frozen=True)
class VideoFrame:
    """A full composited frame (H, W, 3) uint8 RGB ready for encoding."""

    index: int
    image: np.ndarray
    speech: bool = False
    timestamps: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Interrupt:
    """Flush everything queued downstream and return to idle at the next frame."""

    reason: str = "interrupt"


@dataclass(frozen=True)
class SegmentEnd:
    """An utterance (file, push stream) has ended; pad windows with silence and flush."""

    source: str = ""
