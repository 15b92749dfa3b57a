"""Microphone capture through sounddevice (imported lazily: it needs PortAudio).

`open_microphone` returns an async iterator of float32 mono blocks at real-time pace; the
PortAudio callback thread hands blocks to the event loop through a bounded queue (the oldest
block is dropped and counted if the loop stalls). Used by `anchor serve --mic` (the server's own
microphone as a live input) and `anchor push --mic`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from anchor.errors import StreamError

log = logging.getLogger(__name__)


def _sounddevice() -> Any:
    try:
        import sounddevice
    except ImportError as exc:
        raise StreamError(
            "--mic needs the sounddevice package (pip install 'anchor[mic]')"
        ) from exc
    except OSError as exc:  # the PortAudio library itself is missing
        raise StreamError(f"--mic: PortAudio is not available ({exc}); install libportaudio2") from exc
    return sounddevice


def check_input_device(device: int | str | None = None) -> str:
    """The name of the input device to use, or StreamError with a one-line reason."""
    sd = _sounddevice()
    try:
        info = sd.query_devices(device, kind="input")
    except (ValueError, sd.PortAudioError) as exc:
        raise StreamError(f"--mic: no audio input device ({exc})") from None
    if not info or int(info.get("max_input_channels", 0)) < 1:
        raise StreamError("--mic: no audio input device")
    return str(info.get("name", "input"))


@contextlib.asynccontextmanager
async def open_microphone(
    sample_rate: int = 16000, block_ms: int = 20, device: int | str | None = None,
    max_blocks: int = 50,
) -> AsyncIterator[AsyncIterator[np.ndarray]]:
    """`async with open_microphone() as blocks: async for x in blocks: ...`"""
    sd = _sounddevice()
    name = check_input_device(device)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[np.ndarray] = asyncio.Queue(max_blocks)
    dropped = 0

    def put(block: np.ndarray) -> None:
        nonlocal dropped
        if queue.full():
            queue.get_nowait()
            dropped += 1
        queue.put_nowait(block)

    def callback(indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        if status:
            log.debug("microphone: %s", status)
        loop.call_soon_threadsafe(put, indata[:, 0].astype(np.float32, copy=True))

    try:
        stream = sd.InputStream(
            samplerate=sample_rate, channels=1, dtype="float32", device=device,
            blocksize=sample_rate * block_ms // 1000, callback=callback,
        )
    except (sd.PortAudioError, ValueError) as exc:
        raise StreamError(f"--mic: cannot open input device {name!r} ({exc})") from None

    async def blocks() -> AsyncIterator[np.ndarray]:
        while True:
            yield await queue.get()

    log.info("microphone %r open at %d Hz", name, sample_rate)
    with stream:
        try:
            yield blocks()
        finally:
            if dropped:
                log.warning("microphone: %d blocks dropped (event loop too slow)", dropped)
