"""MFCC: librosa agreement, shapes, streaming == offline, silence row, per-video-frame alignment."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from anchor.audio.mfcc import MfccExtractor, mfcc, mfcc_for_frames, silence_mfcc
from anchor.config import AudioConfig

CFG = AudioConfig()
SR = CFG.sample_rate


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    """Syllable-rate modulated harmonics of a gliding pitch, a formant-ish tone, and noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    voiced = sum(np.sin(k * phase) / k for k in range(1, 20))
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 4 * t)) ** 2
    y = 0.15 * voiced * envelope + 0.05 * np.sin(2 * np.pi * 1500 * t)
    y += 0.02 * rng.standard_normal(t.size)
    return (0.8 * y / np.abs(y).max()).astype(np.float32)


def espeak_speech(tmp_path: Path) -> np.ndarray:
    from anchor.audio.decode import decode_audio

    wav = tmp_path / "speech.wav"
    subprocess.run(
        ["espeak-ng", "-w", str(wav), "Good evening. Here is the news at nine o'clock."],
        check=True,
        capture_output=True,
    )
    return decode_audio(wav, SR)


def librosa_mfcc(y: np.ndarray, cfg: AudioConfig) -> np.ndarray:
    librosa = pytest.importorskip("librosa")
    mel = librosa.feature.melspectrogram(
        y=y,
        sr=cfg.sample_rate,
        n_fft=cfg.win_samples,
        hop_length=cfg.hop_samples,
        win_length=cfg.win_samples,
        window="hann",
        center=False,
        power=2.0,
        n_mels=cfg.n_mels,
        fmin=cfg.fmin,
        fmax=cfg.fmax,
        htk=False,
        norm="slaney",
    )
    db = librosa.power_to_db(mel, ref=1.0, amin=cfg.log_floor, top_db=None)
    return np.asarray(librosa.feature.mfcc(S=db, n_mfcc=cfg.n_mfcc).T)


@pytest.mark.parametrize("source", ["synthetic", "espeak"])
def test_matches_librosa(source: str, tmp_path: Path) -> None:
    if source == "espeak":
        if shutil.which("espeak-ng") is None:
            pytest.skip("espeak-ng not on PATH")
        y = espeak_speech(tmp_path)
    else:
        y = speech_like(3.0)
    ours = mfcc(y, CFG)
    ref = librosa_mfcc(y, CFG)
    assert ours.shape == ref.shape
    # dB-scaled cepstra (c0 is in the hundreds); librosa computes in float32: measured ~3e-5.
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-3)


@pytest.mark.parametrize("n", [0, 1, 399, 400, 401, 559, 560, 16000, 16001])
def test_row_count_and_dtype(n: int) -> None:
    out = mfcc(np.zeros(n, dtype=np.float32) + 0.01, CFG)
    expected = 0 if n < 400 else 1 + (n - 400) // 160
    assert out.shape == (expected, 13)
    assert out.dtype == np.float32


def test_row_covers_its_window() -> None:
    # A click inside row r's window only changes rows whose window contains it.
    y = np.zeros(SR, dtype=np.float32)
    y[5000] = 1.0
    out = mfcc(y, CFG)
    silent = silence_mfcc(CFG)
    touched = [r for r in range(out.shape[0]) if not np.allclose(out[r], silent)]
    assert touched == [r for r in range(out.shape[0]) if 160 * r <= 5000 < 160 * r + 400]


@pytest.mark.parametrize(
    "chunking",
    ["7ms", "20ms", "333ms", "random", "one-sample"],
)
def test_streaming_equals_offline(chunking: str) -> None:
    y = speech_like(0.25 if chunking == "one-sample" else 2.0, seed=1)
    rng = np.random.default_rng(2)
    if chunking == "one-sample":
        sizes = [1] * y.size
    elif chunking == "random":
        sizes = list(rng.integers(0, 900, size=200))
    else:
        sizes = [int(float(chunking[:-2]) * SR / 1000)] * (y.size // 100 + 1)
    ext = MfccExtractor(CFG)
    rows = []
    pos = 0
    for size in sizes:
        if pos >= y.size:
            break
        rows.append(ext.push(y[pos : pos + size]))
        rows.append(ext.push(np.zeros(0, dtype=np.float32)))  # empty chunks are harmless
        pos += size
    rows.append(ext.push(y[pos:]))
    streamed = np.concatenate(rows)
    offline = mfcc(y, CFG)
    assert streamed.shape == offline.shape
    assert ext.rows_emitted == offline.shape[0]
    assert np.abs(streamed - offline).max() <= 1e-5


def test_extractor_reset_starts_a_new_stream() -> None:
    y = speech_like(0.5, seed=3)
    ext = MfccExtractor(CFG)
    ext.push(np.ones(1234, dtype=np.float32))
    ext.reset()
    assert ext.rows_emitted == 0
    np.testing.assert_allclose(ext.push(y), mfcc(y, CFG), atol=1e-6)


def test_silence_row() -> None:
    row = silence_mfcc(CFG)
    assert row.shape == (13,)
    # Every mel band sits at the floor, so only c0 is non-zero (ortho DCT of a constant).
    expected_c0 = 10 * np.log10(CFG.log_floor) * np.sqrt(CFG.n_mels)
    assert row[0] == pytest.approx(expected_c0, rel=1e-5)
    np.testing.assert_allclose(row[1:], 0.0, atol=1e-4)
    np.testing.assert_array_equal(
        mfcc(np.zeros(2000, dtype=np.float32), CFG), np.tile(row, (11, 1))
    )


def test_mfcc_for_frames_truncates_long_audio() -> None:
    y = speech_like(1.0, seed=4)
    out = mfcc_for_frames(y, CFG, n_frames=10)
    assert out.shape == (40, 13)
    np.testing.assert_array_equal(out, mfcc(y, CFG)[:40])


def test_mfcc_for_frames_pads_short_audio_with_silence() -> None:
    y = speech_like(0.2, seed=5)  # 3200 samples: 18 full rows
    out = mfcc_for_frames(y, CFG, n_frames=25, mfcc_per_frame=4)
    assert out.shape == (100, 13)
    np.testing.assert_array_equal(out[:18], mfcc(y, CFG))
    np.testing.assert_allclose(out[-1], silence_mfcc(CFG), atol=1e-4)  # far past the audio
    assert mfcc_for_frames(y, CFG, n_frames=0).shape == (0, 13)


def test_library_never_imports_librosa() -> None:
    code = (
        "import sys, anchor.audio.mfcc, anchor.audio.decode, anchor.audio.resample, "
        "anchor.audio.vad; assert 'librosa' not in sys.modules, 'librosa imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
