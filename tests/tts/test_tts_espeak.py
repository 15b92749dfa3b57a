"""espeak-ng specifics: any language it has, voices by name, unicode text as it is."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tts_helpers import check_audio, check_phonemes, check_words, require

from anchor.config import TtsConfig
from anchor.errors import TtsError
from anchor.tts.espeak import EspeakSynthesizer


@pytest.fixture(scope="module")
def synth() -> Iterator[EspeakSynthesizer]:
    require("espeak-ng")
    s = EspeakSynthesizer(TtsConfig(engine="espeak-ng"))
    yield s
    s.close()


def test_the_default_voice_is_the_configured_language(synth: EspeakSynthesizer) -> None:
    assert synth.voice == "en"
    assert {"en-gb", "en-us", "de", "fr-fr", "es"} <= set(synth.voices())
    german = EspeakSynthesizer(TtsConfig(engine="espeak-ng", language="de"))
    assert german.voice == "de"
    s = german.synthesize("Guten Abend, hier sind die Nachrichten.")
    assert s.voice == "de"
    check_audio(s)
    check_words(s)
    check_phonemes(s, mapped=False)  # German "ich" has consonants English lacks
    assert any(p.arpabet == "aa" for p in s.phonemes)  # the vowels still shape the mouth


@pytest.mark.parametrize("voice", ["en-us", "en+f3", "fr", "es"])
def test_a_voice_per_request(synth: EspeakSynthesizer, voice: str) -> None:
    (s,) = list(synth.stream("Bonjour, bonsoir.", voice=voice))
    assert s.voice == voice
    check_audio(s)
    check_words(s)
    assert synth.synthesize("Hello.").voice == "en"  # the default comes back after


def test_unicode_text_is_spoken_with_its_own_words(synth: EspeakSynthesizer) -> None:
    s = synth.synthesize("Rates hit 3.5% in Zürich — the café closed.", voice="en")
    check_audio(s)
    check_words(s)
    assert [w.label for w in s.words] == ["Rates", "hit", "3.5%", "in", "Zürich", "the", "café",
                                          "closed"]


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        (TtsConfig(engine="espeak-ng", voice="zz-nope"), "espeak-ng has no voice 'zz-nope'"),
        (TtsConfig(engine="espeak-ng", language="xx-none"), "espeak-ng has no voice 'xx-none'"),
        (TtsConfig(engine="espeak-ng", voice="../etc/passwd"), "not a voice name"),
    ],
)
def test_a_bad_default_voice_fails_when_the_engine_opens(cfg: TtsConfig, match: str) -> None:
    require("espeak-ng")
    with pytest.raises(TtsError, match=match) as info:
        EspeakSynthesizer(cfg)
    assert "\n" not in str(info.value)


def test_a_bad_voice_in_a_request_fails_and_the_engine_keeps_working(
    synth: EspeakSynthesizer,
) -> None:
    with pytest.raises(TtsError, match="not a voice name"):
        synth.stream("Hello.", voice="a b")
    with pytest.raises(TtsError, match="has no voice"):
        synth.synthesize("Hello.", voice="zz-nope")
    check_audio(synth.synthesize("Hello again."))


def test_every_word_gets_a_timing_even_in_a_word_group(synth: EspeakSynthesizer) -> None:
    # espeak-ng speaks "on the" as one group: its time is shared by the two words, in order
    s = synth.synthesize("The cat sat on the mat.")
    assert [w.label for w in s.words] == ["The", "cat", "sat", "on", "the", "mat"]
    starts = [w.start_s for w in s.words]
    assert starts == sorted(starts) and all(w.end_s > w.start_s for w in s.words)
    s = synth.synthesize("I am going to be there.")
    assert [w.label for w in s.words] == ["I", "am", "going", "to", "be", "there"]
