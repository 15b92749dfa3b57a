"""What every engine shares: phoneme symbols -> ARPAbet -> mouth shape, the rate bounds, word
spans, and `Synthesizer.stream` (checks first, then one sentence at a time)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from anchor.config import TtsConfig
from anchor.errors import TtsError
from anchor.tts.base import (
    ARPABET,
    MAX_RATE,
    MIN_RATE,
    SAMPLE_RATE,
    Sentence,
    Synthesizer,
    Timing,
    check_rate,
    to_arpabet,
    viseme_class,
    word_spans,
)


# -- phoneme symbols ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("label", "arpabet", "viseme"),
    [
        # festival (US phone set, already ARPAbet)
        ("p", "p", "bilabial"), ("b", "b", "bilabial"), ("m", "m", "bilabial"),
        ("em", "em", "bilabial"),
        ("uw", "uw", "rounded"), ("ow", "ow", "rounded"), ("w", "w", "rounded"),
        ("ao", "ao", "rounded"), ("oy", "oy", "rounded"),
        ("aa", "aa", "open"), ("ae", "ae", "open"), ("iy", "iy", "open"), ("ax", "ax", "open"),
        ("s", "s", "other"), ("t", "t", "other"), ("hh", "hh", "other"), ("ng", "ng", "other"),
        ("pau", "pau", "other"),
        # CMUdict style: upper case with stress digits
        ("AA1", "aa", "open"), ("UW0", "uw", "rounded"), ("M", "m", "bilabial"),
        ("ow2", "ow", "rounded"),
        # espeak-ng mnemonics
        ("u:", "uw", "rounded"), ("oU", "ow", "rounded"), ("O:", "ao", "rounded"),
        ("A:", "aa", "open"), ("0", "aa", "open"), ("a", "ae", "open"), ("@", "ax", "open"),
        ("3:", "er", "open"), ("aI", "ay", "open"), ("eI", "ey", "open"), ("V", "ah", "open"),
        ("I", "ih", "open"), ("i:", "iy", "open"), ("E", "eh", "open"),
        ("S", "sh", "other"), ("T", "th", "other"), ("D", "dh", "other"), ("tS", "ch", "other"),
        ("dZ", "jh", "other"), ("N", "ng", "other"), ("j", "y", "other"), ("h", "hh", "other"),
        ("m-", "em", "bilabial"),  # syllabic m
        ("p;", "p", "bilabial"),  # a modifier after the base symbol
    ],
)
def test_engine_labels_map_to_arpabet_and_a_mouth_shape(label: str, arpabet: str,
                                                        viseme: str) -> None:
    assert to_arpabet(label) == arpabet
    assert viseme_class(label) == viseme
    assert viseme_class(arpabet) == viseme


@pytest.mark.parametrize("label", ["_", "_:", "_!", "_^_", "pau", "sil", "h#", "#"])
def test_pauses_map_to_pau_and_need_no_mouth_shape(label: str) -> None:
    assert to_arpabet(label) == "pau"
    assert viseme_class(label) == "other"


@pytest.mark.parametrize("label", ["", "zz", "xyz", "!"])
def test_unknown_labels_map_to_nothing(label: str) -> None:
    assert to_arpabet(label) == ""
    assert viseme_class(label) == "other"


def test_every_arpabet_symbol_maps_to_itself() -> None:
    assert all(to_arpabet(a) == a for a in ARPABET)


def test_the_three_mouth_shapes_are_disjoint_and_cover_the_vowels() -> None:
    shapes = {a: viseme_class(a) for a in ARPABET}
    assert {a for a, v in shapes.items() if v == "bilabial"} == {"p", "b", "m", "em"}
    assert {"uw", "ow", "w"} <= {a for a, v in shapes.items() if v == "rounded"}
    vowels = {"aa", "ae", "ah", "ao", "aw", "ay", "eh", "er", "ey", "ih", "iy", "ow", "oy",
              "uh", "uw", "ax"}
    assert all(shapes[v] in ("open", "rounded") for v in vowels)


# -- rate --------------------------------------------------------------------------------------
@pytest.mark.parametrize("rate", [MIN_RATE, 1, 1.0, "1.5", MAX_RATE])
def test_rates_within_the_bounds_are_accepted_as_floats(rate: object) -> None:
    value = check_rate(rate)  # type: ignore[arg-type]
    assert isinstance(value, float) and value == float(rate)  # type: ignore[arg-type]


@pytest.mark.parametrize("rate", [MIN_RATE - 0.01, MAX_RATE + 0.01, 0, -1, math.nan, math.inf])
def test_rates_outside_the_bounds_are_refused_naming_the_bounds(rate: float) -> None:
    with pytest.raises(TtsError) as info:
        check_rate(rate, "tts.rate")
    message = str(info.value)
    assert message.startswith("tts.rate must be between") and "\n" not in message
    assert str(MIN_RATE) in message and str(MAX_RATE) in message


@pytest.mark.parametrize("rate", ["fast", None, [1.0]])
def test_a_rate_that_is_not_a_number_is_refused(rate: object) -> None:
    with pytest.raises(TtsError, match="rate must be a number"):
        check_rate(rate)  # type: ignore[arg-type]


# -- word spans --------------------------------------------------------------------------------
def test_word_spans_strip_punctuation_and_point_into_the_text() -> None:
    text = '"Hello," said the U.S. (envoy) -- in 2024 ... ok?'
    spans = word_spans(text)
    assert [label for _s, _e, label in spans] == ["Hello", "said", "the", "U.S.", "envoy", "in",
                                                   "2024", "ok"]
    for start, end, label in spans:
        assert label.rstrip(".") in text[start:end] and not text[start:end].isspace()
    assert [s for s, _e, _l in spans] == sorted(s for s, _e, _l in spans)


def test_word_spans_keep_inner_punctuation_and_unicode_words() -> None:
    labels = [label for _s, _e, label in word_spans("It's well-known: “café” €5 «Qué»?")]
    assert labels == ["It's", "well-known", "café", "€5", "Qué"]


def test_word_spans_of_punctuation_only_is_empty() -> None:
    assert word_spans("... -- !!! “ ”") == []
    assert word_spans("") == []


# -- Sentence / Timing -------------------------------------------------------------------------
def test_durations() -> None:
    assert Timing("a", 0.25, 1.0).duration_s == pytest.approx(0.75)
    s = Sentence("Hi.", np.zeros(SAMPLE_RATE // 2, np.float32), (), ())
    assert s.duration_s == pytest.approx(0.5) and s.sample_rate == 16000


# -- Synthesizer.stream ------------------------------------------------------------------------
class CountingSynthesizer(Synthesizer):
    """0.1 s of silence per sentence; remembers every call."""

    engine = "counting"
    voice = "default"

    def __init__(self, cfg: TtsConfig) -> None:
        super().__init__(cfg)
        self.calls: list[tuple[str, str | None, float | None]] = []

    def synthesize(self, sentence: str, *, voice: str | None = None,
                   rate: float | None = None) -> Sentence:
        self.calls.append((sentence, voice, rate))
        return Sentence(sentence, np.zeros(1600, np.float32), (), (), self.engine, voice or "")


def test_stream_synthesises_one_sentence_each_time_it_is_advanced() -> None:
    synth = CountingSynthesizer(TtsConfig())
    it = synth.stream("First one. Second one. Third one.")
    assert synth.calls == []  # nothing before the first sentence is asked for
    first = next(it)
    assert first.text == "First one." and len(synth.calls) == 1
    assert [s.text for s in it] == ["Second one.", "Third one."]
    assert [c[0] for c in synth.calls] == ["First one.", "Second one.", "Third one."]


def test_stream_uses_the_configured_rate_and_the_default_voice_unless_given() -> None:
    synth = CountingSynthesizer(TtsConfig(rate=1.25))
    list(synth.stream("One."))
    list(synth.stream("Two.", voice="other", rate=0.75))
    assert synth.calls == [("One.", "default", 1.25), ("Two.", "other", 0.75)]


def test_stream_splits_at_the_configured_sentence_length() -> None:
    synth = CountingSynthesizer(TtsConfig(sentence_max_chars=20))
    pieces = [s.text for s in synth.stream("one two three four five six seven eight")]
    assert all(len(p) <= 20 for p in pieces) and " ".join(pieces) == (
        "one two three four five six seven eight")


@pytest.mark.parametrize(
    ("text", "kwargs", "match"),
    [
        ("", {}, "empty"),
        ("x" * 51, {}, "max_chars"),
        ("<speak>Hi</speak>", {}, "markup"),
        (b"caf\xe9", {}, "UTF-8"),
        ("Hello.", {"rate": 9.0}, "rate"),
    ],
)
def test_stream_checks_everything_before_synthesising(text: str | bytes, kwargs: dict[str, float],
                                                      match: str) -> None:
    synth = CountingSynthesizer(TtsConfig(max_chars=50))
    with pytest.raises(TtsError, match=match):
        synth.stream(text, **kwargs)  # type: ignore[arg-type]  # raises at the call, not on next()
    assert synth.calls == []


def test_a_bad_configured_rate_is_refused_when_the_synthesizer_is_made() -> None:
    with pytest.raises(TtsError, match="tts.rate"):
        CountingSynthesizer(TtsConfig(rate=5.0))
