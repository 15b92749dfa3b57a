"""13-D MFCC at 100 Hz, offline and streaming, numerically identical.

Matches librosa (``melspectrogram(center=False, power=2, htk=False, norm='slaney')`` ->
``power_to_db(ref=1, amin=log_floor, top_db=None)`` -> ``mfcc(n_mfcc=13)``) without importing it:
the Slaney mel filterbank is rebuilt here in numpy. Row ``r`` covers samples
``[hop*r, hop*r + win)``; no centering or padding.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.fft

from anchor.config import AudioConfig
from anchor.errors import AudioError

# Slaney's auditory-toolbox mel scale: linear below 1 kHz, logarithmic above.
_F_SP = 200.0 / 3.0
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOG_STEP = np.log(6.4) / 27.0


def hz_to_mel(hz: np.ndarray) -> np.ndarray:
    hz = np.asarray(hz, dtype=np.float64)
    mel = hz / _F_SP
    log_part = hz >= _MIN_LOG_HZ
    return np.where(
        log_part, _MIN_LOG_MEL + np.log(np.maximum(hz, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOG_STEP, mel
    )


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    hz = _F_SP * mel
    log_part = mel >= _MIN_LOG_MEL
    return np.where(log_part, _MIN_LOG_HZ * np.exp(_LOG_STEP * (mel - _MIN_LOG_MEL)), hz)


def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float
) -> np.ndarray:
    """(n_mels, n_fft//2 + 1) triangular filters, Slaney area-normalised (librosa semantics)."""
    fft_freqs = np.fft.rfftfreq(n_fft, d=1.0 / sample_rate)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(np.array(fmin)), hz_to_mel(np.array(fmax)), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]
    return weights


@lru_cache(maxsize=8)
def _analysis(cfg: AudioConfig) -> tuple[np.ndarray, np.ndarray]:
    """Periodic Hann window and transposed mel filterbank for cfg (cached; configs are frozen)."""
    win = cfg.win_samples
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(win) / win)  # periodic (fftbins=True)
    fb = mel_filterbank(cfg.sample_rate, win, cfg.n_mels, cfg.fmin, cfg.fmax)
    window.flags.writeable = False
    fb_t = np.ascontiguousarray(fb.T)
    fb_t.flags.writeable = False
    return window, fb_t


def _check(cfg: AudioConfig) -> None:
    if cfg.win_samples < 1 or cfg.hop_samples < 1:
        raise AudioError(f"audio: window ({cfg.win_ms} ms) and hop ({cfg.hop_ms} ms) must be > 0")
    if cfg.n_mfcc > cfg.n_mels:
        raise AudioError(f"audio: n_mfcc ({cfg.n_mfcc}) exceeds n_mels ({cfg.n_mels})")


def mfcc(samples: np.ndarray, cfg: AudioConfig) -> np.ndarray:
    """(n, n_mfcc) float32 MFCC of mono samples at cfg.sample_rate; n = 1 + (N - win) // hop."""
    _check(cfg)
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    win, hop = cfg.win_samples, cfg.hop_samples
    if x.size < win:
        return np.zeros((0, cfg.n_mfcc), dtype=np.float32)
    window, fb_t = _analysis(cfg)
    frames = np.lib.stride_tricks.sliding_window_view(x, win)[::hop]  # (n, win) view, no copy
    spec = scipy.fft.rfft(frames * window, n=win, axis=1)
    power = spec.real**2 + spec.imag**2
    mel = power @ fb_t
    log_mel = 10.0 * np.log10(np.maximum(cfg.log_floor, mel))
    out = scipy.fft.dct(log_mel, type=2, norm="ortho", axis=1)[:, : cfg.n_mfcc]
    return out.astype(np.float32)


def silence_mfcc(cfg: AudioConfig) -> np.ndarray:
    """(n_mfcc,) the row digital silence produces: pads windows at stream edges."""
    return mfcc(np.zeros(cfg.win_samples, dtype=np.float32), cfg)[0]


def mfcc_for_frames(
    samples: np.ndarray, cfg: AudioConfig, n_frames: int, mfcc_per_frame: int = 4
) -> np.ndarray:
    """(mfcc_per_frame * n_frames, n_mfcc): audio zero-padded/truncated so that rows
    ``k*t .. k*t + k-1`` belong to video frame t."""
    if n_frames < 0 or mfcc_per_frame < 1:
        raise AudioError(f"audio: invalid n_frames={n_frames} / mfcc_per_frame={mfcc_per_frame}")
    rows = mfcc_per_frame * n_frames
    if rows == 0:
        return np.zeros((0, cfg.n_mfcc), dtype=np.float32)
    need = cfg.hop_samples * (rows - 1) + cfg.win_samples
    x = np.asarray(samples, dtype=np.float32).reshape(-1)[:need]
    if x.size < need:
        x = np.concatenate([x, np.zeros(need - x.size, dtype=np.float32)])
    return mfcc(x, cfg)


class MfccExtractor:
    """Streaming MFCC: feed any chunk sizes, get exactly the rows `mfcc()` gives for the whole."""

    def __init__(self, cfg: AudioConfig) -> None:
        _check(cfg)
        self.cfg = cfg
        self._buf = np.zeros(0, dtype=np.float32)  # samples from the next row's start onwards
        self.rows_emitted = 0

    def reset(self) -> None:
        self._buf = np.zeros(0, dtype=np.float32)
        self.rows_emitted = 0

    def push(self, samples: np.ndarray) -> np.ndarray:
        """(k, n_mfcc) rows completed by this chunk (k may be 0)."""
        chunk = np.asarray(samples, dtype=np.float32).reshape(-1)
        buf = np.concatenate([self._buf, chunk]) if chunk.size else self._buf
        out = mfcc(buf, self.cfg)
        # Keep everything from the first row not yet computed.
        self._buf = buf[out.shape[0] * self.cfg.hop_samples :].copy()
        self.rows_emitted += out.shape[0]
        return out
