"""Both real engines (festival, espeak-ng) against the same contract, and choosing one from
TtsConfig (missing or unknown engines fail in one line naming what to install).

Real-engine tests skip, saying which package to install, where the engine is absent.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tts_helpers import check_audio, check_phonemes, check_words, open_or_skip, require

from anchor.config import TtsConfig
from anchor.errors import TtsError
from anchor.tts import espeak, festival
from anchor.tts.base import Sentence, Synthesizer, viseme_class
from anchor.tts.engines import available_engines, engine_installed, open_synthesizer
from anchor.tts.text import split_sentences

ENGINES = ("festival", "espeak-ng")
SENTENCE = "Good evening, here is the news."


@pytest.fixture(scope="module", params=ENGINES)
def synth(request: pytest.FixtureRequest) -> Iterator[Synthesizer]:
    s = open_or_skip(request.param)
    yield s
    s.close()


# -- the contract ------------------------------------------------------------------------------
def test_a_sentence_is_16khz_speech_with_word_and_phoneme_timings(synth: Synthesizer) -> None:
    s = synth.synthesize(SENTENCE)
    assert s.text == SENTENCE and s.engine == synth.engine and s.voice == synth.voice
    check_audio(s)
    check_words(s)
    check_phonemes(s)
    assert [w.label for w in s.words] == ["Good", "evening", "here", "is", "the", "news"]
    # the words are spoken inside the phonemes that are not pauses
    speech = [p for p in s.phonemes if p.arpabet != "pau"]
    assert speech[0].start_s <= s.words[0].start_s + 1e-6
    assert s.words[-1].end_s <= speech[-1].end_s + 1e-6


@pytest.mark.parametrize("word", ["Bob", "map", "mob"])
def test_a_bilabial_word_has_a_bilabial_phoneme_within_it(synth: Synthesizer, word: str) -> None:
    s = synth.synthesize(word)
    bilabial = [p for p in s.phonemes if viseme_class(p.arpabet) == "bilabial"]
    assert bilabial, [p.label for p in s.phonemes]
    (w,) = s.words
    assert w.label == word
    assert all(w.start_s - 1e-6 <= p.start_s < w.end_s for p in bilabial)


@pytest.mark.parametrize(("word", "shape", "arpabet"),
                         [("moon", "rounded", "uw"), ("go", "rounded", "ow"),
                          ("father", "open", "aa")])
def test_vowels_give_the_mouth_shape_they_need(synth: Synthesizer, word: str, shape: str,
                                               arpabet: str) -> None:
    s = synth.synthesize(word)
    assert any(p.arpabet == arpabet and viseme_class(p.label) == shape for p in s.phonemes), \
        [(p.label, p.arpabet) for p in s.phonemes]


def test_rate_two_is_about_twice_as_fast(synth: Synthesizer) -> None:
    normal = synth.synthesize(SENTENCE, rate=1.0)
    fast = synth.synthesize(SENTENCE, rate=2.0)
    (streamed,) = list(synth.stream(SENTENCE, rate=2.0))
    assert fast.duration_s < 0.75 * normal.duration_s
    assert streamed.duration_s == pytest.approx(fast.duration_s, rel=0.05)
    check_words(fast)
    check_phonemes(fast)


def test_a_bad_rate_is_refused_before_synthesis(synth: Synthesizer) -> None:
    with pytest.raises(TtsError, match="between 0.5 and 2.5"):
        synth.synthesize(SENTENCE, rate=3.0)
    with pytest.raises(TtsError, match="between 0.5 and 2.5"):
        synth.stream(SENTENCE, rate=0.1)


def test_stream_yields_the_first_sentence_before_the_rest_are_synthesised(
    synth: Synthesizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = "Good evening. Here is the news. The storm has passed. Markets rose today."
    made: list[str] = []
    real = synth.synthesize

    def counting(sentence: str, **kwargs: object) -> Sentence:
        made.append(sentence)
        return real(sentence, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(synth, "synthesize", counting)
    it = synth.stream(text)
    assert made == []
    first = next(it)
    assert first.text == "Good evening." and made == ["Good evening."]
    check_audio(first)
    rest = list(it)
    assert [s.text for s in [first, *rest]] == split_sentences(text)
    for s in rest:
        check_audio(s)
        check_words(s)
        check_phonemes(s)


def test_text_without_anything_to_say_gives_empty_audio(synth: Synthesizer) -> None:
    s = synth.synthesize("... !!!")
    assert s.samples.size == 0 and s.words == () and s.phonemes == ()
    assert list(synth.stream("... !!!")) == []


# -- choosing an engine ------------------------------------------------------------------------
def one_line_error(cfg: TtsConfig) -> str:
    with pytest.raises(TtsError) as info:
        open_synthesizer(cfg)
    message = str(info.value)
    assert message and "\n" not in message
    return message


def hide_festival(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(festival, "festival_binary", lambda: None)


def hide_espeak(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(espeak, "library_path", lambda: None)
    monkeypatch.setattr(espeak, "_LIB", None)  # as in a process that never loaded it


def test_missing_festival_names_the_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    hide_festival(monkeypatch)
    assert not engine_installed("festival")
    message = one_line_error(TtsConfig(engine="festival"))
    assert "festival is not installed" in message
    assert "apt-get install festival festvox-us-slt-hts" in message


def test_missing_espeak_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    hide_espeak(monkeypatch)
    assert not engine_installed("espeak-ng")
    for name in ("espeak-ng", "espeak"):
        message = one_line_error(TtsConfig(engine=name))
        assert "espeak-ng is not installed" in message and "apt-get install espeak-ng" in message


def test_no_engine_at_all_names_both_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    hide_festival(monkeypatch)
    hide_espeak(monkeypatch)
    assert available_engines() == []
    message = one_line_error(TtsConfig())
    assert "no TTS engine is installed" in message
    assert "apt-get install festival festvox-us-slt-hts" in message
    assert "apt-get install espeak-ng" in message
    message = one_line_error(TtsConfig(language="de"))
    assert "'de'" in message and "apt-get install espeak-ng" in message
    assert "festival" not in message  # festival has no German voice: no use installing it


@pytest.mark.parametrize("name", ["piper", "festvox", "say"])
def test_an_unknown_engine_is_refused_naming_the_choices(name: str) -> None:
    message = one_line_error(TtsConfig(engine=name))
    assert repr(name) in message and "tts.engine" in message
    assert "festival" in message and "espeak-ng" in message


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        (TtsConfig(engine="auto", rate=4.0), "tts.rate"),
        (TtsConfig(engine="espeak-ng", rate=0.0), "tts.rate"),
        (TtsConfig(max_chars=0), "max_chars"),
        (TtsConfig(sentence_max_chars=0), "sentence_max_chars"),
    ],
)
def test_bad_tts_settings_are_refused_before_any_engine_starts(cfg: TtsConfig,
                                                               match: str) -> None:
    assert match in one_line_error(cfg)


def test_auto_prefers_festival_for_english() -> None:
    require("festival")
    s = open_synthesizer(TtsConfig(engine="auto"))
    try:
        assert s.engine == "festival" and s.voice == festival.DEFAULT_VOICE
    finally:
        s.close()


def test_auto_uses_espeak_when_festival_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    require("espeak-ng")
    hide_festival(monkeypatch)
    assert available_engines() == ["espeak-ng"]
    s = open_synthesizer(TtsConfig(engine="auto"))
    assert s.engine == "espeak-ng"
    check_audio(s.synthesize("Hello there."))


def test_auto_uses_espeak_for_other_languages() -> None:
    require("espeak-ng")
    s = open_synthesizer(TtsConfig(engine="auto", language="de"))
    assert s.engine == "espeak-ng" and s.voice == "de"


def test_auto_falls_back_to_espeak_when_festival_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    require("espeak-ng")
    if not engine_installed("festival"):
        monkeypatch.setattr(festival, "festival_binary", lambda: "/usr/bin/festival")

    def broken(cfg: TtsConfig) -> None:
        raise TtsError("festival could not load voice cmu_us_slt_arctic_hts")

    monkeypatch.setattr(festival, "FestivalSynthesizer", broken)
    # a festival voice name means nothing to espeak-ng: it uses the language's voice instead
    s = open_synthesizer(TtsConfig(engine="auto", voice="cmu_us_slt_arctic_hts"))
    assert s.engine == "espeak-ng" and s.voice == "en"


def test_available_engines_lists_installed_ones_best_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    found = available_engines()
    assert found == [e for e in ENGINES if engine_installed(e)]
    hide_festival(monkeypatch)
    assert "festival" not in available_engines()
