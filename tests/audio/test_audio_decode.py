"""decode_audio: formats, mono mix, resampling, and one-line errors naming the file."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import scipy.io.wavfile

from anchor.audio.decode import decode_audio
from anchor.audio.mfcc import mfcc
from anchor.config import AudioConfig
from anchor.errors import AudioError


def peak_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / rate)[np.argmax(spectrum)])


def test_stereo_44k1_wav_becomes_16k_mono(tmp_path: Path) -> None:
    rate = 44100
    t = np.arange(2 * rate) / rate
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    stereo = np.stack([left, left], axis=1)
    path = tmp_path / "tone.wav"
    scipy.io.wavfile.write(path, rate, (stereo * 32767).astype(np.int16))
    y = decode_audio(path)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(y.size - 32000) <= 160  # resampler edge effects stay within 10 ms
    assert np.abs(y).max() <= 1.0
    assert peak_hz(y[1600:-1600], 16000) == pytest.approx(440, abs=2)
    assert np.sqrt(np.mean(y[1600:-1600] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.05)


def test_custom_target_rate(tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    t = np.arange(16000) / 16000
    scipy.io.wavfile.write(path, 16000, (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32))
    y = decode_audio(path, sample_rate=8000)
    assert abs(y.size - 8000) <= 80
    assert peak_hz(y, 8000) == pytest.approx(300, abs=2)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.wav"
    with pytest.raises(AudioError, match="no such file") as err:
        decode_audio(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_undecodable_file(tmp_path: Path) -> None:
    path = tmp_path / "junk.wav"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(AudioError, match="cannot decode") as err:
        decode_audio(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_video_without_audio_track(tmp_path: Path) -> None:
    path = tmp_path / "silent.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for _ in range(5):
            frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    with pytest.raises(AudioError, match="no audio track") as err:
        decode_audio(path)
    assert str(path) in str(err.value)


def test_shared_speech_wav(shared_media: Path) -> None:
    cfg = AudioConfig()
    y = decode_audio(shared_media / "speech" / "musetalk_sun.wav", cfg.sample_rate)
    assert y.size / 16000 == pytest.approx(22.5, abs=0.1)
    assert 0.05 < np.abs(y).max() <= 1.0
    rows = mfcc(y, cfg)
    assert rows.shape == (1 + (y.size - 400) // 160, 13)
    assert np.isfinite(rows).all()


def test_shared_mp3(shared_media: Path) -> None:
    y = decode_audio(shared_media / "speech" / "vexpress_intro_tts.mp3")
    assert y.size / 16000 == pytest.approx(31.1, abs=0.2)


def test_shared_mp4_with_audio(shared_media: Path) -> None:
    y = decode_audio(shared_media / "clips" / "retalking_face3.mp4")
    assert y.size / 16000 == pytest.approx(5.0, abs=0.1)
    assert np.sqrt(np.mean(y**2)) > 0.01  # real speech, not silence


def test_shared_video_only_file(shared_media: Path) -> None:
    path = shared_media / "templates" / "musetalk_sun.mp4"
    with pytest.raises(AudioError, match="no audio track") as err:
        decode_audio(path)
    assert str(path) in str(err.value)
