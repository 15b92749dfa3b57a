"""Offline and streaming resampling: chunking does not matter, tones keep their pitch."""

from __future__ import annotations

import numpy as np
import pytest

from anchor.audio.resample import StreamResampler, resample
from anchor.errors import AudioError

RATES = [(48000, 16000), (44100, 16000), (8000, 16000), (22050, 16000), (16000, 48000)]


def tone(rate: int, hz: float, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def peak_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / rate)[np.argmax(spectrum)])


def stream(x: np.ndarray, sizes: list[int], rs: StreamResampler) -> np.ndarray:
    out, pos = [], 0
    for size in sizes:
        out.append(rs.process(x[pos : pos + size]))
        pos += size
    out.append(rs.process(x[pos:]))
    out.append(rs.flush())
    return np.concatenate(out)


@pytest.mark.parametrize(("in_rate", "out_rate"), RATES)
@pytest.mark.parametrize("chunking", ["10ms", "random", "one-sample"])
def test_streaming_matches_one_shot(in_rate: int, out_rate: int, chunking: str) -> None:
    rng = np.random.default_rng(0)
    x = (0.3 * rng.standard_normal(in_rate // 5 + 13)).astype(np.float32)  # ~0.2 s, odd length
    if chunking == "10ms":
        sizes = [in_rate // 100] * (x.size // (in_rate // 100))
    elif chunking == "random":
        sizes = list(rng.integers(0, 700, size=x.size // 300))
    else:
        sizes = [1] * x.size
    one_shot = resample(x, in_rate, out_rate)
    streamed = stream(x, sizes, StreamResampler(in_rate, out_rate))
    assert one_shot.size == -(-x.size * out_rate // in_rate)
    assert streamed.shape == one_shot.shape
    # Same filter and alignment: only summation order differs.
    np.testing.assert_allclose(streamed, one_shot, rtol=0, atol=1e-6)


def test_output_arrives_as_input_arrives() -> None:
    # 20 ms browser-mic chunks at 48 kHz give ~320 samples each at 16 kHz (no bunching).
    rs = StreamResampler(48000, 16000)
    x = tone(48000, 300, 1.0)
    sizes = [rs.process(x[i : i + 960]).size for i in range(0, x.size, 960)]
    assert sizes[0] >= 300
    assert all(s == 320 for s in sizes[1:])


@pytest.mark.parametrize(
    ("in_rate", "out_rate", "hz"),
    [(48000, 16000, 1000.0), (44100, 16000, 440.0), (8000, 16000, 1234.0)],
)
def test_tone_keeps_frequency_and_level(in_rate: int, out_rate: int, hz: float) -> None:
    x = tone(in_rate, hz, 1.0)
    rs = StreamResampler(in_rate, out_rate)
    y = stream(x, [in_rate // 50] * 49, rs)[out_rate // 20 : -out_rate // 20]  # skip the edges
    assert peak_hz(y, out_rate) == pytest.approx(hz, abs=1.5)
    assert np.sqrt(np.mean(y**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.02)


def test_downsampling_removes_content_above_new_nyquist() -> None:
    # 12 kHz at 48 kHz would alias to 4 kHz at 16 kHz without the low-pass filter.
    y = resample(tone(48000, 12000, 0.5), 48000, 16000)[800:-800]
    assert np.sqrt(np.mean(y**2)) < 0.5 * 10 ** (-40 / 20)


def test_flush_resets_for_the_next_stream() -> None:
    x = tone(48000, 500, 0.1)
    rs = StreamResampler(48000, 16000)
    first = stream(x, [480] * 9, rs)
    second = stream(x, [1000] * 4, rs)
    np.testing.assert_allclose(first, second, atol=1e-6)


def test_same_rate_is_passthrough() -> None:
    x = tone(16000, 440, 0.1)
    np.testing.assert_array_equal(resample(x, 16000, 16000), x)
    np.testing.assert_array_equal(stream(x, [37] * 40, StreamResampler(16000, 16000)), x)


@pytest.mark.parametrize(("in_rate", "out_rate"), [(0, 16000), (16000, -1), (44100.5, 16000)])
def test_invalid_rates(in_rate: float, out_rate: int) -> None:
    with pytest.raises(AudioError, match="rates"):
        StreamResampler(in_rate, out_rate)  # type: ignore[arg-type]
