"""Audio/video offset of a talking-head clip, estimated from the lips and the speech.

Signals, both high-passed (minus their 1 s moving average: head motion and loudness drift are
not speech) and standardised:

- mouth opening, per 25 fps video frame: the inner-lip gap (mean of points 61..63 to the mean of
  65..67) plus the outer-lip gap (50..52 to 56..58), each divided by the inter-ocular distance
  (face size) and standardised, so the sum weighs both equally;
- speech, per 100 Hz row: the 13-D MFCC `anchor prepare` trains on (c0 is the log energy, the
  other coefficients tell an open vowel from a closed /m/ or a quiet fricative).

For every lag L (in MFCC rows, 10 ms, within +-`face.av_offset_max_ms`), video frame t is paired
with the mean of MFCC rows 4t + L .. 4t + L + 3 (L = 0 is the pairing the dataset stores) and a
ridge regression from those 13 values to the mouth opening is fitted and scored by 5-fold
cross-validation over contiguous blocks of frames: r(L) is the correlation between the mouth
opening and its held-out prediction. Plain cross-correlation with the frame energy is the
one-coefficient case of this; letting the regression weigh the spectrum makes the peak much
sharper on real clips, where loud is not always open (on the shared presenter clips the energy
cross-correlation peaks at 0.13-0.28 and is ambiguous; r(L) peaks at 0.4-0.6).

The estimate is the best lag: `offset_ms` = L* x 10 ms, positive meaning the audio is late (the
sound of frame t's mouth is heard L* rows after frame t). Its confidence:

- `correlation` = r(L*), how well the speech predicts the mouth at that lag;
- `second` = the best r(L) at least 3 frames (120 ms) away from L*, outside the peak's own lobe:
  the best competing offset;
- `chance` = the best r(L) over all lags with the speech displaced (circularly, by 8 amounts
  from the lag range + 1 s to the clip's length minus that): what speech that does not belong to
  these lips reaches by chance with this clip's length and rhythm;
- `confidence` = `correlation` - max(`second`, `chance`): how far the peak stands above any other
  offset and above chance.

The estimate is `confident` when `correlation` >= `face.av_offset_min_correlation`,
`confidence` >= `face.av_offset_min_margin` and the clip has at least `MIN_CONFIDENT_S` seconds
of frames. (Measured on 33 shared presenter and real clips, each paired with another clip's
speech: no pair of 8 s or more reached a confidence of 0.1, shorter pairs did; so short clips are
never confident.)
`zero` = r(0) is reported too: how well the clip is synchronised as it is.

`shift_audio` realigns the samples (positive: drop the late audio's head, so the sound comes
earlier) keeping their length, so the MFCC computed from them still has 4 rows per video frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from anchor.config import AnchorConfig, AudioConfig
from anchor.errors import ConfigError

MIN_FRAMES = 50  # frames a lag must pair up to be scored at all
MIN_CONFIDENT_S = 8.0  # shorter clips are never confident (see the module docstring)
LOBE_FRAMES = 3  # lags this close to the peak belong to the peak (mouth motion is smooth)
HIGHPASS_S = 1.0  # moving-average window removed from both signals
CHANCE_SHIFTS = 8  # displaced-speech scans behind `chance`
CHANCE_MIN_SHIFT_S = 1.0  # the speech is displaced by at least this beyond the lag range
FOLDS = 5
RIDGE = 0.01  # ridge penalty per training frame, on standardised MFCC


@dataclass(frozen=True)
class AvOffset:
    """An A/V offset estimate (see the module docstring for every field)."""

    offset_ms: float  # positive: the audio is late
    correlation: float
    second: float
    chance: float
    zero: float
    confident: bool
    frames: int

    @property
    def confidence(self) -> float:
        return self.correlation - max(self.second, self.chance)

    def offset_frames(self, fps: float) -> float:
        return self.offset_ms * fps / 1000.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "estimated_ms": round(self.offset_ms, 1),
            "correlation": round(self.correlation, 4),
            "second": round(self.second, 4),
            "chance": round(self.chance, 4),
            "confidence": round(self.confidence, 4),
            "zero": round(self.zero, 4),
            "confident": self.confident,
            "frames": self.frames,
        }


def parse_av_offset(value: str) -> str | float:
    """"auto", "off", or a fixed shift in milliseconds (positive: the audio is late)."""
    text = str(value).strip().lower()
    if text in ("auto", "off"):
        return text
    try:
        ms = float(text.removesuffix("ms"))
    except ValueError:
        ms = math.nan
    if not math.isfinite(ms):
        raise ConfigError(
            f"A/V offset {value!r} must be auto, off or a shift in milliseconds (e.g. 120, -80)"
        )
    return ms


def mouth_opening(landmarks: np.ndarray) -> np.ndarray:
    """(T,) inner-lip gap plus outer-lip gap, each over the inter-ocular distance, standardised."""
    lm = np.asarray(landmarks, dtype=np.float64)
    eyes = np.linalg.norm(lm[:, 42:48].mean(axis=1) - lm[:, 36:42].mean(axis=1), axis=1)
    eyes = np.maximum(eyes, 1e-6)
    inner = np.linalg.norm(lm[:, 65:68].mean(axis=1) - lm[:, 61:64].mean(axis=1), axis=1) / eyes
    outer = np.linalg.norm(lm[:, 56:59].mean(axis=1) - lm[:, 50:53].mean(axis=1), axis=1) / eyes
    return _standardise(inner) + _standardise(outer)


def speech_features(samples: np.ndarray, cfg: AudioConfig) -> np.ndarray:
    """(R, n_mfcc) the clip's MFCC rows (cfg.hop_ms apart; row r starts at sample r * hop)."""
    from anchor.audio.mfcc import mfcc

    return mfcc(samples, cfg).astype(np.float64)


def estimate_offset(
    opening: np.ndarray,
    features: np.ndarray,
    *,
    rows_per_frame: int = 4,
    row_ms: float = 10.0,
    max_lag_ms: float = 1000.0,
    min_correlation: float = 0.2,
    min_margin: float = 0.1,
) -> AvOffset:
    """The offset between a per-frame mouth signal (T,) and per-row speech features (R, D) whose
    rows k t .. k t + k - 1 (k = rows_per_frame) belong to frame t at offset 0."""
    y = np.asarray(opening, dtype=np.float64).reshape(-1)
    x = np.asarray(features, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    n, k = y.size, int(rows_per_frame)
    frame_ms = row_ms * k
    none = AvOffset(0.0, 0.0, 0.0, 0.0, 0.0, False, n)
    if (
        n < MIN_FRAMES
        or x.shape[0] < k * MIN_FRAMES
        or not (np.isfinite(y).all() and np.isfinite(x).all())
        or y.std() < 1e-9
        or float(x.std(axis=0).max()) < 1e-9
    ):
        return none
    y = _standardise(_highpass(y, HIGHPASS_S * 1000.0 / frame_ms))
    x = _standardise(_highpass(x, HIGHPASS_S * 1000.0 / row_ms))
    max_lag = max(0, int(round(max_lag_ms / row_ms)))
    lags = np.arange(-max_lag, max_lag + 1)
    r = _scan(y, x, lags, k)
    best = int(np.argmax(r))
    peak = float(r[best])
    far = np.abs(lags - lags[best]) >= LOBE_FRAMES * k
    second = float(r[far].max()) if far.any() else -1.0
    lo = max_lag + int(round(CHANCE_MIN_SHIFT_S * 1000.0 / row_ms))
    chance = 1.0  # a clip too short to displace its speech cannot be told from chance
    if x.shape[0] - 2 * lo > 0:
        shifts = np.unique(np.linspace(lo, x.shape[0] - lo, CHANCE_SHIFTS).round().astype(int))
        chance = max(float(_scan(y, np.roll(x, -int(s), axis=0), lags, k).max()) for s in shifts)
    confident = bool(
        n * frame_ms >= MIN_CONFIDENT_S * 1000.0
        and peak >= min_correlation
        and peak - max(second, chance) >= min_margin
    )
    return AvOffset(
        offset_ms=float(lags[best] * row_ms), correlation=peak, second=second, chance=chance,
        zero=float(r[max_lag]), confident=confident, frames=n,
    )


def estimate_av_offset(landmarks: np.ndarray, samples: np.ndarray, cfg: AnchorConfig) -> AvOffset:
    """The offset of a clip as `anchor prepare` pairs it: (T, 68, 2) landmarks per video frame and
    its audio at cfg.audio.sample_rate, sample 0 playing with frame 0."""
    return estimate_offset(
        mouth_opening(landmarks),
        speech_features(samples, cfg.audio),
        rows_per_frame=cfg.video.mfcc_per_frame,
        row_ms=cfg.audio.hop_ms,
        max_lag_ms=cfg.face.av_offset_max_ms,
        min_correlation=cfg.face.av_offset_min_correlation,
        min_margin=cfg.face.av_offset_min_margin,
    )


def planned_shift_ms(mode: str | float, estimate: AvOffset, fps: float) -> float:
    """The shift to apply: a fixed `mode` in ms; for "auto" the estimate when it is confident and
    more than one frame; otherwise ("off", or auto and not sure) 0."""
    if isinstance(mode, float | int) and not isinstance(mode, bool):
        return float(mode)
    if mode == "auto" and estimate.confident and abs(estimate.offset_ms) > 1000.0 / fps:
        return estimate.offset_ms
    return 0.0


def shift_audio(samples: np.ndarray, shift_ms: float, sample_rate: int) -> np.ndarray:
    """Samples moved earlier by `shift_ms` (later when negative), the same length: the head is
    dropped and silence appended, or silence prepended and the tail dropped."""
    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    shift = int(round(shift_ms * sample_rate / 1000.0))
    if shift == 0 or x.size == 0:
        return x
    out = np.zeros_like(x)
    if shift > 0:
        out[: max(0, x.size - shift)] = x[shift:]
    else:
        out[-shift:] = x[: max(0, x.size + shift)]
    return out


def _scan(y: np.ndarray, x: np.ndarray, lags: np.ndarray, k: int) -> np.ndarray:
    """r(L) for every lag (-1 where fewer than MIN_FRAMES frames pair up)."""
    cums = np.concatenate([np.zeros((1, x.shape[1])), np.cumsum(x, axis=0)])
    start0 = k * np.arange(y.size)
    r = np.full(lags.size, -1.0)
    for i, lag in enumerate(lags):
        start = start0 + lag
        ok = (start >= 0) & (start + k <= x.shape[0])
        if ok.sum() < MIN_FRAMES:
            continue
        s = start[ok]
        r[i] = _cv_correlation((cums[s + k] - cums[s]) / k, y[ok])
    return r


def _cv_correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Correlation of y with its ridge prediction from x, each fold predicted by a fit on the
    others (FOLDS contiguous blocks, so neighbouring frames do not leak into their own test)."""
    n = y.size
    fold = np.arange(n) * FOLDS // n
    pred = np.empty(n)
    eye = np.eye(x.shape[1])
    for f in range(FOLDS):
        test = fold == f
        train = ~test
        xm = x[train].mean(axis=0)
        ym = y[train].mean()
        a = x[train] - xm
        w = np.linalg.solve(a.T @ a + RIDGE * a.shape[0] * eye, a.T @ (y[train] - ym))
        pred[test] = (x[test] - xm) @ w + ym
    p = pred - pred.mean()
    q = y - y.mean()
    denom = math.sqrt(float(p @ p) * float(q @ q))
    return float(p @ q) / denom if denom > 0 else 0.0


def _highpass(x: np.ndarray, window: float) -> np.ndarray:
    """x minus its centred moving average over `window` samples (shrinking at the edges)."""
    w = max(1, int(round(window)))
    x2 = x.reshape(x.shape[0], -1)
    c = np.concatenate([np.zeros((1, x2.shape[1])), np.cumsum(x2, axis=0)])
    i = np.arange(x2.shape[0])
    lo = np.clip(i - w // 2, 0, x2.shape[0])
    hi = np.clip(i - w // 2 + w, 0, x2.shape[0])
    return (x2 - (c[hi] - c[lo]) / (hi - lo)[:, None]).reshape(x.shape)


def _standardise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    std = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(std > 1e-12, std, 1.0)
