"""Text in front of the TTS: validation (one-line `TtsError`s the HTTP layer maps to 400) and
sentence splitting for streaming synthesis.

Pure functions, no engine needed.
"""

from __future__ import annotations

import re
import unicodedata

from anchor.errors import TtsError

# Tags that make a text markup rather than prose: <speak>, </p>, <br/>, <!-- -->, <?xml ...?>.
# A lone "<" ("3 < 5") is plain punctuation and passes.
_TAG = re.compile(r"<\s*(?:/\s*)?[A-Za-z!?][^<>]*>")
# HTML/XML character references (&amp; &#38; &#x26;); "AT&T" and "R & D" pass.
_ENTITY = re.compile(r"&(?:#\d{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
_ALLOWED_CONTROLS = frozenset("\n\r\t")


def validate_text(text: str | bytes, max_chars: int) -> str:
    """Decoded, stripped `text` fit for synthesis, or a one-line `TtsError` saying what is wrong.

    Refused: bytes that are not UTF-8, empty or whitespace-only text, more than `max_chars`
    characters (config tts.max_chars), markup (SSML/HTML tags or character references: the
    engines would read them out or interpret them) and control characters (tab and newlines are
    fine). Quotes, apostrophes, numbers and other punctuation are plain text.
    """
    if isinstance(text, bytes | bytearray | memoryview):
        raw = bytes(text)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TtsError(
                f"text is not UTF-8 (invalid byte 0x{raw[exc.start]:02x} at offset {exc.start})"
            ) from None
    if not isinstance(text, str):
        raise TtsError(f"text must be a string, not {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates, e.g. from a JSON "\ud800" escape
        raise TtsError("text is not UTF-8 (it contains a lone surrogate)") from None
    text = text.lstrip("\ufeff").strip()  # a byte-order mark is not content
    if not text:
        raise TtsError("text is empty")
    if len(text) > max_chars:
        raise TtsError(
            f"text is {len(text)} characters, longer than the limit of {max_chars} "
            "(config tts.max_chars); send it in parts"
        )
    for i, ch in enumerate(text):
        if ch in _ALLOWED_CONTROLS:
            continue
        cat = unicodedata.category(ch)
        if cat == "Cc" or cat == "Cs" or cat == "Co" or ch in "\u2028\u2029":
            raise TtsError(
                f"text contains a control character (U+{ord(ch):04X} at character {i}); "
                "send plain text"
            )
    m = _TAG.search(text) or _ENTITY.search(text)
    if m is not None:
        snippet = m.group(0) if len(m.group(0)) <= 30 else m.group(0)[:27] + "..."
        raise TtsError(
            f"text contains markup ({snippet!r}); SSML and HTML are not supported: send plain text"
        )
    return text


# -- sentences ---------------------------------------------------------------------------------

# Titles and abbreviations that end in "." but never end a sentence (compared lower-case,
# without the final dot).
# ("Inc.", "etc." are left to the ordinary rule: they often do end a sentence.)
_NEVER_FINAL = frozenset(
    ["mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "rev", "gen", "col", "lt", "sgt", "capt", "cmdr", "adm", "gov", "sen", "rep", "pres", "supt", "insp", "det", "hon", "fr", "vs", "v", "e.g", "i.e", "cf", "no", "nos", "vol", "pp", "fig", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "approx", "dept", "univ"]
)
# After a dotted acronym (U.S., a.m.) a new sentence is assumed only before these words.
_STARTERS = frozenset(
    ["the", "a", "an", "it", "its", "he", "she", "they", "we", "i", "you", "this", "that", "these", "those", "there", "here", "in", "on", "at", "but", "and", "so", "yet", "then", "now", "meanwhile", "however", "still", "officials", "police", "he's", "she's", "it's", "our", "their", "his", "her", "after", "before", "when", "while", "as", "if"]
)
_CLOSERS = "\"'”’)]}»"
# A sentence ends at . ! ? or an ellipsis, possibly followed by closing quotes/brackets, then
# whitespace.
_END = re.compile(r"(?:[.!?]+|…)[" + re.escape(_CLOSERS) + r"]*(?=\s)")
_PARAGRAPH = re.compile(r"\n\s*\n")
_SPEAKABLE = re.compile(r"\w")


def _ends_sentence(text: str, end: int, dot_at: int) -> bool:
    """Whether the terminator ending at `end` (its first char at `dot_at`) ends a sentence."""
    rest = text[end:].lstrip()
    if not rest:
        return True
    if text[dot_at] != ".":
        return True  # ! ? …
    if text[dot_at : dot_at + 2] == "..":  # an ellipsis ends a sentence before a capital
        return rest[0].isupper() or rest[0] in "\"'“‘("
    start = dot_at
    while start > 0 and not text[start - 1].isspace() and text[start - 1] not in "\"'“‘(":
        start -= 1
    word = text[start:dot_at]
    key = word.lower()
    nxt = re.match(r"[\"'“‘(]*([\w'’-]+)", rest)
    next_word = nxt.group(1) if nxt else ""
    if key in _NEVER_FINAL:
        return False
    if len(word) == 1 and word.isalpha() and word.isupper():
        return False  # an initial: "J. K. Rowling"
    if "." in word and re.fullmatch(r"(?:[A-Za-z]\.)+[A-Za-z]", word):
        # a dotted acronym (U.S., a.m.): a sentence only ends if a sentence-like word follows
        return next_word.lower() in _STARTERS
    # ordinary word: a new sentence starts with a capital, digit or opening quote
    return bool(rest) and (rest[0].isupper() or rest[0].isdigit() or rest[0] in "\"'“‘(")


def _split_long(sentence: str, max_chars: int) -> list[str]:
    """Pieces of at most max_chars, cut after the last , ; : or dash, else the last space."""
    out: list[str] = []
    s = sentence.strip()
    while len(s) > max_chars:
        window = s[: max_chars + 1]
        cut = -1
        for m in re.finditer(r"[,;:]\s|\s[-–—]+\s", window):
            if m.end() - 1 <= max_chars and m.start() >= max_chars // 4:
                cut = m.start() + 1 if window[m.start()] in ",;:" else m.start()
        if cut <= 0:
            cut = window.rfind(" ")
        if cut <= 0:
            cut = max_chars  # no space at all: a hard cut
        out.append(s[:cut].strip())
        s = s[cut:].strip()
    if s:
        out.append(s)
    return out


def split_sentences(text: str, max_chars: int = 400) -> list[str]:
    """`text` as sentences, in order, each at most `max_chars` characters, none empty.

    A sentence ends at . ! ? or … followed by whitespace, except after titles and common
    abbreviations ("Dr.", "Mr.", "etc.", "Jan."), single initials ("J.") and dotted acronyms
    ("U.S.", "a.m.") unless a sentence-starting word follows them ("... in the U.S. The ...").
    A blank line (a paragraph or a headline without a full stop) always ends one. Longer
    sentences are split after the last comma/semicolon/colon/dash that fits, else at a space.
    Whitespace inside a sentence collapses to single spaces; pieces without any letter or digit
    are merged into the sentence before them.
    """
    if max_chars < 1:
        raise TtsError(f"sentence_max_chars must be at least 1 (got {max_chars})")
    sentences: list[str] = []
    for para in _PARAGRAPH.split(text):
        para = " ".join(para.split())
        pos = 0
        for m in _END.finditer(para):
            if _ends_sentence(para, m.end(), m.start()):
                sentences.append(para[pos : m.end()])
                pos = m.end()
        sentences.append(para[pos:])
    pieces: list[str] = []
    for s in sentences:
        s = s.strip()
        if not s:
            continue
        if not _SPEAKABLE.search(s):
            if pieces and len(pieces[-1]) + 1 + len(s) <= max_chars:
                pieces[-1] = f"{pieces[-1]} {s}"
            continue
        pieces.extend(p for p in _split_long(s, max_chars) if p)
    return pieces
