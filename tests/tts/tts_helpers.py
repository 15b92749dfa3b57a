"""Checks every real engine's output must pass, and a way to open an engine or skip."""

from __future__ import annotations

import numpy as np
import pytest

from anchor.config import TtsConfig
from anchor.tts.base import SAMPLE_RATE, Sentence, Synthesizer, word_spans
from anchor.tts.engines import INSTALL, engine_installed, open_synthesizer


def require(engine: str) -> None:
    """Skip, saying what to install, unless `engine` is installed."""
    if not engine_installed(engine):
        pytest.skip(f"{engine} is not installed ({INSTALL[engine]})")


def open_or_skip(engine: str, **cfg: object) -> Synthesizer:
    """`engine` opened with TtsConfig(engine=engine, **cfg), or skip saying what to install."""
    require(engine)
    return open_synthesizer(TtsConfig(engine=engine, **cfg))  # type: ignore[arg-type]


def check_audio(s: Sentence) -> None:
    """16 kHz mono float32 in [-1, 1], and not silent."""
    x = s.samples
    assert s.sample_rate == SAMPLE_RATE == 16000
    assert x.dtype == np.float32 and x.ndim == 1 and x.size > SAMPLE_RATE // 10
    assert np.isfinite(x).all() and float(np.abs(x).max()) <= 1.0
    assert float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) > 0.01  # speech, not silence
    assert s.duration_s == pytest.approx(x.size / SAMPLE_RATE)


def check_words(s: Sentence, *, one_per_word: bool = True) -> None:
    """Word timings in order, non-overlapping, within the audio; one per word of the text."""
    assert s.words
    for w in s.words:
        assert 0.0 <= w.start_s < w.end_s <= s.duration_s + 1e-6, w
        assert w.arpabet == ""
    for a, b in zip(s.words, s.words[1:], strict=False):
        assert a.end_s <= b.start_s + 1e-6, (a, b)
    if one_per_word:
        assert [w.label for w in s.words] == [label for _s, _e, label in word_spans(s.text)]


def check_phonemes(s: Sentence, *, mapped: bool = True) -> None:
    """Phonemes cover the audio from 0 to its end without gaps or overlaps; with `mapped`
    (English), each has an ARPAbet-like symbol."""
    ph = s.phonemes
    assert ph and ph[0].start_s == 0.0
    for a, b in zip(ph, ph[1:], strict=False):
        assert b.start_s == pytest.approx(a.end_s, abs=1e-6), (a, b)
    assert all(p.end_s > p.start_s for p in ph)
    assert ph[-1].end_s == pytest.approx(s.duration_s, abs=2e-3)
    # every symbol the engine used maps to an ARPAbet-like one (so to a mouth shape)
    assert not mapped or all(p.arpabet for p in ph), [p.label for p in ph if not p.arpabet]
