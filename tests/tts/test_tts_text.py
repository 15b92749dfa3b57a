"""Text in front of the TTS: what `validate_text` refuses (one-line TtsErrors the HTTP layer turns
into 400s) and accepts, and how `split_sentences` cuts a script for streaming synthesis."""

from __future__ import annotations

import re

import pytest

from anchor.errors import TtsError
from anchor.tts.text import split_sentences, validate_text

LIMIT = 200


def refused(text: str | bytes, max_chars: int = LIMIT) -> str:
    """The one-line message validate_text refuses `text` with."""
    with pytest.raises(TtsError) as info:
        validate_text(text, max_chars)
    message = str(info.value)
    assert message and "\n" not in message, message
    return message


# -- validate_text: refused --------------------------------------------------------------------
@pytest.mark.parametrize("text", ["", " ", "   \n\t  \r\n", "\u00a0\u2003", "\ufeff", b"", b"  \n"])
def test_empty_or_whitespace_only_text_is_refused(text: str | bytes) -> None:
    assert "empty" in refused(text)


def test_text_over_max_chars_is_refused_naming_the_limit_and_the_setting() -> None:
    message = refused("a" * 11, max_chars=10)
    assert "11" in message and "10" in message and "tts.max_chars" in message
    assert validate_text("a" * 10, 10) == "a" * 10  # exactly at the limit is fine


def test_surrounding_whitespace_does_not_count_towards_max_chars() -> None:
    assert validate_text("  " + "a" * 10 + " \n", 10) == "a" * 10


@pytest.mark.parametrize(
    ("raw", "byte", "offset"),
    [(b"caf\xe9 au lait", "0xe9", 3), (b"\xff\xfehello", "0xff", 0), (b"ok \xc3", "0xc3", 3)],
)
def test_bytes_that_are_not_utf8_are_refused_with_the_offending_byte(
    raw: bytes, byte: str, offset: int
) -> None:
    message = refused(raw)
    assert "UTF-8" in message and byte in message and f"offset {offset}" in message


def test_a_lone_surrogate_is_refused_as_not_utf8() -> None:
    assert "UTF-8" in refused("\ud800 lone surrogate")


@pytest.mark.parametrize("value", [5, None, 1.5, ["hello"]])
def test_a_non_string_is_refused(value: object) -> None:
    assert "must be a string" in refused(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "snippet"),
    [
        ("<speak>Hello</speak>", "<speak>"),
        ("Hello <b>world</b>", "<b>"),
        ("Line one<br/>line two", "<br/>"),
        ("A < b > tag with spaces", "< b >"),
        ("Say <prosody rate='slow'>this</prosody>", "<prosody"),
        ("Hidden <!-- comment --> text", "<!--"),
        ('<?xml version="1.0"?> Hello', "<?xml"),
        ("Tom &amp; Jerry", "&amp;"),
        ("Tom &#38; Jerry", "&#38;"),
        ("Tom &#x26; Jerry", "&#x26;"),
    ],
)
def test_markup_is_refused(text: str, snippet: str) -> None:
    message = refused(text)
    assert "markup" in message and "SSML" in message and snippet in message


def test_the_markup_message_shortens_a_long_tag() -> None:
    tag = "<voice " + "x" * 100 + ">"
    message = refused(f"{tag} Hello")
    assert "..." in message and tag not in message and len(message) < 150


@pytest.mark.parametrize(
    ("text", "code", "index"),
    [
        ("a\x00b", "U+0000", 1),
        ("ab\x1b[31m", "U+001B", 2),
        ("abc\x7f", "U+007F", 3),
        ("a\x85b", "U+0085", 1),  # C1 "next line"
        ("a\u2028b", "U+2028", 1),  # line separator
        ("a\u2029b", "U+2029", 1),  # paragraph separator
        ("a\ue000b", "U+E000", 1),  # private use
    ],
)
def test_control_characters_are_refused_naming_the_character_and_position(
    text: str, code: str, index: int
) -> None:
    message = refused(text)
    assert "control character" in message and code in message and f"character {index}" in message


# -- validate_text: accepted -------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        "Good evening, and welcome.",
        "Tabs\tand\nnew lines\r\nare fine.",
        "It's 3 < 5, and 7 > 2.",
        "x <3 y",
        "He said <hello without closing it",
        "AT&T and R & D reported 5% growth.",
        "Prices rose 2.5 percent in Q3 2024; GDP was $1.2 trillion (up 0.4%).",
        "Dr. Smith met Mr. Jones at 5 p.m. in the U.S., e.g. in Washington.",
        "Café – naïve “quotes” ‘single’ — 5 €, 10 % … ¿Qué? ¡Sí! «bien»",
        "日本語のテキスト。",
        "Zero\u200dwidth joiner and emoji 👍 are text.",
        "!!! ... ???",  # punctuation only: valid text (it just says nothing)
    ],
)
def test_plain_text_passes_unchanged(text: str) -> None:
    assert validate_text(text, LIMIT) == text


def test_text_is_stripped_and_a_byte_order_mark_dropped() -> None:
    assert validate_text("\ufeff  Hello there.\n\n", LIMIT) == "Hello there."


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
def test_utf8_bytes_are_decoded(wrap: type) -> None:
    raw = "Ça va? “Yes” — 5 €.".encode()
    assert validate_text(wrap(raw), LIMIT) == "Ça va? “Yes” — 5 €."
    assert validate_text(wrap(b"\xef\xbb\xbfHello"), LIMIT) == "Hello"  # UTF-8 BOM


# -- split_sentences ---------------------------------------------------------------------------
def no_space(text: str) -> str:
    return re.sub(r"\s+", "", text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Good evening. Here is the news.", ["Good evening.", "Here is the news."]),
        ("Really? Yes! It happened.", ["Really?", "Yes!", "It happened."]),
        ("Wait… Then it rained.", ["Wait…", "Then it rained."]),
        ("He paused... Then he spoke.", ["He paused...", "Then he spoke."]),
        ('He said "Stop." Then he left.', ['He said "Stop."', "Then he left."]),
        ("(It rained.) Then it stopped.", ["(It rained.)", "Then it stopped."]),
        ("It was built in 1990. 2024 was its best year.",
         ["It was built in 1990.", "2024 was its best year."]),
        ("One sentence without a full stop", ["One sentence without a full stop"]),
    ],
)
def test_sentences_end_at_terminal_punctuation(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Dr. Smith arrived. He spoke.", ["Dr. Smith arrived.", "He spoke."]),
        ("Mr. and Mrs. Jones met Prof. Lee.", ["Mr. and Mrs. Jones met Prof. Lee."]),
        ("St. Louis beat the Yankees vs. the odds. Fans cheered.",
         ["St. Louis beat the Yankees vs. the odds.", "Fans cheered."]),
        ("J. K. Rowling wrote it. Then she left.", ["J. K. Rowling wrote it.", "Then she left."]),
        ("The U.S. economy grew. Markets rose.", ["The U.S. economy grew.", "Markets rose."]),
        ("He lives in the U.S. The end came soon.", ["He lives in the U.S.", "The end came soon."]),
        ("Talks in the U.K. Parliament went on.", ["Talks in the U.K. Parliament went on."]),
        ("See e.g. this one. And that.", ["See e.g. this one.", "And that."]),
        ("Meet me on Jan. 5 at noon. Fine.", ["Meet me on Jan. 5 at noon.", "Fine."]),
        ("Turn to No. 7 now.", ["Turn to No. 7 now."]),
    ],
)
def test_abbreviations_titles_initials_and_acronyms_do_not_end_a_sentence(
    text: str, expected: list[str]
) -> None:
    assert split_sentences(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Inflation was 2.5 percent in March.",
        "Pi is about 3.14159 and e about 2.718.",
        "Version 2.0.1 is out at example.com today.",
        "Shares fell .5 points.",
    ],
)
def test_decimals_and_dotted_names_stay_in_their_sentence(text: str) -> None:
    assert split_sentences(text) == [text]


def test_lower_case_after_a_full_stop_does_not_start_a_sentence() -> None:
    assert split_sentences("He paid 5 cents. ok then.") == ["He paid 5 cents. ok then."]


def test_a_blank_line_always_ends_a_sentence() -> None:
    text = "Breaking news\n\nThe storm has passed\n \nMore at ten"
    assert split_sentences(text) == ["Breaking news", "The storm has passed", "More at ten"]


def test_whitespace_inside_a_sentence_collapses_to_single_spaces() -> None:
    assert split_sentences("Good \t evening,\nand   welcome.") == ["Good evening, and welcome."]


def test_punctuation_only_pieces_join_the_sentence_before() -> None:
    assert split_sentences("Hello. !!! World.") == ["Hello. !!!", "World."]
    assert split_sentences("!!! ...") == []
    assert split_sentences("   ") == []


def test_a_long_sentence_is_split_after_a_comma_within_the_limit() -> None:
    text = ("The council met on Tuesday evening to discuss the budget, "
            "and after three hours of debate it approved the plan.")
    pieces = split_sentences(text, max_chars=70)
    assert pieces == ["The council met on Tuesday evening to discuss the budget,",
                      "and after three hours of debate it approved the plan."]


def test_a_long_sentence_is_split_at_a_semicolon_colon_or_dash() -> None:
    assert split_sentences("First part of the report here; second part follows now.", 40) == [
        "First part of the report here;", "second part follows now."]
    assert split_sentences("The result is clear enough: the vote passed easily.", 40) == [
        "The result is clear enough:", "the vote passed easily."]
    assert split_sentences("The minister resigned today — nobody expected it.", 40) == [
        "The minister resigned today", "— nobody expected it."]


def test_a_long_sentence_without_punctuation_is_split_at_a_space() -> None:
    text = "one two three four five six seven eight nine ten eleven twelve"
    pieces = split_sentences(text, max_chars=20)
    assert all(len(p) <= 20 for p in pieces)
    assert " ".join(pieces) == text  # cut between words, never inside one


def test_a_word_longer_than_the_limit_is_cut_hard() -> None:
    assert split_sentences("x" * 25, max_chars=10) == ["x" * 10, "x" * 10, "x" * 5]


def test_sentence_max_chars_below_one_is_refused() -> None:
    with pytest.raises(TtsError, match="sentence_max_chars"):
        split_sentences("Hello.", 0)


NEWS = (
    "Good evening. Here is the news at 6 p.m. on Tuesday, Jan. 14.\n\n"
    "Dr. Amelia Ortiz, the U.N. envoy, said talks in the U.S. capital had gone well; "
    "she expects a deal \"within weeks\", though officials in St. Petersburg were doubtful. "
    "Prices rose 2.5 percent, the fastest pace since 1991! Will it last? Economists disagree...\n"
    "Meanwhile — in sport — the home team won 3-1, its third win in a row, and fans "
    "celebrated late into the night across the city, from the old harbour to the new stadium, "
    "singing and waving flags until well after midnight.\n\n"
    "That is all for now.   Good night."
)


@pytest.mark.parametrize("max_chars", [400, 120, 60, 25, 8])
def test_every_character_is_kept_in_order_and_pieces_fit_the_limit(max_chars: int) -> None:
    pieces = split_sentences(NEWS, max_chars)
    assert pieces and all(0 < len(p) <= max_chars for p in pieces)
    assert all(p == p.strip() and "  " not in p and "\n" not in p for p in pieces)
    assert no_space("".join(pieces)) == no_space(NEWS)


def test_words_are_never_cut_when_every_word_fits() -> None:
    for max_chars in (120, 60, 25):
        pieces = split_sentences(NEWS, max_chars)
        assert " ".join(pieces).split() == NEWS.split()
