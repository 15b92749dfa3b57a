"""Festival specifics: its English-only ASCII front end, voices by Debian package, a kept-open
process that comes back after it dies, and the one-process-per-sentence fallback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tts_helpers import check_audio, check_phonemes, check_words, require

from anchor.config import TtsConfig
from anchor.errors import TtsError
from anchor.tts import festival
from anchor.tts.festival import FestivalSynthesizer, scheme_string, to_festival_text


@pytest.fixture(scope="module")
def synth() -> Iterator[FestivalSynthesizer]:
    require("festival")
    s = FestivalSynthesizer(TtsConfig(engine="festival"))
    yield s
    s.close()


# -- text for festival (pure) ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("“Quoted” and ‘single’", "\"Quoted\" and 'single'"),
        ("Wait… now", "Wait... now"),
        ("Paris–Rome — tonight", "Paris - Rome - tonight"),
        ("Café naïve Zürich", "Cafe naive Zurich"),
        ("5 €, 3 £, 10%", "5 euros , 3 pounds , 10 percent"),
        ("first line\nsecond\u00a0line", "first line second line"),
        ("日本語 ok", "ok"),
    ],
)
def test_text_is_made_plain_ascii_on_one_line(text: str, expected: str) -> None:
    out = to_festival_text(text)
    assert out == expected and out.isascii() and "\n" not in out


def test_scheme_strings_escape_quotes_and_backslashes() -> None:
    assert scheme_string('say "hi" \\ (now)') == '"say \\"hi\\" \\\\ (now)"'


# -- the real engine ---------------------------------------------------------------------------
def test_the_default_voice_is_the_hts_voice(synth: FestivalSynthesizer) -> None:
    assert synth.voice == festival.DEFAULT_VOICE == "cmu_us_slt_arctic_hts"
    assert festival.DEFAULT_VOICE in synth.voices()
    assert festival.festival_default_voice_installed()


def test_quotes_brackets_and_backslashes_in_the_text_are_spoken_not_run(
    synth: FestivalSynthesizer,
) -> None:
    s = synth.synthesize('He said "no (really)" \\ then left; (anchor_voice "x").')
    check_audio(s)
    check_phonemes(s)
    assert [w.label for w in s.words][:3] == ["He", "said", "no"]
    check_audio(synth.synthesize("Still working afterwards."))


def test_accented_words_keep_their_own_spelling(synth: FestivalSynthesizer) -> None:
    s = synth.synthesize("The café in Zürich closed.")
    check_audio(s)
    check_words(s)
    assert [w.label for w in s.words] == ["The", "café", "in", "Zürich", "closed"]


@pytest.mark.xfail(strict=True, reason="bug: festival's words split '10%' into '10', 'percent' "
                   "and then label every word with festival's ASCII token names")
def test_a_percent_sign_does_not_change_the_words(synth: FestivalSynthesizer) -> None:
    s = synth.synthesize("Prices rose 10% in Zürich.")
    assert [w.label for w in s.words] == ["Prices", "rose", "10%", "in", "Zürich"]


def test_text_without_latin_letters_or_digits_is_refused_pointing_to_espeak(
    synth: FestivalSynthesizer,
) -> None:
    with pytest.raises(TtsError, match="English only.*espeak-ng"):
        synth.synthesize("日本語のテキスト。")


@pytest.mark.parametrize(
    ("voice", "match"),
    [
        ("nope_voice", "festival has no voice 'nope_voice' \\(installed: .*cmu_us_slt_arctic_hts"),
        ("../../etc/passwd", "not a voice name"),
        ("voice with spaces", "not a voice name"),
    ],
)
def test_a_voice_festival_lacks_is_refused_in_one_line(synth: FestivalSynthesizer, voice: str,
                                                       match: str) -> None:
    with pytest.raises(TtsError, match=match) as info:
        synth.synthesize("Hello.", voice=voice)
    assert "\n" not in str(info.value)
    with pytest.raises(TtsError, match=match):
        synth.stream("Hello.", voice=voice)  # refused at the call, before any synthesis


def test_a_known_voice_that_is_not_installed_names_its_package(
    synth: FestivalSynthesizer,
) -> None:
    if "kal_diphone" in synth.voices():
        pytest.skip("kal_diphone is installed here")
    with pytest.raises(TtsError, match="apt-get install festvox-kallpc16k"):
        synth.check_voice("kal_diphone")
    with pytest.raises(TtsError, match="apt-get install festvox-kallpc16k"):
        FestivalSynthesizer(TtsConfig(engine="festival", voice="kal_diphone"))


def test_festival_dying_between_sentences_is_restarted(synth: FestivalSynthesizer) -> None:
    if not synth.persistent:
        pytest.skip("no stdbuf: festival runs once per sentence anyway")
    proc = synth._proc
    assert proc is not None and proc.alive()
    proc.proc.kill()
    proc.proc.wait(timeout=5)
    s = synth.synthesize("Back on air.")
    check_audio(s)
    check_words(s)
    assert synth._proc is not None and synth._proc is not proc and synth._proc.alive()


def test_without_a_kept_open_process_the_result_is_the_same(synth: FestivalSynthesizer) -> None:
    once = FestivalSynthesizer(TtsConfig(engine="festival"), persistent=False)
    try:
        a = once.synthesize("Good evening.")
        b = synth.synthesize("Good evening.")
        check_audio(a)
        check_words(a)
        check_phonemes(a)
        assert [p.arpabet for p in a.phonemes] == [p.arpabet for p in b.phonemes]
        assert a.duration_s == pytest.approx(b.duration_s, abs=0.02)
    finally:
        once.close()


def test_a_closed_synthesizer_refuses_to_speak() -> None:
    require("festival")
    s = FestivalSynthesizer(TtsConfig(engine="festival"))
    s.close()
    with pytest.raises(TtsError, match="closed"):
        s.synthesize("Hello.")
