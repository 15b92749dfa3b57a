"""Lightweight loopback viewers: many WebRTC (or WHEP) clients in one process that receive,
depacketize and reassemble the anchor's video and audio but never decode them, so that the
client's CPU does not drown the server it measures.

    python -m benchmarks.viewer_clients URL N SECONDS [--whep] [--json OUT]

prints (or writes) one JSON object: per viewer the frames received, fps and longest gap over
the measured span, and the client process's own CPU time. Each aiortc receiver still sends its
RTCP receiver reports (so the server sees a live viewer); only the decoder thread is idle: its
input queue counts complete frames instead of queueing them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import queue
import resource
import sys
import time
from collections.abc import Awaitable, Sequence
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack


class CountingQueue(queue.Queue):  # type: ignore[type-arg]
    """Stands in for a receiver's decoder queue: records when each complete frame arrived.

    Only the stop signal (None) is queued, so the idle decoder thread blocks until shutdown."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: list[float] = []

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is None:
            super().put(item, block, timeout)
        else:
            self.arrivals.append(time.monotonic())


class LightViewer:
    def __init__(self, index: int) -> None:
        self.index = index
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.video = CountingQueue()
        self.audio = CountingQueue()
        self.error = ""
        self._drains: list[asyncio.Task[None]] = []

    async def connect(self, session: Any, base: str, whep: bool) -> None:
        pc = self.pc
        for kind, counter in (("video", self.video), ("audio", self.audio)):
            t = pc.addTransceiver(kind, direction="recvonly")
            # replace the decoder's input before the receiver starts its decoder thread
            t.receiver._RTCRtpReceiver__decoder_queue = counter  # type: ignore[attr-defined]

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self._drains.append(asyncio.ensure_future(_drain(track)))

        await pc.setLocalDescription(await pc.createOffer())
        offer = pc.localDescription
        if whep:
            resp = await session.post(f"{base}/whep", data=offer.sdp,
                                      headers={"Content-Type": "application/sdp"})
            text = await resp.text()
            if resp.status != 201:
                raise RuntimeError(f"viewer {self.index}: WHEP {resp.status} {text.strip()}")
            answer = RTCSessionDescription(text, "answer")
        else:
            resp = await session.post(f"{base}/offer", json={"sdp": offer.sdp, "type": offer.type})
            if resp.status != 200:
                raise RuntimeError(f"viewer {self.index}: {resp.status} {(await resp.text()).strip()}")
            body = await resp.json()
            answer = RTCSessionDescription(body["sdp"], body["type"])
        await pc.setRemoteDescription(answer)

    def stats(self, t0: float, t1: float) -> dict[str, Any]:
        video = [t for t in self.video.arrivals if t0 <= t < t1]
        gaps = [b - a for a, b in zip(video, video[1:], strict=False)]
        return {
            "viewer": self.index,
            "frames": len(video),
            "fps": round(len(video) / max(1e-9, t1 - t0), 2),
            "max_gap_ms": round(1000 * max(gaps), 1) if gaps else None,
            "audio_packets": sum(1 for t in self.audio.arrivals if t0 <= t < t1),
            "error": self.error,
        }

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.pc.close()
        for t in self._drains:
            t.cancel()


async def _drain(track: MediaStreamTrack) -> None:
    with contextlib.suppress(MediaStreamError):
        while True:
            await track.recv()  # never returns: nothing is decoded


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def measure_viewers(
    viewers: Sequence[LightViewer], connects: list[Awaitable[None]], seconds: float, *,
    warmup_s: float = 3.0, connect_timeout_s: float = 30.0,
) -> dict[str, Any]:
    """Run the viewers' `connects`, wait until all receive (or the timeout), warm up, measure
    for `seconds`, close them; the result every viewer benchmark shares."""
    t_connect = time.monotonic()
    results = await asyncio.gather(*connects, return_exceptions=True)
    for v, r in zip(viewers, results, strict=True):
        if isinstance(r, BaseException):
            v.error = f"{type(r).__name__}: {r}"
    live = [v for v in viewers if not v.error]
    deadline = time.monotonic() + connect_timeout_s
    while time.monotonic() < deadline and not all(len(v.video.arrivals) >= 3 for v in live):
        await asyncio.sleep(0.1)
    connected_s = time.monotonic() - t_connect
    await asyncio.sleep(warmup_s)
    cpu0, t0 = _cpu_s(), time.monotonic()
    await asyncio.sleep(seconds)
    t1, cpu1 = time.monotonic(), _cpu_s()
    per_viewer = [v.stats(t0, t1) for v in viewers]
    await asyncio.gather(*(v.close() for v in viewers), return_exceptions=True)
    fps = [p["fps"] for p in per_viewer if not p["error"]]
    return {
        "viewers": len(viewers),
        "connected": len(fps),
        "connect_s": round(connected_s, 2),
        "seconds": round(t1 - t0, 2),
        "t0": t0,  # CLOCK_MONOTONIC, comparable with the server's samples on the same machine
        "t1": t1,
        "fps_min": min(fps) if fps else 0.0,
        "fps_mean": round(sum(fps) / len(fps), 2) if fps else 0.0,
        "client_cpu_s_per_s": round((cpu1 - cpu0) / max(1e-9, t1 - t0), 3),
        "per_viewer": per_viewer,
    }


async def run_viewers(
    base: str, n: int, seconds: float, *, whep: bool = False, warmup_s: float = 3.0,
    connect_timeout_s: float = 30.0,
) -> dict[str, Any]:
    """Connect n viewers to the anchor itself and measure them (`measure_viewers`)."""
    import aiohttp

    from anchor.stream.ice import enable_loopback_candidates

    enable_loopback_candidates()
    viewers = [LightViewer(i) for i in range(n)]
    async with aiohttp.ClientSession() as session:
        return await measure_viewers(
            viewers, [v.connect(session, base, whep) for v in viewers], seconds,
            warmup_s=warmup_s, connect_timeout_s=connect_timeout_s,
        )


def write_result(result: dict[str, Any], path: str | None) -> None:
    """The result as one JSON object, to `path` or stdout."""
    text = json.dumps(result)
    if path:
        with open(path, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("url", help="the anchor's base URL, e.g. http://127.0.0.1:8080")
    p.add_argument("n", type=int)
    p.add_argument("seconds", type=float)
    p.add_argument("--whep", action="store_true", help="connect through /whep instead of /offer")
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--json", help="write the result here (default: stdout)")
    args = p.parse_args(argv)
    result = asyncio.run(run_viewers(args.url.rstrip("/"), args.n, args.seconds, whep=args.whep,
                                     warmup_s=args.warmup))
    write_result(result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
