"""`anchor push (FILE | --mic | --text "...") --url ws://HOST:PORT/ws/audio [--token T]`.

Streams audio to a running server's websocket at real-time pace: 20 ms PCM16 chunks sent against
absolute deadlines (a file), or as the microphone delivers them (--mic).

--text synthesises here, with this machine's TTS (tts.engine/voice/rate; --voice overrides),
and pushes the speech as PCM over the same /ws/audio protocol, sentence by sentence as each is
synthesised, so the server needs no TTS engine (POST /say is the server-side way). The text is
checked first (empty, longer than tts.max_chars, not UTF-8, markup: one-line error, exit 2).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any

from anchor.config import AnchorConfig
from anchor.errors import TtsError

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("file", nargs="?", help="audio file to stream (any format PyAV decodes)")
    source.add_argument("--mic", action="store_true", help="stream this machine's microphone")
    source.add_argument("--text", help="synthesise this text here and stream the speech")
    parser.add_argument("--voice", help="TTS voice for --text (default: tts.voice)")
    parser.add_argument(
        "--url", default="ws://127.0.0.1:8080/ws/audio", help="the server's /ws/audio address"
    )
    parser.add_argument("--token", help="bearer token (default: $ANCHOR_TOKEN)")
    parser.add_argument("--rate", type=int, default=16000, help="sample rate to send (Hz)")


def run(args: argparse.Namespace, cfg: AnchorConfig) -> int:
    import os

    from anchor.errors import StreamError
    from anchor.stream.auth import ENV_TOKEN
    from anchor.stream.push import push_file, push_microphone

    token = args.token or os.environ.get(ENV_TOKEN, "")
    if not token:
        raise StreamError(f"pushing needs the server's token: --token T or ${ENV_TOKEN}")
    if args.text is not None:
        from anchor.tts import open_synthesizer, validate_text

        text = validate_text(args.text, cfg.tts.max_chars)
        synth = open_synthesizer(cfg.tts)  # a missing engine fails before connecting
        seconds = asyncio.run(push_text(synth, text, args.voice, args.url, token, args.rate))
    elif args.mic:
        seconds = asyncio.run(push_microphone(args.url, token, args.rate))
    else:
        seconds = asyncio.run(push_file(args.file, args.url, token, args.rate))
    print(f"anchor: pushed {seconds:.2f} s of audio to {args.url}")
    return 0


async def push_text(
    synth: Any, text: str, voice: str | None, url: str, token: str, rate: int
) -> float:
    """Synthesise `text` sentence by sentence (one worker thread) and stream each sentence as
    soon as it is ready, paced against absolute deadlines; returns the seconds sent."""
    from concurrent.futures import ThreadPoolExecutor

    from anchor.stream.push import _connect, _send_all

    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(1, thread_name_prefix="anchor-tts")
    sentences = iter(synth.stream(text, voice=voice))
    try:
        # The first sentence is synthesised before connecting: the server closes a push that
        # stays silent for server.ws_idle_timeout_s.
        first = await loop.run_in_executor(pool, next, sentences, None)
        if first is None:
            raise TtsError("the TTS produced no speech for that text")
        ws = await _connect(url, token, rate)
        return await _send_all(url, ws, _paced_sentences(first, sentences, pool, rate), rate)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


async def _paced_sentences(
    first: Any, sentences: Iterator[Any], pool: Executor, rate: int
) -> AsyncIterator[np.ndarray]:
    import numpy as np

    from anchor.audio.resample import resample
    from anchor.stream.push import CHUNK_MS

    loop = asyncio.get_running_loop()
    chunk = rate * CHUNK_MS // 1000
    start = time.monotonic()
    k = 0  # chunks sent since `start`
    sentence = first
    while sentence is not None:
        # The next sentence is synthesised while this one is sent.
        upcoming = loop.run_in_executor(pool, next, sentences, None)
        x = np.asarray(sentence.samples, np.float32).reshape(-1)
        if rate != 16000:
            x = resample(x, 16000, rate)
        if start + k * CHUNK_MS / 1000 < time.monotonic():  # synthesis was slower: no burst
            start, k = time.monotonic(), 0
        for i in range(0, x.size, chunk):
            delay = start + k * CHUNK_MS / 1000 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            yield x[i : i + chunk]
            k += 1
        sentence = await upcoming
