"""The push client: audio -> a running server's /ws/audio at real-time pace (websockets)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np

from anchor.errors import StreamError

log = logging.getLogger(__name__)

CHUNK_MS = 20


def to_pcm16(x: np.ndarray) -> bytes:
    return (np.clip(x, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()


async def _connect(url: str, token: str, rate: int) -> Any:
    import websockets
    from websockets.exceptions import InvalidStatus, WebSocketException

    try:
        ws = await websockets.connect(
            url, additional_headers={"Authorization": f"Bearer {token}"}, max_size=1 << 16,
            open_timeout=10,
        )
    except InvalidStatus as exc:
        status = exc.response.status_code
        body = exc.response.body.decode(errors="replace").strip() if exc.response.body else ""
        raise StreamError(f"{url}: server refused the push ({status} {body})") from None
    except (OSError, WebSocketException, TimeoutError) as exc:
        raise StreamError(f"{url}: cannot connect ({exc})") from None
    await ws.send(json.dumps({"sample_rate": rate}))
    try:
        ready = json.loads(await asyncio.wait_for(ws.recv(), 10))
    except websockets.ConnectionClosed as exc:
        raise StreamError(f"{url}: server closed the push ({_close_text(exc)})") from None
    log.info("server ready: %s", ready)
    return ws


def _close_text(exc: Any) -> str:
    rcvd = getattr(exc, "rcvd", None)
    if rcvd is None:
        return "no close frame"
    return f"{rcvd.code} {rcvd.reason}".strip()


async def _send_all(url: str, ws: Any, chunks: AsyncIterator[np.ndarray], rate: int) -> float:
    import websockets

    sent = 0
    try:
        async for x in chunks:
            await ws.send(to_pcm16(x))
            sent += len(x)
        await ws.close()
    except websockets.ConnectionClosed as exc:
        raise StreamError(f"{url}: server closed the push ({_close_text(exc)})") from None
    return sent / rate


async def paced_chunks(x: np.ndarray, rate: int) -> AsyncIterator[np.ndarray]:
    """20 ms chunks of `x`, each sent at its absolute deadline (no drift)."""
    chunk = rate * CHUNK_MS // 1000
    start = time.monotonic()
    for k, i in enumerate(range(0, len(x), chunk)):
        delay = start + k * CHUNK_MS / 1000 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        yield x[i : i + chunk]


async def push_file(path: str | Path, url: str, token: str, rate: int = 16000) -> float:
    """Decode `path` and stream it; returns the seconds of audio sent."""
    from anchor.audio.decode import decode_audio

    x = await asyncio.get_running_loop().run_in_executor(None, decode_audio, Path(path), rate)
    ws = await _connect(url, token, rate)
    return await _send_all(url, ws, paced_chunks(x, rate), rate)


async def push_microphone(url: str, token: str, rate: int = 16000) -> float:
    """Stream the microphone until interrupted (Ctrl-C)."""
    from anchor.stream.mic import check_input_device, open_microphone

    check_input_device()
    ws = await _connect(url, token, rate)
    async with open_microphone(rate, CHUNK_MS) as blocks:
        try:
            return await _send_all(url, ws, blocks, rate)
        except asyncio.CancelledError:
            await ws.close()
            raise
