"""`GET /ws/audio`: push raw PCM16 mono audio over a websocket.

Protocol: the first message is a JSON text header, e.g. {"sample_rate": 48000}; every later
message is a binary chunk of little-endian signed 16-bit mono samples, any whole number of
samples. The server answers the header with {"type": "ready", "lookahead_ms", ...}. Closing the
socket ends the utterance. Violations close the socket with a code and a one-line reason:

- 1003 (unsupported data): bad header JSON, missing/unsupported sample rate, text after the
  header, an odd byte count;
- 1009 (message too big): a message over ServerConfig.max_ws_message_bytes;
- 1013 (try again later): another input is already pushing to the anchor;
- 1008 (policy violation): no message for ServerConfig.ws_idle_timeout_s (0 disables), so a
  pusher that keeps its socket open but sends nothing cannot hold the only input slot. Pings do
  not count: a pusher in a pause sends silence (zero samples), not nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import numpy as np
from aiohttp import WSCloseCode, WSMsgType, web

from anchor.errors import StreamError
from anchor.pipeline.session import AnchorSession, AudioInput, InputBusy

log = logging.getLogger(__name__)

SUPPORTED_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)


class IngestError(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def parse_header(text: str) -> int:
    """The sample rate of a JSON header; IngestError(1003) for anything else."""
    try:
        header = json.loads(text)
    except (json.JSONDecodeError, TypeError):
        raise IngestError(WSCloseCode.UNSUPPORTED_DATA, "header is not JSON") from None
    if not isinstance(header, dict):
        raise IngestError(WSCloseCode.UNSUPPORTED_DATA, "header must be a JSON object")
    rate = header.get("sample_rate")
    if isinstance(rate, bool) or not isinstance(rate, int):
        raise IngestError(WSCloseCode.UNSUPPORTED_DATA, "header needs an integer sample_rate")
    if rate not in SUPPORTED_RATES:
        raise IngestError(
            WSCloseCode.UNSUPPORTED_DATA,
            f"unsupported sample_rate {rate} (use one of {', '.join(map(str, SUPPORTED_RATES))})",
        )
    channels = header.get("channels", 1)
    if channels != 1:
        raise IngestError(WSCloseCode.UNSUPPORTED_DATA, "only mono audio (channels 1) is accepted")
    fmt = header.get("format", "s16le")
    if fmt != "s16le":
        raise IngestError(WSCloseCode.UNSUPPORTED_DATA, "only format s16le (PCM16) is accepted")
    return rate


def pcm16_to_float(data: bytes) -> np.ndarray:
    """Little-endian int16 bytes -> float32 in [-1, 1); IngestError(1003) on an odd count."""
    if len(data) % 2:
        raise IngestError(
            WSCloseCode.UNSUPPORTED_DATA, f"odd byte count {len(data)}: PCM16 needs whole samples"
        )
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def idle_reason(timeout_s: float, header_seen: bool) -> str:
    what = "audio" if header_seen else "header"
    return f"no {what} for {timeout_s:g} s: closing (server.ws_idle_timeout_s)"


async def handle_ws_audio(
    request: web.Request,
    session: AnchorSession,
    max_message_bytes: int,
    counter: dict[str, int],
    *,
    idle_timeout_s: float | None = None,
) -> web.WebSocketResponse:
    """Serve one push connection (auth has already been checked).

    `idle_timeout_s` defaults to the session's ServerConfig.ws_idle_timeout_s (<= 0: never)."""
    if idle_timeout_s is None:
        idle_timeout_s = session.server.ws_idle_timeout_s
    idle = idle_timeout_s if idle_timeout_s > 0 else None
    ws = web.WebSocketResponse(max_msg_size=max_message_bytes, heartbeat=20.0)
    await ws.prepare(request)
    peer = request.remote or "?"
    inp: AudioInput | None = None
    counter["ws"] = counter.get("ws", 0) + 1
    loop = asyncio.get_running_loop()
    try:
        while True:
            # One deadline per data message, outside receive(): receive(timeout=) restarts its
            # window on every ping/pong, so a socket that only keeps alive would never expire.
            deadline = None if idle is None else loop.time() + idle
            try:
                async with asyncio.timeout_at(deadline):
                    msg = await ws.receive()
            except TimeoutError:
                raise IngestError(
                    WSCloseCode.POLICY_VIOLATION, idle_reason(idle_timeout_s, inp is not None)
                ) from None
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                break
            if msg.type == WSMsgType.ERROR:
                # aiohttp has already closed with 1009 for an oversized message.
                log.info("ws %s: %s", peer, ws.exception())
                break
            if inp is None:
                if msg.type != WSMsgType.TEXT:
                    raise IngestError(
                        WSCloseCode.UNSUPPORTED_DATA, "first message must be a JSON header"
                    )
                rate = parse_header(msg.data)
                try:
                    inp = session.open_input(f"ws:{peer}", rate, live=True)
                except InputBusy as exc:
                    raise IngestError(WSCloseCode.TRY_AGAIN_LATER, str(exc)) from None
                await ws.send_json(ready_message(session, rate))
                continue
            if msg.type == WSMsgType.TEXT:
                raise IngestError(
                    WSCloseCode.UNSUPPORTED_DATA, "text message after the header: send binary PCM16"
                )
            if msg.type == WSMsgType.BINARY:
                await inp.push(pcm16_to_float(msg.data))
    except IngestError as exc:
        log.info("ws %s closed: %d %s", peer, exc.code, exc.reason)
        if inp is not None:
            # Free the input slot first: close() waits for the client's close frame, and a
            # client that stopped answering would otherwise hold the slot a while longer.
            await inp.close()
        await ws.close(code=exc.code, message=exc.reason.encode()[:120])
    except StreamError as exc:  # the session stopped under us (server shutting down)
        await ws.close(code=WSCloseCode.GOING_AWAY, message=str(exc).encode()[:120])
    finally:
        counter["ws"] -= 1
        if inp is not None:
            await inp.close()
    return ws


def ready_message(session: AnchorSession, rate: int) -> dict[str, Any]:
    return {
        "type": "ready",
        "sample_rate": rate,
        "lookahead_ms": session.models.lookahead_ms,
        "latency_target_ms": round(1000 * session.live_latency_s, 1),
    }
