"""espeak-ng (Debian `espeak-ng`): the fallback, for every language it covers.

Driven in-process through libespeak-ng with ctypes, in synchronous mode: `espeak_Synth` calls
our callback with 16-bit audio chunks and the events that belong to them. With
espeakINITIALIZE_PHONEME_EVENTS those include one PHONEME event per phoneme (its mnemonic and
start in ms) besides the WORD events; each event carries the character position of the word it
belongs to, which maps phonemes to the sentence's own words. A phoneme ends where the next one
starts; a word spans its phonemes (pauses, mnemonics starting with "_", excluded). No subprocess
and no start-up cost (the library loads in ~1 ms); the callback aborts a synthesis that runs
past the timeout. libespeak-ng has one global state, so one synthesis runs at a time in the
whole process (a module lock), whatever the number of synthesizers.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import re
import threading
import time
from typing import Any

import numpy as np

from anchor.audio.resample import resample
from anchor.config import TtsConfig
from anchor.errors import TtsError
from anchor.tts.base import (
    SAMPLE_RATE,
    Sentence,
    Synthesizer,
    Timing,
    check_rate,
    pcm16_to_float,
    to_arpabet,
    word_spans,
)

log = logging.getLogger(__name__)

PACKAGE = "espeak-ng"
INSTALL = "apt-get install espeak-ng"
_VOICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_+\-]{0,63}")

# speak_lib.h
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INIT_PHONEME_EVENTS = 0x0001
_INIT_DONT_EXIT = 0x8000  # report errors instead of exit()ing the whole process
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_RATE = 1  # espeakRATE, words per minute
_EV_LIST_TERMINATED, _EV_WORD, _EV_END, _EV_PHONEME = 0, 1, 5, 7


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based character position of the word
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # ms from the start of the text
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),  # union: phoneme mnemonic for PHONEME events
    ]


class _Voice(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_char_p),  # (priority byte, language, NUL)*, NUL
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.POINTER(_Event))


class _Collector:
    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.chunks: list[bytes] = []
        self.events: list[tuple[int, int, int, str]] = []  # type, text_position, ms, mnemonic
        self.timed_out = False


class _Library:
    """The loaded, initialised libespeak-ng (one per process)."""

    def __init__(self, path: str) -> None:
        try:
            lib = ctypes.CDLL(path)
        except OSError as exc:
            raise TtsError(f"espeak-ng cannot be loaded ({exc}): {INSTALL}") from None
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p,
                                          ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_GetParameter.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.espeak_GetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_ListVoices.argtypes = [ctypes.c_void_p]
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 200, None,
                                     _INIT_PHONEME_EVENTS | _INIT_DONT_EXIT)
        if rate <= 0:
            raise TtsError(f"espeak-ng could not start (its data is missing?): {INSTALL}")
        self.lib = lib
        self.sample_rate = rate
        self.collector: _Collector | None = None
        self._callback = _CALLBACK(self._on_audio)  # kept referenced: C holds the pointer
        lib.espeak_SetSynthCallback(self._callback)
        self.voice = ""
        # espeakRATE_NORMAL; a voice's own "speed" is applied by espeak on top of it
        self.base_wpm = 175

    def _on_audio(self, wav: Any, n: int, events: Any) -> int:
        c = self.collector
        if c is None:
            return 1
        if n > 0 and wav:
            c.chunks.append(ctypes.string_at(wav, 2 * n))
        i = 0
        while events[i].type != _EV_LIST_TERMINATED:
            e = events[i]
            name = bytes(e.id).split(b"\0", 1)[0].decode("ascii", "replace") \
                if e.type == _EV_PHONEME else ""
            c.events.append((e.type, e.text_position, e.audio_position, name))
            i += 1
        if time.monotonic() > c.deadline:
            c.timed_out = True
            return 1  # abort the synthesis
        return 0

    def set_voice(self, voice: str) -> None:
        if voice == self.voice:
            return
        if self.lib.espeak_SetVoiceByName(voice.encode("ascii")) != 0:
            self.voice = ""
            raise TtsError(f"espeak-ng has no voice {voice!r} (list them: espeak-ng --voices)")
        self.voice = voice

    def voices(self) -> list[str]:
        out: list[str] = []
        arr = self.lib.espeak_ListVoices(None)
        i = 0
        while arr and arr[i]:
            v = arr[i].contents
            langs = ctypes.string_at(v.languages, 64) if v.languages else b""
            # first (priority, language) entry
            lang = langs[1:].split(b"\0", 1)[0].decode("ascii", "replace") if langs else ""
            if lang:
                out.append(lang)
            i += 1
        return sorted(set(out))


_LOCK = threading.Lock()  # libespeak-ng's state is global: one synthesis at a time per process
_LIB: _Library | None = None


def library_path() -> str | None:
    """libespeak-ng's file name for ctypes, or None when it is not installed."""
    return ctypes.util.find_library("espeak-ng")


def _library() -> _Library:
    """The shared library (lock held)."""
    global _LIB
    if _LIB is None:
        path = library_path()
        if path is None:
            raise TtsError(f"espeak-ng is not installed: {INSTALL}")
        _LIB = _Library(path)
    return _LIB


class EspeakSynthesizer(Synthesizer):
    """espeak-ng through libespeak-ng; see the module docstring."""

    engine = "espeak-ng"

    def __init__(self, cfg: TtsConfig, *, timeout_s: float = 30.0) -> None:
        super().__init__(cfg)
        self.timeout_s = timeout_s
        with _LOCK:
            self._lib = _library()
        self.voice = ""
        self.voice = self.check_voice(cfg.voice or cfg.language or "en")
        with _LOCK:
            self._lib.set_voice(self.voice)  # a bad default voice fails here, not mid-request

    def voices(self) -> list[str]:
        with _LOCK:
            return self._lib.voices()

    def check_voice(self, voice: str | None) -> str:
        name = voice or self.voice
        if not _VOICE_NAME.fullmatch(name or ""):
            raise TtsError(f"espeak-ng voice {name!r} is not a voice name "
                           "(letters, digits, '-', '+', '_', e.g. en-us or en+f3)")
        return name

    def synthesize(
        self, sentence: str, *, voice: str | None = None, rate: float | None = None
    ) -> Sentence:
        use_voice = self.check_voice(voice)
        use_rate = self.rate if rate is None else check_rate(rate)
        text = " ".join(sentence.split())  # positions below index this exact string
        if not re.search(r"\w", text):
            return Sentence(sentence, np.zeros(0, np.float32), (), (), self.engine, use_voice)
        data = text.encode("utf-8")
        t0 = time.perf_counter()
        with _LOCK:
            lib = self._lib
            lib.set_voice(use_voice)
            wpm = int(round(lib.base_wpm * use_rate))
            lib.lib.espeak_SetParameter(_RATE, max(80, min(450, wpm)), 0)
            c = _Collector(time.monotonic() + self.timeout_s)
            lib.collector = c
            try:
                err = lib.lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8,
                                           None, None)
            finally:
                lib.collector = None
            in_rate = lib.sample_rate
        if c.timed_out:
            raise TtsError(f"espeak-ng did not finish within {self.timeout_s:.0f} s")
        if err != 0:
            raise TtsError(f"espeak-ng could not synthesise {sentence[:40]!r} (error {err})")
        log.debug("espeak-ng: %d chars in %.0f ms", len(text), 1000 * (time.perf_counter() - t0))
        samples = pcm16_to_float(b"".join(c.chunks))
        if in_rate != SAMPLE_RATE:
            samples = resample(samples, in_rate, SAMPLE_RATE)
        samples = np.clip(samples, -1.0, 1.0).astype(np.float32)
        phonemes, words = _timings(c.events, text, len(samples) / SAMPLE_RATE)
        return Sentence(sentence, samples, words, phonemes, self.engine, use_voice)


def _timings(events: list[tuple[int, int, int, str]], text: str, duration: float
             ) -> tuple[tuple[Timing, ...], tuple[Timing, ...]]:
    marks = [(pos, ms / 1000.0, name) for kind, pos, ms, name in events if kind == _EV_PHONEME]
    phonemes: list[Timing] = []
    owners: list[int] = []  # text position of each phoneme's word
    for i, (pos, start, name) in enumerate(marks):
        end = marks[i + 1][1] if i + 1 < len(marks) else duration
        start, end = min(start, duration), min(end, duration)
        if phonemes and start < phonemes[-1].end_s:
            start = phonemes[-1].end_s
        if end <= start:
            continue  # zero-length marks (a pause at the very end)
        if not phonemes and start > 0:
            phonemes.append(Timing("_", 0.0, start, "pau"))  # leading silence
            owners.append(-1)
        phonemes.append(Timing(name, start, end, to_arpabet(name)))
        owners.append(-1 if name.startswith("_") else pos)
    if phonemes and phonemes[-1].end_s < duration - 1e-3:
        phonemes.append(Timing("_", phonemes[-1].end_s, duration, "pau"))
        owners.append(-1)
    # espeak's positions are 1-based characters of `text`: map them to its words
    spans = word_spans(text)
    per_word: dict[int, list[Timing]] = {}
    for ph, pos in zip(phonemes, owners, strict=True):
        if pos < 0:
            continue
        k = _word_at(spans, pos - 1)
        if k is not None:
            per_word.setdefault(k, []).append(ph)
    words: list[Timing] = []
    keys = sorted(per_word)
    for n, k in enumerate(keys):
        phs = per_word[k]
        start, end = phs[0].start_s, phs[-1].end_s
        if words and start < words[-1].end_s:
            start = words[-1].end_s
        if end <= start:
            continue
        # espeak-ng speaks some pairs ("on the", "I am") as one group, with the events on its
        # first word: share the group's time among its words by their length.
        nxt = keys[n + 1] if n + 1 < len(keys) else len(spans)
        group = [spans[j][2] for j in range(k, nxt)]
        letters = np.cumsum([0] + [max(1, len(w)) for w in group], dtype=np.float64)
        edges = start + (end - start) * letters / letters[-1]
        for w, a, b in zip(group, edges[:-1], edges[1:], strict=True):
            words.append(Timing(w, float(a), float(b)))
    return tuple(phonemes), tuple(words)


def _word_at(spans: list[tuple[int, int, str]], index: int) -> int | None:
    """The word containing character `index`, else the next word after it."""
    for k, (_s, e, _label) in enumerate(spans):
        if index < e:
            return k
    return len(spans) - 1 if spans else None
