"""SpeechAnalyzer: streaming VAD + MFCC + sliding TCN, one SpeechFrame per 40 ms of audio."""

from __future__ import annotations

import numpy as np
import pytest
from pipeline_helpers import SPF, loudness_infer, silence, speechlike

from anchor.audio.mfcc import mfcc_for_frames, silence_mfcc
from anchor.config import AudioConfig, MouthModelConfig, StreamingConfig
from anchor.mouth.streaming import windowed_inference
from anchor.pipeline.analysis import SpeechAnalyzer, preroll_speech

AUDIO = AudioConfig()
MODEL = MouthModelConfig()


def analyzer(hop: int = 2, rc: int = 4) -> SpeechAnalyzer:
    streaming = StreamingConfig(hop_frames=hop, right_context_frames=rc)
    return SpeechAnalyzer(AUDIO, streaming, MODEL, loudness_infer, time_fn=lambda: 0.0)


def run_chunks(a: SpeechAnalyzer, x: np.ndarray, chunk: int) -> list:
    out = []
    for i in range(0, len(x), chunk):
        out += a.push(x[i : i + chunk], arrival=float(i))
    return out + a.finish()


@pytest.mark.parametrize("n_samples", [SPF * 30, SPF * 30 + 1, SPF * 31 - 1, 5000])
def test_one_frame_per_40ms_with_padded_tail(n_samples: int) -> None:
    x = speechlike(n_samples / 16000 + 0.1)[:n_samples]
    frames = run_chunks(analyzer(), x, 333)
    n = -(-n_samples // SPF)
    assert [f.index for f in frames] == list(range(n))
    audio = np.concatenate([f.audio for f in frames])
    assert audio.shape == (n * SPF,)
    np.testing.assert_array_equal(audio[:n_samples], x)  # the audio is passed through untouched
    assert not audio[n_samples:].any()  # the last frame is zero-padded


@pytest.mark.parametrize("chunk", [160, 320, 999])
def test_streaming_features_match_offline_windows(chunk: int) -> None:
    x = np.concatenate([silence(0.3), speechlike(1.5)])
    streaming = StreamingConfig(hop_frames=3, right_context_frames=5)
    a = SpeechAnalyzer(AUDIO, streaming, MODEL, loudness_infer)
    frames = run_chunks(a, x, chunk)
    n = len(frames)
    offline = windowed_inference(
        mfcc_for_frames(x, AUDIO, n), loudness_infer, streaming, MODEL, silence_mfcc(AUDIO)
    )
    np.testing.assert_allclose(np.stack([f.features for f in frames]), offline, atol=1e-5)


def test_frames_wait_for_the_lookahead() -> None:
    """Nothing is emitted before hop + right context frames of audio have arrived."""
    a = analyzer(hop=2, rc=4)
    x = speechlike(2.0)
    got = []
    for i in range(0, len(x), SPF):
        got.append(len(a.push(x[i : i + SPF], arrival=0.0)))
    frames_in_when_first_out = next(i for i, g in enumerate(got) if g) + 1
    # frame 0 is kept by window 0, which needs frames 0..hop+rc-1 plus 15 ms of MFCC overlap.
    assert frames_in_when_first_out == 2 + 4 + 1


def test_vad_marks_speech_and_silence() -> None:
    x = np.concatenate([silence(1.0), speechlike(1.0), silence(1.5)])
    frames = run_chunks(analyzer(), x, 320)
    flags = [f.speech for f in frames]
    assert not any(flags[:20])  # leading silence (minus pre-roll) is idle
    assert all(flags[27:48])  # the speech
    assert not any(flags[-20:])  # trailing silence after the hangover


def test_preroll_opens_before_the_onset() -> None:
    voiced = [False] * 5 + [True] * 3
    assert [preroll_speech(voiced, t, 2) for t in range(8)] == [False] * 3 + [True] * 5


def test_audio_in_is_the_arrival_of_the_frames_first_sample() -> None:
    a = analyzer()
    x = speechlike(1.0)
    frames = []
    for k, i in enumerate(range(0, len(x), 1000)):
        frames += a.push(x[i : i + 1000], arrival=float(k))
    frames += a.finish()
    for f in frames:
        assert f.timestamps["audio_in"] == float((f.index * SPF) // 1000)


def test_reset_between_segments_restarts_frame_numbers() -> None:
    a = analyzer()
    first = run_chunks(a, speechlike(0.5), 640)
    second = run_chunks(a, speechlike(0.3), 640)
    assert first[0].index == 0 and second[0].index == 0
    assert len(second) == -(-int(0.3 * 16000) // SPF)
