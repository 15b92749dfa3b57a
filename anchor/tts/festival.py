"""Festival (Debian `festival` + `festvox-us-slt-hts`): the default, HTS statistical voice.

One festival process is kept open per synthesizer (`festival --pipe`, its stdout line-buffered
through coreutils' `stdbuf`): starting festival and loading the voice costs ~0.15 s, about as
much as synthesising a whole sentence, so a warm process halves the time to first audio and
more than halves the cost of each further sentence. Without `stdbuf` (festival block-buffers a
pipe, so replies would never arrive) every sentence runs a fresh `festival --pipe` instead.

Per sentence, a Scheme call (`anchor_say`, defined at start-up) synthesises the text, saves the
wave to a temp file and prints one line per Segment (phone name and end time: the HTS engine's
own state durations, 5 ms resolution) and per Token with the start/end of its words, then
"ANCHOR-OK". A "ANCHOR-END n" line after every request tells the reply is complete, whether or
not the call failed (festival reports Scheme errors on stderr and carries on). Speaking rate: the
HTS engine's "-r" speed parameter (hts_engine_params), which the segment times follow, and
Duration_Stretch for non-HTS voices. A request that runs past `timeout_s` kills the process; the
next one starts a fresh process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
import unicodedata
import wave
from collections import deque
from pathlib import Path

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

DEFAULT_VOICE = "cmu_us_slt_arctic_hts"
PACKAGE = "festival"
VOICE_PACKAGES = {DEFAULT_VOICE: "festvox-us-slt-hts", "kal_diphone": "festvox-kallpc16k"}
INSTALL = "apt-get install festival festvox-us-slt-hts"
_VOICE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")

# Defined once per process. Segment "end" times; tokens are the text's whitespace words
# (festival's Token relation), each followed by the start/end of the words it was spoken as
# ("2024" -> twenty twenty four); punctuation daughters have no Word relation and are skipped.
_PRELUDE = r"""
(set! anchor_hts_base nil)
(define (anchor_voice name)
  (eval (list (intern (string-append "voice_" name))))
  (set! anchor_hts_base hts_engine_params)
  (format t "ANCHOR-OK\n"))
(define (anchor_say text wavfile rate)
  (set! hts_engine_params (append anchor_hts_base (list (list "-r" rate))))
  (Parameter.set 'Duration_Stretch (/ 1.0 rate))
  ;; Utterance does not evaluate its arguments: build the call around the string
  (set! anchor_utt (utt.synth (eval (list 'Utterance 'Text text))))
  (utt.save.wave anchor_utt wavfile 'riff)
  (mapcar
    (lambda (s) (format t "ANCHOR-SEG %f %s\n" (item.feat s "end") (item.name s)))
    (utt.relation.items anchor_utt 'Segment))
  (let ((tok (utt.relation.first anchor_utt 'Token)))
    (while tok
      (format t "ANCHOR-TOKEN %s\n" (item.name tok))
      (mapcar
        (lambda (w)
          (if (item.relation w 'Word)
              (format t "ANCHOR-WORD %f %f\n" (item.feat w "word_start") (item.feat w "word_end"))))
        (item.daughters tok))
      (set! tok (item.next tok))))
  (format t "ANCHOR-OK\n"))
;; not (voice.list): before a voice is selected it costs ~0.5 s; Python scans voice-path
(format t "ANCHOR-VOICEPATH %l\n" voice-path)
"""

# Festival reads bytes as Latin-1 and its English front end knows ASCII: typographic
# punctuation is mapped, accents are dropped ("café" -> "cafe").
_ASCII_PUNCT = str.maketrans({
    "‘": "'", "’": "'", "‚": "'", "‛": "'", "“": '"', "”": '"', "„": '"', "«": '"', "»": '"',
    "–": " - ", "—": " - ", "‒": " - ", "―": " - ", "…": "...", "\u00a0": " ", "€": " euros ",
    "£": " pounds ", "¥": " yen ", "%": " percent ", "°": " degrees ", "×": " x ",
})


def to_festival_text(text: str) -> str:
    """`text` as plain ASCII on one line, as festival's English front end wants it."""
    s = text.translate(_ASCII_PUNCT)
    s = unicodedata.normalize("NFKD", s).encode("ascii", "ignore").decode("ascii")
    return " ".join(s.split())


def scheme_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def festival_binary() -> str | None:
    return shutil.which("festival")


class _FestivalProcess:
    """One `festival --pipe`: requests in on stdin, reply lines collected from stdout by a
    reader thread (so a hung festival cannot block us past the timeout), stderr kept for
    error messages."""

    def __init__(self, binary: str, timeout_s: float) -> None:
        stdbuf = shutil.which("stdbuf")
        cmd = [stdbuf, "-oL", binary, "--pipe"] if stdbuf else [binary, "--pipe"]
        try:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                encoding="latin-1", errors="replace", bufsize=1,
                start_new_session=True,  # a Ctrl-C meant for the server does not kill festival
            )
        except OSError as exc:
            raise TtsError(f"cannot start festival ({exc.strerror or exc}): {INSTALL}") from None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: deque[str] = deque(maxlen=20)
        self._n = 0
        self.timeout_s = timeout_s
        assert self.proc.stdout is not None and self.proc.stderr is not None
        threading.Thread(target=self._pump, args=(self.proc.stdout, True),
                         name="festival-stdout", daemon=True).start()
        threading.Thread(target=self._pump, args=(self.proc.stderr, False),
                         name="festival-stderr", daemon=True).start()

    def _pump(self, stream: object, is_stdout: bool) -> None:
        try:
            for line in stream:  # type: ignore[attr-defined]
                if is_stdout:
                    self._lines.put(line.rstrip("\n"))
                else:
                    self._stderr.append(line.strip())
        except (OSError, ValueError):
            pass
        finally:
            if is_stdout:
                self._lines.put(None)  # EOF: festival exited

    def alive(self) -> bool:
        return self.proc.poll() is None

    def last_error(self) -> str:
        for line in reversed(self._stderr):
            if line:
                return line
        return ""

    def request(self, scheme: str, timeout_s: float | None = None) -> list[str]:
        """Send one or more Scheme expressions; the lines printed until our end marker."""
        self._n += 1
        marker = f"ANCHOR-END {self._n}"
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(f'{scheme}\n(format t "{marker}\\n")\n')
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            self.kill()
            raise TtsError(f"festival exited: {self.last_error() or 'no message'}") from None
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        out: list[str] = []
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.kill()
                raise TtsError(
                    f"festival did not answer within {timeout_s or self.timeout_s:.0f} s"
                ) from None
            if line is None:
                self.kill()
                time.sleep(0.05)  # let the stderr pump catch the last message
                raise TtsError(f"festival exited: {self.last_error() or 'no message'}")
            if line == marker:
                return out
            out.append(line)

    def kill(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        with contextlib.suppress(OSError):
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired, OSError):
            self.proc.wait(timeout=2)


class FestivalSynthesizer(Synthesizer):
    """Festival with a kept-open process; see the module docstring for how it is driven."""

    engine = "festival"

    def __init__(self, cfg: TtsConfig, *, binary: str | None = None,
                 timeout_s: float = 30.0, persistent: bool | None = None) -> None:
        super().__init__(cfg)
        found = binary or festival_binary()
        if found is None:
            raise TtsError(f"festival is not installed: {INSTALL}")
        self.binary = found
        self.timeout_s = timeout_s
        # A kept-open process needs line-buffered stdout, which only stdbuf gives.
        self.persistent = (shutil.which("stdbuf") is not None) if persistent is None else persistent
        self._lock = threading.Lock()
        self._proc: _FestivalProcess | None = None
        self._proc_voice = ""
        self._tmp = Path(tempfile.mkdtemp(prefix="anchor-festival-"))
        self._closed = False
        self._last_stderr = ""
        try:
            self._voices = self._list_voices()
            self.voice = self.check_voice(cfg.voice or DEFAULT_VOICE)
            if self.persistent:
                with self._lock:
                    self._ensure_process(self.voice)  # warm: the first sentence starts at once
        except BaseException:
            self.close()
            raise

    # -- voices --------------------------------------------------------------------------------
    def _list_voices(self) -> list[str]:
        if self.persistent:
            with self._lock:
                lines = self._ensure_process(None)
        else:
            lines = self._run_once("")
        for line in lines:
            if line.startswith("ANCHOR-VOICEPATH "):
                dirs = re.findall(r'"([^"]*)"', line[len("ANCHOR-VOICEPATH "):])
                return _voices_in(dirs)
        raise TtsError("festival did not list its voices: is festival installed correctly? "
                       f"({INSTALL})")

    def voices(self) -> list[str]:
        return list(self._voices)

    def check_voice(self, voice: str | None) -> str:
        name = voice or getattr(self, "voice", "") or DEFAULT_VOICE
        if not _VOICE_NAME.fullmatch(name):
            raise TtsError(f"festival voice {name!r} is not a voice name (letters, digits, _)")
        if name not in self._voices:
            pkg = VOICE_PACKAGES.get(name)
            have = ", ".join(self._voices) or "none"
            if pkg:
                raise TtsError(f"festival voice {name} is not installed: apt-get install {pkg}")
            raise TtsError(f"festival has no voice {name!r} (installed: {have})")
        return name

    # -- the process ---------------------------------------------------------------------------
    def _ensure_process(self, voice: str | None) -> list[str]:
        """A live process with `voice` selected (lock held). Returns the start-up reply lines
        when it had to start one."""
        lines: list[str] = []
        if self._proc is None or not self._proc.alive():
            if self._proc is not None:
                log.warning("festival exited (%s); starting it again",
                            self._proc.last_error() or "no message")
            self._proc = _FestivalProcess(self.binary, self.timeout_s)
            self._proc_voice = ""
            lines = self._proc.request(_PRELUDE)
        if voice and voice != self._proc_voice:
            reply = self._proc.request(f"(anchor_voice {scheme_string(voice)})")
            if "ANCHOR-OK" not in reply:
                raise TtsError(f"festival could not load voice {voice}: "
                               f"{self._proc.last_error() or 'no message'}")
            self._proc_voice = voice
        return lines

    def _run_once(self, scheme: str) -> list[str]:
        """A fresh `festival --pipe` for one script (no stdbuf: output arrives at exit)."""
        try:
            res = subprocess.run(
                [self.binary, "--pipe"], input=_PRELUDE + scheme, capture_output=True,
                encoding="latin-1", errors="replace", timeout=self.timeout_s,
            )
        except subprocess.TimeoutExpired:
            raise TtsError(f"festival did not finish within {self.timeout_s:.0f} s") from None
        except OSError as exc:
            raise TtsError(f"cannot run festival ({exc.strerror or exc}): {INSTALL}") from None
        errors = [ln.strip() for ln in res.stderr.splitlines() if ln.strip()]
        self._last_stderr = errors[-1] if errors else ""
        return res.stdout.splitlines()

    # -- synthesis -----------------------------------------------------------------------------
    def synthesize(
        self, sentence: str, *, voice: str | None = None, rate: float | None = None
    ) -> Sentence:
        use_voice = self.check_voice(voice)
        use_rate = self.rate if rate is None else check_rate(rate)
        text = to_festival_text(sentence)
        if not re.search(r"[A-Za-z0-9]", text):
            if re.search(r"\w", sentence):
                raise TtsError("festival's voices speak English only: for this text use "
                               "tts.engine=espeak-ng with tts.language set")
            return Sentence(sentence, np.zeros(0, np.float32), (), (), self.engine, use_voice)
        with self._lock:
            if self._closed:
                raise TtsError("this festival synthesizer is closed")
            wav = self._tmp / "say.wav"
            with contextlib.suppress(FileNotFoundError):
                wav.unlink()
            call = (f"(anchor_say {scheme_string(text)} {scheme_string(str(wav))} "
                    f"{use_rate:.4f})")
            t0 = time.perf_counter()
            if self.persistent:
                self._ensure_process(use_voice)
                assert self._proc is not None
                lines = self._proc.request(call)
                err = self._proc.last_error()
            else:
                lines = self._run_once(f"(anchor_voice {scheme_string(use_voice)})\n{call}\n")
                err = self._last_stderr
            if "ANCHOR-OK" not in lines or not wav.is_file():
                raise TtsError(f"festival could not synthesise {sentence[:40]!r}: "
                               f"{err or 'no message'}")
            samples, rate_hz = _read_wav(wav)
            log.debug("festival: %d chars in %.0f ms", len(text), 1000 * (time.perf_counter() - t0))
        if rate_hz != SAMPLE_RATE:
            samples = resample(samples, rate_hz, SAMPLE_RATE)
        samples = np.clip(samples, -1.0, 1.0).astype(np.float32)
        duration = len(samples) / SAMPLE_RATE
        phonemes, words = _parse_timings(lines, sentence, duration)
        return Sentence(sentence, samples, words, phonemes, self.engine, use_voice)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._proc is not None:
                self._proc.kill()
                self._proc = None
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            if not self._closed:
                self.close()


def _voices_in(voice_path: list[str]) -> list[str]:
    """Voice names under festival's voice-path (<dir>/<language>/<voice>/festvox), as
    festival's own voice.list finds them."""
    names: set[str] = set()
    for d in voice_path:
        root = Path(d)
        with contextlib.suppress(OSError):
            for voice_dir in root.glob("*/*/festvox"):
                if voice_dir.is_dir():
                    names.add(voice_dir.parent.name)
    return sorted(names)


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    try:
        with wave.open(str(path), "rb") as w:
            if w.getsampwidth() != 2:
                raise TtsError(f"festival wrote {8 * w.getsampwidth()}-bit audio, not 16-bit")
            rate = w.getframerate()
            channels = w.getnchannels()
            data = w.readframes(w.getnframes())
    except (wave.Error, EOFError, OSError) as exc:
        raise TtsError(f"festival wrote an unreadable wave file ({exc})") from None
    x = pcm16_to_float(data)
    if channels > 1:
        x = x.reshape(-1, channels).mean(axis=1)
    return x, rate


def _parse_timings(lines: list[str], sentence: str, duration: float
                   ) -> tuple[tuple[Timing, ...], tuple[Timing, ...]]:
    phonemes: list[Timing] = []
    prev = 0.0
    tokens: list[tuple[str, list[tuple[float, float]]]] = []
    for line in lines:
        if line.startswith("ANCHOR-SEG "):
            end_s, _, name = line[len("ANCHOR-SEG "):].partition(" ")
            end = min(float(end_s), duration)
            if end > prev:
                phonemes.append(Timing(name, prev, end, to_arpabet(name)))
                prev = end
        elif line.startswith("ANCHOR-TOKEN "):
            tokens.append((line[len("ANCHOR-TOKEN "):].strip(), []))
        elif line.startswith("ANCHOR-WORD ") and tokens:
            a, b = line[len("ANCHOR-WORD "):].split()
            tokens[-1][1].append((float(a), float(b)))
    if phonemes and phonemes[-1].end_s < duration - 1e-3:  # trailing audio past the last phone
        last = phonemes[-1]
        if last.arpabet == "pau":
            phonemes[-1] = Timing(last.label, last.start_s, duration, last.arpabet)
        else:
            phonemes.append(Timing("pau", last.end_s, duration, "pau"))
    # Festival's token names drop punctuation; label each with the sentence's own word where
    # the two line up one to one (the usual case), else with festival's name.
    spoken = [(name, spans) for name, spans in tokens if spans]
    own = [label for _s, _e, label in word_spans(sentence)]
    use_own = len(own) == len(spoken)
    words: list[Timing] = []
    last_end = 0.0
    for i, (name, spans) in enumerate(spoken):
        start = max(min(a for a, _b in spans), last_end)
        end = min(max(b for _a, b in spans), duration)
        if end <= start:
            continue
        words.append(Timing(own[i] if use_own else name, start, end))
        last_end = end
    return tuple(phonemes), tuple(words)


def festival_default_voice_installed() -> bool:
    """A cheap check (no process): the HTS voice's files where Debian puts them."""
    roots = [Path("/usr/share/festival/voices"), Path("/usr/lib/festival/voices")]
    extra = os.environ.get("FESTLIBDIR")
    if extra:
        roots.append(Path(extra) / "voices")
    return any((r / "us" / DEFAULT_VOICE).is_dir() for r in roots)
