"""Text in, speech out: `POST /say` and the `/rundown`, on top of the session's speak queue.

    POST /say ───────► [says waiting] ──┐
                                        ├─► programme worker ──► session.speak(one sentence)
    POST /rundown ──► [rundown items] ──┘          ▲                (one speak job a sentence)
                                                   │ sentences as they are synthesised
                         synth worker: Synthesizer.stream() on the desk's own "anchor-tts" thread

- Synthesis is blocking: it runs on one dedicated thread (never the default executor, which
  aiortc's encoders use), sentence by sentence, and each sentence is queued as soon as it is
  synthesised, so the first words play while the rest is still being synthesised. At most
  SENTENCES_AHEAD sentences of a text wait in the session's (bounded) speak queue at a time.
- One text at a time feeds the session, so the sentences of two texts never interleave. A /say
  goes on air before the next rundown item (it never cuts one); both queue behind /speak files
  already waiting, like a /speak upload.
- `POST /interrupt` (the session's "interrupt" event): drops every waiting /say and stops the
  text on air (no further sentences); a rundown then goes on with its next item at once.
  `DELETE /rundown` empties the list of items to come; the item on air finishes (interrupt it
  to cut it short).
- A rundown item is over when its last frame has left the screen (`SourceWatcher` sees the
  frames' source change); then its pause runs and the next item starts.

Speak jobs are named `say:<n>/<k>` and `rundown:<id>/<k>` (k: the sentence, from 1), so every
frame's `source` says which text and sentence it shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import os
import re
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from aiohttp import web

from anchor.config import ServerConfig
from anchor.errors import AudioError, StreamError, TtsError
from anchor.mouth.visemes import SpeechCues
from anchor.pipeline.items import OutputFrame
from anchor.pipeline.session import AnchorSession, InputBusy

if TYPE_CHECKING:
    from anchor.config import TtsConfig
    from anchor.stream.rundown import ItemSpec
    from anchor.tts import Synthesizer

log = logging.getLogger(__name__)

TTS_SAMPLE_RATE = 16000  # Sentence.samples
SENTENCES_AHEAD = 2  # sentences of one text waiting in the session's speak queue at most
MAX_WAITING_SAYS = 8  # /say requests waiting for their turn (409 beyond)
MAX_RUNDOWN_ITEMS = 100  # items to come (413 beyond)
DEFAULT_PAUSE_S = 1.0  # after a rundown item, unless the item or the request says otherwise
MAX_PAUSE_S = 600.0
BUSY_RETRY_S = 0.1  # a full speak queue or a live input: try the next sentence again this often
VOICE_NAME = re.compile(r"[A-Za-z0-9_.+\-]{1,64}")


class DeskError(StreamError):
    """A /say or /rundown request that cannot be served: `status` is the HTTP code to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def one_line(exc: BaseException | str) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


# -- request bodies ------------------------------------------------------------------------------
async def read_bounded(request: web.Request, limit: int, what: str) -> bytes:
    """The request body, at most `limit` bytes (DeskError 413 beyond, even when chunked):
    JSON is parsed on the event loop, so a request never gets to hand it megabytes."""
    if request.content_length is not None and request.content_length > limit:
        raise DeskError(413, f"{what} larger than {limit} bytes (server.max_signalling_bytes)")
    data = bytearray()
    async for chunk in request.content.iter_chunked(16 << 10):
        data += chunk
        if len(data) > limit:
            raise DeskError(413, f"{what} larger than {limit} bytes (server.max_signalling_bytes)")
    return bytes(data)


def parse_json(raw: bytes, what: str) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise DeskError(400, f"{what} is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise DeskError(400, f"{what} is not JSON ({exc.msg} at line {exc.lineno})") from None


def check_voice(voice: object, where: str = "") -> str | None:
    if voice is None:
        return None
    if not isinstance(voice, str) or not VOICE_NAME.fullmatch(voice):
        raise DeskError(400, f"{where}'voice' must be a voice name such as \"en-us\" (letters, "
                             "digits, _ . + -, at most 64)")
    return voice


def check_rate(rate: object, where: str = "") -> float | None:
    """A speaking-rate multiplier (1.0 = the voice's own, as tts.rate); the engine's range is
    checked by `SpeechDesk.check_voice_rate`."""
    if rate is None:
        return None
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not math.isfinite(rate) \
            or rate <= 0:
        raise DeskError(400, f"{where}'rate' must be a speaking-rate multiplier such as 1.2 "
                             "(1.0 = the voice's own)")
    return float(rate)


def check_pause(pause: object, where: str = "") -> float:
    if isinstance(pause, bool) or not isinstance(pause, int | float) or not math.isfinite(pause) \
            or not 0 <= pause <= MAX_PAUSE_S:
        raise DeskError(400, f"{where}'pause_s' must be a number of seconds from 0 to "
                             f"{MAX_PAUSE_S:g}")
    return float(pause)


def check_keys(body: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise DeskError(400, f"{where}unknown field {unknown[0]!r} (expected "
                             f"{', '.join(sorted(allowed))})")


def parse_say(raw: bytes, content_type: str) -> tuple[str | bytes, str | None, float | None]:
    """(text, voice, rate) of a /say body: JSON {text, voice?, rate?}, or the text itself as
    text/plain (bytes: the TTS's validate_text says when they are not UTF-8)."""
    if content_type == "text/plain":
        return raw, None, None
    body = parse_json(raw, "/say body")
    if not isinstance(body, dict) or "text" not in body:
        raise DeskError(400, '/say body must be JSON {"text": "...", "voice"?: "...", "rate"?: 1.0}')
    check_keys(body, {"text", "voice", "rate"}, "")
    text = body["text"]
    if not isinstance(text, str):
        raise DeskError(400, "'text' must be a string")
    return text, check_voice(body.get("voice")), check_rate(body.get("rate"))


# -- utterances ------------------------------------------------------------------------------------
class Utterance:
    """One text (or decoded audio) to speak: its sentences arrive in `sentences` as they are
    synthesised (16 kHz mono float32; None ends the list), `first` resolves with None once the
    first is ready or with the error that stopped synthesis."""

    def __init__(
        self,
        name: str,
        text: str | None = None,
        *,
        samples: np.ndarray | None = None,
        voice: str | None = None,
        rate: float | None = None,
    ) -> None:
        self.name = name
        self.text = text
        self.voice = voice
        self.rate = rate
        # (16 kHz samples, the TTS's timings) per sentence; None ends the list
        self.sentences: asyncio.Queue[tuple[np.ndarray, SpeechCues | None] | None] = \
            asyncio.Queue()
        self.first: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self.cancelled = False
        self.submitted = False  # handed to the synth worker
        self.error: str | None = None
        self.ready = 0  # sentences synthesised
        self.seconds = 0.0  # of audio synthesised
        if samples is not None:  # an audio item: one "sentence", nothing to synthesise
            self.submitted = True
            self.add(samples)
            self.end()

    def add(self, samples: np.ndarray, cues: SpeechCues | None = None) -> None:
        if self.cancelled:
            return
        self.ready += 1
        self.seconds += samples.size / TTS_SAMPLE_RATE
        self.sentences.put_nowait((samples, cues))
        if not self.first.done():
            self.first.set_result(None)

    def fail(self, message: str) -> None:
        self.error = message
        if not self.first.done():
            self.first.set_result(message)

    def end(self) -> None:
        self.sentences.put_nowait(None)
        if not self.first.done():
            self.first.set_result(None if self.cancelled else "nothing to say in that text")

    def cancel(self) -> None:
        if self.cancelled:
            return
        self.cancelled = True
        # Free what is synthesised but not yet queued, and wake the programme worker.
        while not self.sentences.empty():
            self.sentences.get_nowait()
        self.end()


@dataclasses.dataclass(eq=False)
class RundownItem:
    id: int
    kind: str  # "text" | "audio"
    title: str  # the text's start, or the audio's file name
    pause_s: float  # silence after it, before the next item
    utterance: Utterance
    started: float | None = None  # monotonic time it went on air

    def info(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id, "kind": self.kind, "title": self.title, "pause_s": self.pause_s,
        }
        u = self.utterance
        if self.kind == "audio" or u.ready:
            out["seconds"] = round(u.seconds, 2)  # a text: synthesised so far
        if self.started is not None:
            out["on_air_s"] = round(time.monotonic() - self.started, 2)
        return out


# -- what is on screen ---------------------------------------------------------------------------
class SourceWatcher:
    """A pipeline observer: which speak job the frames on screen belong to, and when a job's
    last frame has gone (`wait_off_air`). Cheap and never raises, as observers must be."""

    def __init__(self, on_interrupt: Callable[[], None]) -> None:
        self.current = ""  # the source of the last frame shown ("" = idle)
        self._on_interrupt = on_interrupt
        self._ended: OrderedDict[str, None] = OrderedDict()  # recent sources now off screen
        self._waiters: dict[str, list[asyncio.Future[bool]]] = {}

    def on_frame(self, frame: OutputFrame) -> None:
        src = frame.source
        if src == self.current:
            return
        prev, self.current = self.current, src
        if prev:
            self._ended[prev] = None
            while len(self._ended) > 256:
                self._ended.popitem(last=False)
            for fut in self._waiters.pop(prev, []):
                if not fut.done():
                    fut.set_result(True)

    def on_event(self, name: str, count: int = 1) -> None:
        if name != "interrupt":
            return
        for futs in self._waiters.values():
            for fut in futs:
                if not fut.done():
                    fut.set_result(False)
        self._waiters.clear()
        self._on_interrupt()

    async def wait_off_air(self, name: str, timeout_s: float) -> bool:
        """True once the last frame of job `name` has been shown; False on an interrupt or
        after `timeout_s` (a job with no frames at all, a stalled pipeline)."""
        if name in self._ended:
            return True
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(name, []).append(fut)
        try:
            async with asyncio.timeout(timeout_s):
                return await fut
        except TimeoutError:
            log.warning("%s did not leave the screen within %.1f s; going on", name, timeout_s)
            return False
        finally:
            futs = self._waiters.get(name)
            if futs is not None and fut in futs:
                futs.remove(fut)
                if not futs:
                    del self._waiters[name]


def _lower_priority() -> None:
    """The rundown's decode thread runs niced: uploads yield the CPU to render and encode."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)


def _start_stream(
    synth: Synthesizer, text: str, voice: str | None, rate: float | None
) -> Iterator[Any]:
    return iter(synth.stream(text, voice=voice, rate=rate))


# -- the desk --------------------------------------------------------------------------------------
class SpeechDesk:
    """/say and /rundown for one session: synthesis, the order things go on air, interrupts."""

    def __init__(
        self,
        session: AnchorSession,
        server: ServerConfig,
        tts: TtsConfig | None = None,
        synthesizer: Synthesizer | None = None,
    ) -> None:
        self.session = session
        self.server = server
        self._tts_cfg = tts
        self._synth = synthesizer
        self._open_lock = asyncio.Lock()
        self._tts_pool = ThreadPoolExecutor(1, thread_name_prefix="anchor-tts")
        self._decode_pool = ThreadPoolExecutor(
            1, thread_name_prefix="anchor-rundown-decode", initializer=_lower_priority
        )
        self._synth_queue: asyncio.Queue[Utterance] = asyncio.Queue()
        self._synthesising: Utterance | None = None
        self.last_error: str | None = None  # the last /say the engine refused (for GET /rundown)
        self._says: deque[Utterance] = deque()
        self.rundown: deque[RundownItem] = deque()
        self.on_air: Utterance | None = None
        self.on_air_item: RundownItem | None = None
        self._pause_until = 0.0  # monotonic: the next rundown item waits until then
        self._wake = asyncio.Event()
        self._say_count = 0
        self._item_count = 0
        self.done = 0  # rundown items played to the end
        self.skipped = 0  # rundown items interrupted
        self.watcher = SourceWatcher(self._on_interrupt)
        session.observers.add(self.watcher)
        self._tasks: list[asyncio.Task[None]] = []
        # Held audio frames leave the screen at most this long after their job was pushed.
        self._off_air_timeout_s = (2 * server.audio_queue_ms + server.video_queue_ms) / 1000 + 5.0

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._supervise("synth", self._synth_worker)),
                asyncio.create_task(self._supervise("programme", self._programme_worker)),
            ]

    async def _supervise(self, name: str, run: Callable[[], Any]) -> None:
        while True:
            try:
                await run()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("speech desk %s worker failed; restarting it", name)
                await asyncio.sleep(0.1)

    async def aclose(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        for u in [*self._says, *(i.utterance for i in self.rundown)]:
            u.cancel()
        self._says.clear()
        self.rundown.clear()
        self.session.observers.remove(self.watcher)
        self._tts_pool.shutdown(wait=False, cancel_futures=True)
        self._decode_pool.shutdown(wait=False, cancel_futures=True)
        close = getattr(self._synth, "close", None)
        if callable(close):
            with contextlib.suppress(Exception):
                close()

    # -- text to speech --------------------------------------------------------------------------
    @property
    def tts_config(self) -> TtsConfig:
        if self._tts_cfg is None:
            from anchor.config import TtsConfig

            self._tts_cfg = TtsConfig()
        return self._tts_cfg

    def validate_text(self, text: str | bytes, where: str = "") -> str:
        """The TTS's own checks (empty, over-long, not UTF-8, markup) -> DeskError 400."""
        try:
            from anchor.tts import validate_text
        except ImportError as exc:
            raise DeskError(503, f"text to speech is not installed ({one_line(exc)})") from None
        if isinstance(text, str):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:  # lone surrogates from a JSON \ud800 escape
                raise DeskError(400, f"{where}text is not valid UTF-8") from None
        try:
            return validate_text(text, self.tts_config.max_chars)
        except TtsError as exc:
            raise DeskError(400, f"{where}{one_line(exc)}") from None

    async def synthesizer(self) -> Synthesizer:
        """The synthesizer, opened once on the TTS thread (DeskError 503 when the engine is
        missing; tried again on the next request, so installing it needs no restart)."""
        if self._synth is not None:
            return self._synth
        async with self._open_lock:
            if self._synth is None:
                try:
                    from anchor.tts import open_synthesizer
                except ImportError as exc:
                    raise DeskError(
                        503, f"text to speech is not installed ({one_line(exc)})"
                    ) from None
                loop = asyncio.get_running_loop()
                try:
                    self._synth = await loop.run_in_executor(
                        self._tts_pool, open_synthesizer, self.tts_config
                    )
                except TtsError as exc:
                    raise DeskError(503, one_line(exc)) from None
                except RuntimeError:  # the pool is shut down: the server is stopping
                    raise DeskError(503, "the anchor is stopping") from None
        return self._synth

    def check_voice_rate(
        self, synth: Synthesizer, voice: str | None, rate: float | None, where: str = ""
    ) -> None:
        """The engine's own voice and rate checks, now (DeskError 400): a voice it does not
        have is refused before anything is queued, even when the text waits behind others.
        (check_voice reads the voice list the synthesizer made when it opened: no blocking.)"""
        try:
            check = getattr(synth, "check_voice", None)
            if voice and callable(check):
                check(voice)
            if rate is not None:
                try:
                    from anchor.tts import check_rate as engine_check_rate
                except ImportError:
                    return
                engine_check_rate(rate, "'rate'")
        except TtsError as exc:
            raise DeskError(400, f"{where}{one_line(exc)}") from None

    def _submit(self, utt: Utterance) -> None:
        if not utt.submitted:
            utt.submitted = True
            self._synth_queue.put_nowait(utt)

    async def _synth_worker(self) -> None:
        while True:
            utt = await self._synth_queue.get()
            if not utt.cancelled:
                self._synthesising = utt
                try:
                    await self._synthesise(utt)
                finally:
                    self._synthesising = None

    async def _synthesise(self, utt: Utterance) -> None:
        from anchor.tts import sentence_cues

        loop = asyncio.get_running_loop()
        it: Iterator[Any] | None = None
        t0 = time.monotonic()
        try:
            synth = await self.synthesizer()
            assert utt.text is not None
            it = await loop.run_in_executor(
                self._tts_pool, _start_stream, synth, utt.text, utt.voice, utt.rate
            )
            while not utt.cancelled:
                sentence = await loop.run_in_executor(self._tts_pool, next, it, None)
                if sentence is None:
                    break
                if utt.ready == 0:
                    log.info("%s: first sentence synthesised in %.0f ms", utt.name,
                             1000 * (time.monotonic() - t0))
                utt.add(self._to_session_rate(sentence.samples), sentence_cues(sentence))
        except (TtsError, DeskError) as exc:
            log.warning("%s: text to speech failed: %s", utt.name, one_line(exc))
            utt.fail(one_line(exc))
            self.last_error = f"{utt.name}: {one_line(exc)}"
        except RuntimeError as exc:  # the TTS pool is shut down: the desk is closing
            utt.fail(f"text to speech stopped ({one_line(exc)})")
        except Exception as exc:
            log.exception("%s: text to speech failed", utt.name)
            utt.fail(f"text to speech failed ({one_line(exc)})")
        finally:
            close = getattr(it, "close", None)
            if callable(close):  # a generator's cleanup runs on the TTS thread, after it
                with contextlib.suppress(RuntimeError):
                    self._tts_pool.submit(close)
            utt.end()

    def _to_session_rate(self, samples: np.ndarray) -> np.ndarray:
        x = np.asarray(samples, np.float32).reshape(-1)
        if self.session.sample_rate != TTS_SAMPLE_RATE:
            from anchor.audio.resample import resample

            x = resample(x, TTS_SAMPLE_RATE, self.session.sample_rate)
        return x

    async def decode_audio(self, path: Path, max_seconds: float | None) -> np.ndarray:
        """A rundown audio item, decoded on the desk's decode thread at the session's rate."""
        from anchor.audio.decode import decode_audio

        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                self._decode_pool, lambda: decode_audio(path, self.session.sample_rate,
                                                        max_seconds=max_seconds)
            )
        except RuntimeError:
            raise DeskError(503, "the anchor is stopping") from None

    # -- /say ------------------------------------------------------------------------------------
    async def say(
        self, text: str | bytes, voice: str | None = None, rate: float | None = None
    ) -> dict[str, Any]:
        """Queue a text. When the TTS thread has nothing else to do, returns once the first
        sentence is synthesised, so an engine that refuses the text (a bad voice...) is a 400,
        not silence; behind other texts it returns at once (synthesis is one text at a time,
        and waiting for those would hold the reply): a refusal then shows in the log and in
        GET /rundown's say.last_error. DeskError: 400 bad text, 409 a live input owns the
        anchor or too much is waiting, 503 no TTS engine."""
        clean = self.validate_text(text)
        try:
            self.session.check_can_queue()
        except InputBusy as exc:
            raise DeskError(409, str(exc)) from None
        if len(self._says) >= MAX_WAITING_SAYS:
            raise DeskError(409, f"busy: {MAX_WAITING_SAYS} texts are already waiting to be said")
        self.check_voice_rate(await self.synthesizer(), voice, rate)
        self._say_count += 1
        utt = Utterance(f"say:{self._say_count}", clean, voice=voice, rate=rate)
        idle = self._synthesising is None and self._synth_queue.empty()
        self._says.append(utt)
        self._submit(utt)
        self._wake.set()
        problem = await utt.first if idle else None
        if problem is not None:
            utt.cancel()
            with contextlib.suppress(ValueError):
                self._says.remove(utt)
            raise DeskError(400, problem)
        waiting = list(self._says)
        return {
            "status": "interrupted" if utt.cancelled else "queued",
            "id": utt.name,
            # texts waiting ahead of it (0: on air, or next)
            "ahead": waiting.index(utt) if utt in waiting else 0,
            "sentences_ready": utt.ready,
        }

    # -- /rundown --------------------------------------------------------------------------------
    def add_rundown(self, specs: list[ItemSpec]) -> list[int]:
        """Append items (already validated and decoded) to the rundown; their ids."""
        if len(self.rundown) + len(specs) > MAX_RUNDOWN_ITEMS:
            raise DeskError(413, f"the rundown would have more than {MAX_RUNDOWN_ITEMS} items "
                                 "waiting")
        ids = []
        for spec in specs:
            self._item_count += 1
            name = f"rundown:{self._item_count}"
            if spec.samples is not None:
                utt = Utterance(name, samples=spec.samples)
            else:
                utt = Utterance(name, spec.text, voice=spec.voice, rate=spec.rate)
            self.rundown.append(
                RundownItem(self._item_count, spec.kind, spec.title, spec.pause_s, utt)
            )
            ids.append(self._item_count)
        self._wake.set()
        return ids

    def held_audio_s(self) -> float:
        """Seconds of decoded audio the rundown holds (items to come and the one on air)."""
        items = [*self.rundown, *([self.on_air_item] if self.on_air_item else [])]
        return sum(i.utterance.seconds for i in items if i.kind == "audio")

    def clear_rundown(self) -> int:
        """Empty the items to come (the one on air finishes); how many were removed."""
        n = len(self.rundown)
        for item in self.rundown:
            item.utterance.cancel()
        self.rundown.clear()
        self._wake.set()
        return n

    def status(self) -> dict[str, Any]:
        item = self.on_air_item
        if item is not None:
            state = "on_air"
        elif self.rundown and time.monotonic() < self._pause_until:
            state = "pause"
        elif self.on_air is not None:
            state = "say"  # a /say between items
        else:
            state = "idle" if not self.rundown else "starting"
        return {
            "state": state,
            "on_air": item.info() if item is not None else None,
            "next": [i.info() for i in self.rundown],
            "done": self.done,
            "skipped": self.skipped,
            "say": {
                "on_air": self.on_air.name if self.on_air is not None and item is None else None,
                "waiting": len(self._says),
                "last_error": self.last_error,
            },
        }

    # -- interrupts ------------------------------------------------------------------------------
    def _on_interrupt(self) -> None:
        """Called inside session.interrupt(): drop waiting /says, stop what is on air; a rundown
        goes on with its next item at once (no pause)."""
        dropped = len(self._says)
        for u in self._says:
            u.cancel()
        self._says.clear()
        if self.on_air is not None:
            self.on_air.cancel()
        self._pause_until = 0.0
        self._wake.set()
        if dropped or self.on_air is not None:
            log.info("interrupt: stopped %s, dropped %d waiting texts",
                     self.on_air.name if self.on_air else "nothing", dropped)

    # -- the programme ---------------------------------------------------------------------------
    async def _next(self) -> tuple[Utterance, RundownItem | None]:
        """What goes on air next: a waiting /say, else the next rundown item after its pause."""
        while True:
            if self._says:
                return self._says.popleft(), None
            now = time.monotonic()
            if self.rundown and now >= self._pause_until:
                item = self.rundown.popleft()
                return item.utterance, item
            self._wake.clear()
            timeout = self._pause_until - now if self.rundown else None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    async def _programme_worker(self) -> None:
        while True:
            utt, item = await self._next()
            if utt.cancelled:
                continue
            self.on_air, self.on_air_item = utt, item
            if item is not None:
                item.started = time.monotonic()
            played = False
            try:
                played, last = await self._feed(utt, rundown=item is not None)
                if item is not None and played and last is not None:
                    # The pause counts from the moment its last frame has left the screen.
                    played = await self.watcher.wait_off_air(last, self._off_air_timeout_s) \
                        or not utt.cancelled
            finally:
                self.on_air = self.on_air_item = None
            if item is not None:
                complete = played and not utt.cancelled and utt.error is None
                if complete:
                    self.done += 1
                    self._pause_until = time.monotonic() + item.pause_s
                else:  # interrupted or refused by the engine: the next item starts at once
                    self.skipped += 1
                    self._pause_until = 0.0
                log.info("rundown item %d %s", item.id, "done" if complete else "skipped")

    async def _feed(self, utt: Utterance, *, rundown: bool) -> tuple[bool, str | None]:
        """Queue the text's sentences as they are synthesised; (played to the end, name of the
        last job). Returns once all of it went into the pipeline, or on interrupt."""
        self._submit(utt)
        loop = asyncio.get_running_loop()
        pending: deque[asyncio.Future[bool]] = deque()
        last: str | None = None
        ok = True
        k = 0
        while ok:
            got = await utt.sentences.get()
            if got is None or utt.cancelled:
                break
            samples, cues = got
            while ok and len(pending) >= SENTENCES_AHEAD:
                ok = await pending.popleft()  # False: the session dropped it (interrupt)
            if not ok:
                break
            k += 1
            name = f"{utt.name}/{k}"
            done: asyncio.Future[bool] = loop.create_future()
            if not await self._queue(samples, name, done, utt, cues):
                ok = False
                break
            pending.append(done)
            last = name
        if rundown and self.rundown:
            # Synthesis of this one is over: prepare the next item while this one plays.
            self._submit(self.rundown[0].utterance)
        for done in pending:
            ok = await done and ok
        return ok and not utt.cancelled, last

    async def _queue(
        self, samples: np.ndarray, name: str, done: asyncio.Future[bool], utt: Utterance,
        cues: SpeechCues | None = None,
    ) -> bool:
        """session.speak, waiting (not failing) while a live input or other files fill it."""
        waited = False
        while not utt.cancelled:
            try:
                self.session.speak(samples, name, done=done, cues=cues)
                return True
            except InputBusy as exc:
                if not waited:
                    log.info("%s waits: %s", name, exc)
                    waited = True
                await asyncio.sleep(BUSY_RETRY_S)
        return False


def audio_error_text(exc: AudioError, path: Path) -> str:
    """An AudioError's message without the server-side temporary path it starts with."""
    text = " ".join(str(exc).split())
    prefix = f"{path}: "
    return text[len(prefix):] if text.startswith(prefix) else text
