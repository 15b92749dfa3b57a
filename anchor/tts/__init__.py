"""Offline text to speech in front of the pipeline: text -> 16 kHz speech, sentence by
sentence, with word and phoneme timings for the mouth.

Engines (Debian packages, no network, no model download): festival with the HTS voice
`festvox-us-slt-hts` (default, English) and espeak-ng (fallback, many languages).

    synth = open_synthesizer(cfg.tts)            # TtsError naming the package when missing
    for sentence in synth.stream(validate_text(body, cfg.tts.max_chars)):
        play(sentence.samples)                   # the first plays while the rest is made
"""

from __future__ import annotations

from anchor.errors import TtsError
from anchor.tts.base import (
    MAX_RATE,
    MIN_RATE,
    SAMPLE_RATE,
    Sentence,
    Synthesizer,
    Timing,
    check_rate,
    sentence_cues,
    to_arpabet,
    viseme_class,
)
from anchor.tts.engines import ENGINES, available_engines, open_synthesizer
from anchor.tts.text import split_sentences, validate_text

__all__ = [
    "ENGINES",
    "MAX_RATE",
    "MIN_RATE",
    "SAMPLE_RATE",
    "Sentence",
    "Synthesizer",
    "Timing",
    "TtsError",
    "available_engines",
    "check_rate",
    "open_synthesizer",
    "sentence_cues",
    "split_sentences",
    "to_arpabet",
    "validate_text",
    "viseme_class",
]
