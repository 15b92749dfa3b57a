"""Phoneme timings -> mouth constraints on the TCN's PCA features (text input only).

From audio alone the TCN is often unsure whether the lips meet on p/b/m (a short closure with
little acoustic energy) or how round an "oo" is. With text input the TTS engine says which
phoneme plays when, so the mouth can be corrected where the phoneme leaves no doubt:

- bilabial (p b m): the lips close: the inner-lip gap is driven to `closed_gap`;
- rounded (uw ow w ...): the mouth narrows to at most `rounded_width` x the neutral width;
- open vowels (aa ae ah ...): the inner-lip gap is at least `open_gap` (a floor, so a vowel the
  TCN already opens wide stays as it is).

The TCN stays the base. Each correction is the smallest change of the PCA features (least
squares) that meets the constraint: the inner gap and the mouth width are linear in the features
(features -> PCA -> normalised landmarks), so the change has a closed form, and the PCA's own
components carry the jaw and lip co-movement the renderer was trained on. A frame's weight is
the share of it the phoneme covers (the frame holding a bilabial's midpoint always gets the full
closure), times `strength`.

Gaps and widths are in normalised mouth units (inter-ocular distance = 1, see features.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from anchor.mouth.features import MOUTH_POINTS, MouthPca

# Local indices of the 20 mouth points (48..67): the inner lip is 60..67.
_INNER_UPPER = (13, 14, 15)  # 61 62 63
_INNER_LOWER = (17, 18, 19)  # 67 66 65 (order does not matter for a mean)
_INNER_LEFT, _INNER_RIGHT = 12, 16  # 60, 64
_OUTER_LEFT, _OUTER_RIGHT = 0, 6  # 48, 54

VISEME_CLASSES = ("bilabial", "rounded", "open")  # the ones that constrain the mouth


@dataclass(frozen=True)
class PhonemeCue:
    """One phoneme of the speech: its mouth class ("bilabial", "rounded", "open", "other")
    from start_s to end_s, seconds from the segment's first sample."""

    viseme: str
    start_s: float
    end_s: float
    label: str = ""


@dataclass(frozen=True)
class WordCue:
    """One word of the speech (lower case, punctuation stripped), seconds from the segment's
    first sample."""

    word: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class SpeechCues:
    """What the TTS knows about a segment's audio: phonemes and words with their timings."""

    phonemes: tuple[PhonemeCue, ...] = ()
    words: tuple[WordCue, ...] = ()

    def shifted(self, offset_s: float) -> SpeechCues:
        """The same cues `offset_s` later (to concatenate sentences into one segment)."""
        return SpeechCues(
            tuple(PhonemeCue(p.viseme, p.start_s + offset_s, p.end_s + offset_s, p.label)
                  for p in self.phonemes),
            tuple(WordCue(w.word, w.start_s + offset_s, w.end_s + offset_s) for w in self.words),
        )

    @staticmethod
    def concat(parts: Iterable[tuple[float, SpeechCues]]) -> SpeechCues:
        """Cues of consecutive pieces, each (offset_s of its first sample, its cues)."""
        phonemes: list[PhonemeCue] = []
        words: list[WordCue] = []
        for offset, cues in parts:
            moved = cues.shifted(offset)
            phonemes += moved.phonemes
            words += moved.words
        return SpeechCues(tuple(phonemes), tuple(words))


@dataclass(frozen=True)
class VisemeTargets:
    """Constraint values, normalised mouth units (inter-ocular distance = 1)."""

    closed_gap: float = 0.0
    open_gap: float = 0.08
    rounded_width: float = 0.85  # of the neutral (PCA mean) inner-lip width


def frame_weights(
    cues: Sequence[PhonemeCue], n_frames: int, fps: int
) -> dict[str, np.ndarray]:
    """Per viseme class, (n_frames,) weights in [0, 1]: the share of frame t's interval
    [t/fps, (t+1)/fps) the class's phonemes cover, doubled and clipped (a frame half covered is
    fully constrained); the frame holding a bilabial's midpoint is always 1, so even a 30 ms
    closure closes the lips on screen."""
    out = {c: np.zeros(n_frames, np.float32) for c in VISEME_CLASSES}
    if n_frames <= 0:
        return out
    dt = 1.0 / fps
    for p in cues:
        if p.viseme not in out or p.end_s <= p.start_s:
            continue
        w = out[p.viseme]
        t0 = max(0, int(np.floor(p.start_s * fps)))
        t1 = min(n_frames - 1, int(np.floor((p.end_s - 1e-9) * fps)))
        for t in range(t0, t1 + 1):
            overlap = min(p.end_s, (t + 1) * dt) - max(p.start_s, t * dt)
            w[t] = max(w[t], min(1.0, 2.0 * overlap / dt))
        if p.viseme == "bilabial":
            mid = int(np.floor(0.5 * (p.start_s + p.end_s) * fps))
            if 0 <= mid < n_frames:
                w[mid] = 1.0
    return out


class VisemeShaper:
    """Applies phoneme constraints to (T, dims) PCA mouth features of one avatar."""

    def __init__(self, pca: MouthPca, targets: VisemeTargets | None = None,
                 strength: float = 1.0, reference: np.ndarray | None = None) -> None:
        """`reference`: the (40,) normalised mouth the features are offsets from (the facial
        map adds the template's own mouth, `TemplateFrame.mouth_mean`, to the PCA shape); the
        mean over the avatar's templates. Gaps and widths are then absolute: 0 = lips touching."""
        self.pca = pca
        self.targets = targets or VisemeTargets()
        self.strength = float(np.clip(strength, 0.0, 1.0))
        comps = pca.components.astype(np.float64)  # (dims, 40)
        mean = pca.mean.astype(np.float64)
        if reference is not None:
            mean = mean + np.asarray(reference, np.float64).reshape(2 * MOUTH_POINTS)
        self._gap = self._functional(comps, mean, _gap_weights())
        self._width = self._functional(comps, mean, _width_weights())
        self.neutral_width = self._width[1]  # the reference mouth's inner width

    @staticmethod
    def _functional(comps: np.ndarray, mean: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, float]:
        """f(z) = a.z + b for a linear measure w.m of the normalised mouth m = z C + mean."""
        return comps @ w, float(mean @ w)

    def gap(self, z: np.ndarray) -> np.ndarray:
        """Inner-lip gap (lower minus upper lip, normalised units) of (..., dims) features."""
        a, b = self._gap
        return np.asarray(z, np.float64) @ a + b

    def width(self, z: np.ndarray) -> np.ndarray:
        """Inner-lip width (corner to corner, normalised units)."""
        a, b = self._width
        return np.asarray(z, np.float64) @ a + b

    def _move(self, z: np.ndarray, f: tuple[np.ndarray, float], target: np.ndarray,
              mask: np.ndarray, w: np.ndarray) -> np.ndarray:
        """z + w * (the least-squares step making f(z) == target), where mask is set."""
        a, b = f
        norm = float(a @ a)
        if norm <= 1e-12:
            return z
        step = (target - (z @ a + b)) / norm  # (T,)
        step = np.where(mask, step, 0.0) * w
        return z + step[:, None] * a[None, :]

    def apply(self, features: np.ndarray, weights: dict[str, np.ndarray]) -> np.ndarray:
        """(T, dims) features constrained by `frame_weights` output (same T)."""
        z = np.asarray(features, np.float64).copy()
        if self.strength <= 0.0 or z.size == 0:
            return z.astype(np.float32)
        tg = self.targets
        n = len(z)
        zero = np.zeros(n)
        w_round = weights.get("rounded", zero)[:n] * self.strength
        if np.any(w_round > 0):
            limit = np.full(n, tg.rounded_width * self.neutral_width)
            z = self._move(z, self._width, limit, self.width(z) > limit, w_round)
        w_open = weights.get("open", zero)[:n] * self.strength
        if np.any(w_open > 0):
            floor = np.full(n, tg.open_gap)
            z = self._move(z, self._gap, floor, self.gap(z) < floor, w_open)
        w_closed = weights.get("bilabial", zero)[:n] * self.strength
        if np.any(w_closed > 0):  # last: a closure wins over a neighbouring vowel's floor
            closed = np.full(n, tg.closed_gap)
            z = self._move(z, self._gap, closed, self.gap(z) > closed, w_closed)
        return z.astype(np.float32)


def _gap_weights() -> np.ndarray:
    w = np.zeros(2 * MOUTH_POINTS)
    for k in _INNER_LOWER:
        w[2 * k + 1] += 1.0 / len(_INNER_LOWER)
    for k in _INNER_UPPER:
        w[2 * k + 1] -= 1.0 / len(_INNER_UPPER)
    return w


def _width_weights() -> np.ndarray:
    w = np.zeros(2 * MOUTH_POINTS)
    w[2 * _INNER_RIGHT] = 1.0
    w[2 * _INNER_LEFT] = -1.0
    return w


def gap_of_points(mouth: np.ndarray) -> np.ndarray:
    """Inner-lip gap of (..., 40) normalised mouth shapes (the same measure as `gap`)."""
    return np.asarray(mouth, np.float64) @ _gap_weights()


def phoneme_target(cues: Sequence[PhonemeCue], n_frames: int, fps: int) -> np.ndarray:
    """(n_frames,) a phoneme-derived mouth opening in [0, 1] for evaluation: open vowels 1,
    rounded 0.6, other speech sounds 0.35, bilabials and pauses 0, by frame coverage."""
    level = {"open": 1.0, "rounded": 0.6, "other": 0.35, "bilabial": 0.0}
    out = np.zeros(n_frames)
    cover = np.zeros(n_frames)
    dt = 1.0 / fps
    for p in cues:
        v = 0.0 if p.label in ("pau", "") and p.viseme == "other" else level.get(p.viseme, 0.0)
        t0 = max(0, int(np.floor(p.start_s * fps)))
        t1 = min(n_frames - 1, int(np.floor((p.end_s - 1e-9) * fps)))
        for t in range(t0, t1 + 1):
            ov = min(p.end_s, (t + 1) * dt) - max(p.start_s, t * dt)
            if ov > 0:
                out[t] += v * ov
                cover[t] += ov
    return np.where(cover > 0, out / np.maximum(cover, 1e-9), 0.0)
