"""VoiceActivityDetector: silence, speech, hangover, chunk-size independence."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from anchor.audio.decode import decode_audio
from anchor.audio.vad import VoiceActivityDetector
from anchor.config import AudioConfig
from anchor.errors import AudioError

CFG = AudioConfig()
FRAME = CFG.sample_rate * CFG.vad_frame_ms // 1000


def vowel(seconds: float) -> np.ndarray:
    """Harmonics of 120 Hz shaped by formant-ish peaks near 700 and 1200 Hz, slight vibrato."""
    t = np.arange(int(seconds * CFG.sample_rate)) / CFG.sample_rate
    phase = 2 * np.pi * np.cumsum(120 + 3 * np.sin(2 * np.pi * 5 * t)) / CFG.sample_rate
    y = np.zeros_like(t)
    for k in range(1, 30):
        f = 120 * k
        amp = np.exp(-(((f - 700) / 200) ** 2)) + 0.6 * np.exp(-(((f - 1200) / 250) ** 2)) + 0.05
        y += amp * np.sin(k * phase)
    return (0.5 * y / np.abs(y).max()).astype(np.float32)


def speech(source: str, tmp_path: Path) -> np.ndarray:
    if source == "vowel":
        return vowel(1.0)
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not on PATH")
    wav = tmp_path / "speech.wav"
    subprocess.run(
        ["espeak-ng", "-w", str(wav), "Good evening, here is the news."],
        check=True,
        capture_output=True,
    )
    return decode_audio(wav, CFG.sample_rate)


def test_silence_is_not_speech() -> None:
    vad = VoiceActivityDetector(CFG)
    assert vad.push(np.zeros(CFG.sample_rate, dtype=np.float32)) is False


def test_quiet_hiss_is_not_speech() -> None:
    # webrtcvad alone flags steady -60 dBFS noise as speech; the energy gate does not.
    hiss = 0.001 * np.random.default_rng(0).standard_normal(CFG.sample_rate)
    vad = VoiceActivityDetector(CFG)
    states = [vad.push(hiss[i : i + FRAME]) for i in range(0, hiss.size, FRAME)]
    assert not any(states)


@pytest.mark.parametrize("source", ["vowel", "espeak"])
def test_speech_is_speech(source: str, tmp_path: Path) -> None:
    y = speech(source, tmp_path)
    vad = VoiceActivityDetector(CFG)
    states = [vad.push(y[i : i + 333]) for i in range(0, y.size, 333)]
    assert np.mean(states) > 0.8


def test_hangover_then_release() -> None:
    vad = VoiceActivityDetector(CFG)
    assert vad.push(vowel(0.5)) is True  # 0.5 s = 25 whole frames, the last one voiced
    hang_frames = CFG.vad_hangover_ms // CFG.vad_frame_ms
    silence = np.zeros(FRAME, dtype=np.float32)
    assert all(vad.push(silence) for _ in range(hang_frames))  # pause shorter than the hangover
    assert vad.push(silence) is False
    assert vad.push(vowel(0.1)) is True  # speech again


def test_partial_frames_wait_for_more_samples() -> None:
    vad = VoiceActivityDetector(CFG)
    y = vowel(0.1)
    assert vad.push(y[: FRAME - 1]) is False  # not a whole frame yet
    assert vad.frames_seen == 0
    assert vad.push(y[FRAME - 1 : FRAME]) is True
    assert vad.frames_seen == 1


@pytest.mark.parametrize("chunk", [1, 112, 333, 5000])
def test_chunk_size_does_not_change_decisions(chunk: int) -> None:
    y = np.concatenate([np.zeros(3000, np.float32), vowel(0.4), np.zeros(9000, np.float32)])
    frame_by_frame = VoiceActivityDetector(CFG)
    reference = [frame_by_frame.push(y[i : i + FRAME]) for i in range(0, y.size, FRAME)]
    assert True in reference and reference[-1] is False
    vad = VoiceActivityDetector(CFG)
    for i in range(0, y.size, chunk):
        state = vad.push(y[i : i + chunk])
        # The state after a push is the decision for the last whole frame seen so far.
        assert state == (reference[vad.frames_seen - 1] if vad.frames_seen else False)
    assert vad.frames_seen == y.size // FRAME


def test_reset_forgets_speech() -> None:
    vad = VoiceActivityDetector(CFG)
    vad.push(vowel(0.2))
    vad.reset()
    assert vad.push(np.zeros(FRAME, dtype=np.float32)) is False


def test_invalid_frame_length() -> None:
    with pytest.raises(AudioError, match="vad_frame_ms"):
        VoiceActivityDetector(dataclasses.replace(CFG, vad_frame_ms=25))
