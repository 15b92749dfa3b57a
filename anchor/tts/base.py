"""What every TTS engine returns (`Sentence` with `Timing`s) and the `Synthesizer` interface.

Audio is 16 kHz mono float32 in [-1, 1], the pipeline's input rate. Timings are seconds from the
sentence's first sample. Each phoneme carries the engine's own symbol (`label`) and, where it
can be mapped, a normalised ARPAbet-like symbol (`arpabet`: lower case, no stress, "pau" for
silence) from which `viseme_class` gives the mouth shape the phoneme needs.
"""

from __future__ import annotations

import abc
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

from anchor.config import TtsConfig
from anchor.errors import TtsError
from anchor.tts.text import split_sentences, validate_text

if TYPE_CHECKING:
    from anchor.mouth.visemes import SpeechCues

SAMPLE_RATE = 16000  # Sentence.samples
MIN_RATE, MAX_RATE = 0.5, 2.5  # beyond these both engines are hard to follow (espeak-ng clamps)

VisemeClass = Literal["bilabial", "rounded", "open", "other"]

# ARPAbet-like symbols (festival's US phone set and CMUdict, lower case, no stress digits).
_BILABIAL = frozenset({"p", "b", "m", "em"})
_ROUNDED = frozenset({"uw", "uh", "ow", "oy", "ao", "w"})
_OPEN = frozenset({"aa", "ae", "ah", "aw", "ay", "eh", "ey", "ax", "axr", "ix", "ih", "iy",
                   "er"})
ARPABET = frozenset(
    _BILABIAL | _ROUNDED | _OPEN
    | {"pau", "t", "d", "k", "g", "f", "v", "th", "dh", "s", "z", "sh", "zh", "ch", "jh", "hh",
       "hv", "n", "ng", "nx", "l", "el", "en", "r", "y", "dx", "q"}
)

# espeak-ng phoneme mnemonics (English table first; the plain vowel letters cover most other
# languages well enough for a mouth shape) -> ARPAbet-like.
_ESPEAK_TO_ARPABET = {
    "p": "p", "b": "b", "m": "m", "t": "t", "d": "d", "k": "k", "g": "g", "f": "f", "v": "v",
    "T": "th", "D": "dh", "s": "s", "z": "z", "S": "sh", "Z": "zh", "tS": "ch", "dZ": "jh",
    "h": "hh", "n": "n", "N": "ng", "l": "l", "r": "r", "w": "w", "j": "y", "?": "q",
    "t#": "dx", "d#": "dx", "n-": "en", "l-": "el", "m-": "em", "r-": "er", "x": "hh",
    "a": "ae", "aa": "aa", "a#": "ax", "A:": "aa", "A@": "aa", "A": "aa", "0": "aa", "O:": "ao",
    "O": "ao", "O@": "ao", "o@": "ao", "aI": "ay", "aI@": "ay", "aI3": "ay", "aU": "aw",
    "aU@": "aw", "eI": "ey", "e@": "eh", "E": "eh", "e": "eh", "@": "ax", "@L": "el", "@2": "ax",
    "@5": "ax", "3:": "er", "3": "er", "I": "ih", "I2": "ih", "I#": "ih", "i": "iy", "i:": "iy",
    "i@": "ih", "i@3": "ih", "V": "ah", "U": "uh", "u:": "uw", "u": "uw", "U@": "uh",
    "oU": "ow", "o": "ow", "o:": "ow", "OI": "oy", "y": "uw", "Y": "uw", "e:": "ey",
}


def to_arpabet(label: str) -> str:
    """A normalised ARPAbet-like symbol for an engine's phoneme label ("" when unknown).

    Festival's symbols are already ARPAbet; espeak-ng's mnemonics are mapped; a label starting
    with "_" (espeak-ng's pauses) or "pau"/"sil" is "pau".
    """
    if not label:
        return ""
    if label.startswith("_") or label in ("pau", "sil", "h#", "#"):
        return "pau"
    low = re.sub(r"[0-9]$", "", label.lower())  # CMUdict stress digits
    if label == low and low in ARPABET:
        return low
    if label in _ESPEAK_TO_ARPABET:
        return _ESPEAK_TO_ARPABET[label]
    base = label.rstrip(":;#'\",")
    if base in _ESPEAK_TO_ARPABET:
        return _ESPEAK_TO_ARPABET[base]
    if low in ARPABET:
        return low
    return ""


def viseme_class(label: str) -> VisemeClass:
    """The mouth shape a phoneme needs: "bilabial" (p b m: lips closed), "rounded" (uw ow w:
    lips pushed forward), "open" (other vowels: jaw open) or "other" (everything else, pauses
    included). Takes an ARPAbet-like symbol or any engine label `to_arpabet` understands."""
    a = label if label in ARPABET else to_arpabet(label)
    if a in _BILABIAL:
        return "bilabial"
    if a in _ROUNDED:
        return "rounded"
    if a in _OPEN:
        return "open"
    return "other"


@dataclass(frozen=True)
class Timing:
    """One word or phoneme: `label` from start_s to end_s (seconds from the sentence start)."""

    label: str
    start_s: float
    end_s: float
    arpabet: str = ""  # phonemes: normalised ARPAbet-like symbol ("pau" = silence); words: ""

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True, eq=False)
class Sentence:
    """One synthesised sentence. `words` are the sentence's own whitespace-separated words
    (punctuation stripped, so "2024" is one word however it is spoken); `phonemes` cover the
    audio without gaps, pauses included (arpabet "pau")."""

    text: str
    samples: np.ndarray  # (n,) float32 at SAMPLE_RATE, in [-1, 1]
    words: tuple[Timing, ...]
    phonemes: tuple[Timing, ...]
    engine: str = ""
    voice: str = ""
    sample_rate: int = field(default=SAMPLE_RATE)

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


def check_rate(rate: float, where: str = "rate") -> float:
    """`rate` as a float within [MIN_RATE, MAX_RATE], else a one-line TtsError."""
    try:
        value = float(rate)
    except (TypeError, ValueError):
        raise TtsError(f"{where} must be a number (got {rate!r})") from None
    if not math.isfinite(value) or not MIN_RATE <= value <= MAX_RATE:
        raise TtsError(f"{where} must be between {MIN_RATE} and {MAX_RATE} (got {rate!r})")
    return value


def pcm16_to_float(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


class Synthesizer(abc.ABC):
    """Text to 16 kHz speech with word and phoneme timings, one sentence at a time.

    Calls block (run them on a worker thread); one synthesis runs at a time per synthesizer
    (a lock serialises concurrent callers). `close()` releases the engine (also on `with`).
    """

    engine: str
    voice: str  # the default voice, used when a call passes voice=None

    def __init__(self, cfg: TtsConfig) -> None:
        self.cfg = cfg
        self.rate = check_rate(cfg.rate, "tts.rate")

    @abc.abstractmethod
    def synthesize(
        self, sentence: str, *, voice: str | None = None, rate: float | None = None
    ) -> Sentence:
        """One sentence (or any short text) synthesised whole."""

    def voices(self) -> list[str]:
        """Voices this engine can use (may be empty when the engine cannot list them)."""
        return []

    def check_voice(self, voice: str | None) -> str:
        """The voice a call uses (the default for None/""), or a one-line TtsError."""
        return voice or self.voice

    def stream(
        self, text: str, *, voice: str | None = None, rate: float | None = None
    ) -> Iterator[Sentence]:
        """Sentences of `text` as each is synthesised: the first arrives before the rest are
        made. Text, voice and rate are checked here, before anything is synthesised (so a bad
        request fails at once); synthesis happens as the iterator is advanced."""
        clean = validate_text(text, self.cfg.max_chars)
        use_voice = self.check_voice(voice)
        use_rate = self.rate if rate is None else check_rate(rate)
        pieces = split_sentences(clean, self.cfg.sentence_max_chars)
        return self._stream(pieces, use_voice, use_rate)

    def _stream(self, pieces: list[str], voice: str, rate: float) -> Iterator[Sentence]:
        for piece in pieces:
            yield self.synthesize(piece, voice=voice, rate=rate)

    def close(self) -> None:  # noqa: B027 (engines without resources need nothing)
        """Release the engine (a subprocess, temp files); the synthesizer is unusable after."""

    def __enter__(self) -> Synthesizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def word_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, label) of each whitespace-separated word of `text`, with surrounding
    punctuation stripped from the label (words that are only punctuation are left out)."""
    out = []
    for m in re.finditer(r"\S+", text):
        word = m.group(0)
        label = word.strip("\"'“”‘’()[]{}«».,;:!?…-–—")
        if re.fullmatch(r"(?:[A-Za-z]\.)+[A-Za-z]", label) and f"{label}." in word:
            label += "."  # keep the acronym's own dot: "U.S."
        if label and re.search(r"\w", label):
            out.append((m.start(), m.end(), label))
    return out


def sentence_cues(sentence: Sentence) -> SpeechCues:
    """The sentence's phoneme and word timings as pipeline cues (seconds from its first sample):
    phonemes by mouth class (`viseme_class`), words lower-cased."""
    from anchor.mouth.visemes import PhonemeCue, SpeechCues, WordCue

    phonemes = tuple(
        PhonemeCue(viseme_class(p.arpabet or p.label), p.start_s, p.end_s, p.arpabet or p.label)
        for p in sentence.phonemes if p.end_s > p.start_s
    )
    words = tuple(WordCue(w.label.lower(), w.start_s, w.end_s) for w in sentence.words)
    return SpeechCues(phonemes, words)
