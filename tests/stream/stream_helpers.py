"""Run the app in-process on a free 127.0.0.1 port for a test."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator

import numpy as np
from aiohttp.test_utils import TestClient, TestServer

from anchor.config import BroadcastConfig, ServerConfig
from anchor.pipeline.models import PipelineModels
from anchor.pipeline.session import AnchorSession
from anchor.stream.app import AnchorServer

TOKEN = "test-token"


@contextlib.asynccontextmanager
async def running_app(
    models: PipelineModels, broadcast: BroadcastConfig | None = None, **overrides: object
) -> AsyncIterator[tuple[TestClient, AnchorServer]]:
    cfg = dataclasses.replace(ServerConfig(latency_margin_ms=80), **overrides)  # type: ignore[arg-type]
    session = AnchorSession(models, cfg)
    server = AnchorServer(session, cfg, TOKEN, broadcast=broadcast)
    async with TestClient(TestServer(server.app, host="127.0.0.1")) as client:
        yield client, server


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


class Viewer:
    """An aiortc client that watches the app and records when each video frame arrives."""

    def __init__(self) -> None:
        from aiortc import RTCConfiguration, RTCPeerConnection

        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.arrivals: list[float] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def watch(
        self, client: TestClient, timeout_s: float = 15.0, codec: str | None = None,
        path: str = "/offer",
    ) -> None:
        """Offer to receive (only `codec`, e.g. "H264", when given) and wait for 10 frames."""
        from aiortc import RTCRtpReceiver, RTCSessionDescription
        from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

        pc = self.pc
        video = pc.addTransceiver("video", direction="recvonly")
        if codec is not None:
            caps = RTCRtpReceiver.getCapabilities("video")
            assert caps is not None
            video.setCodecPreferences(
                [c for c in caps.codecs if c.mimeType.lower() == f"video/{codec.lower()}"]
            )
        pc.addTransceiver("audio", direction="recvonly")

        async def record(track: MediaStreamTrack) -> None:
            with contextlib.suppress(MediaStreamError):
                while True:
                    await track.recv()
                    if track.kind == "video":
                        self.arrivals.append(time.monotonic())

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self._tasks.append(asyncio.ensure_future(record(track)))

        await pc.setLocalDescription(await pc.createOffer())
        resp = await client.post(
            path, json={"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}
        )
        assert resp.status == 200, await resp.text()
        answer = await resp.json()
        await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))
        async with asyncio.timeout(timeout_s):
            while len(self.arrivals) < 10:
                await asyncio.sleep(0.05)

    def fps_between(self, t0: float, t1: float) -> float:
        return sum(1 for t in self.arrivals if t0 <= t < t1) / max(1e-9, t1 - t0)

    def worst_window_fps(self, t0: float, t1: float, window_s: float = 1.0) -> float:
        """The lowest frame rate over any `window_s` span inside [t0, t1) (0.25 s steps)."""
        worst = float("inf")
        t = t0
        while t + window_s <= t1 + 1e-9:
            worst = min(worst, self.fps_between(t, t + window_s))
            t += 0.25
        return worst

    async def close(self) -> None:
        await self.pc.close()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def push_paced(client: TestClient, x: np.ndarray, path: str = "/ws/audio") -> float:
    """Push 16 kHz float audio over /ws/audio in real time (20 ms chunks on absolute deadlines)
    and close; returns when (time.monotonic) the first chunk was sent."""
    ws = await client.ws_connect(path, headers=auth())
    await ws.send_str('{"sample_rate": 16000}')
    await ws.receive_json(timeout=5)
    t_push = time.monotonic()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for k, i in enumerate(range(0, len(x), 320)):
        await ws.send_bytes((x[i : i + 320] * 32767).astype("<i2").tobytes())
        await asyncio.sleep(max(0.0, t0 + (k + 1) * 0.02 - loop.time()))
    await ws.close()
    return t_push
