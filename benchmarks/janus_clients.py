"""Lightweight viewers that watch through Janus's streaming plugin (the SFU anchor publishes to)
instead of the anchor itself: the same depacketize-but-never-decode aiortc clients as
`benchmarks.viewer_clients`, signalled over Janus's HTTP API.

    python -m benchmarks.janus_clients JANUS_URL MOUNTPOINT N SECONDS [--json OUT]

e.g. `python -m benchmarks.janus_clients http://127.0.0.1:8088/janus 1 50 20`. Prints (or writes)
the same JSON object as `benchmarks.viewer_clients` (fps_min, fps_mean, per_viewer,
client_cpu_s_per_s), so the viewer benchmark can compare direct viewers with viewers through
the SFU.

Per viewer, as a browser running janus.js would: create a Janus session, attach
janus.plugin.streaming, `watch` the mountpoint (Janus sends the JSEP offer in an event), answer
with `start`, and keep a long poll open (it delivers events and keeps the session alive; an
explicit keepalive goes out every 25 s too).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import secrets
import time
from typing import Any

import aiohttp
from aiortc import RTCSessionDescription

from benchmarks.viewer_clients import LightViewer, measure_viewers, write_result

log = logging.getLogger(__name__)

KEEPALIVE_S = 25.0  # Janus's default session_timeout is 60 s


# A private network namespace for Janus: lo carries RTP + signalling, and a veth pair that exists
# only inside it gives Janus's ICE (libnice, which never gathers loopback) a candidate.
NETNS_SETUP = (
    "ip link set lo up && ip link add sfu0 type veth peer name sfu1 && "
    "ip addr add 10.203.0.1/30 dev sfu0 && ip link set sfu0 up && ip link set sfu1 up"
)


async def wait_for_janus(url: str, proc: Any, log: Any = None, timeout_s: float = 15.0) -> None:
    """Until Janus's HTTP API answers `GET /info`; RuntimeError (with its log tail, when a log
    path is given) if it exits or never answers."""

    def tail() -> str:
        return f":\n{log.read_text()[-2000:]}" if log is not None else ""

    async with aiohttp.ClientSession() as http:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"janus exited {proc.returncode}{tail()}")
            try:
                async with http.get(f"{url}/info") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"janus API never answered{tail()}")


class JanusError(RuntimeError):
    pass


class JanusSession:
    """One Janus API session with one streaming-plugin handle; events arrive by long poll."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base.rstrip("/")
        self.session_id: int | None = None
        self.handle_id: int | None = None
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        body = {**body, "transaction": secrets.token_hex(6)}
        async with self.http.post(f"{self.base}{path}", json=body) as resp:
            reply: dict[str, Any] = await resp.json(content_type=None)
        if reply.get("janus") == "error":
            err = reply.get("error", {})
            raise JanusError(f"Janus {body.get('janus')}: {err.get('code')} {err.get('reason')}")
        return reply

    async def open(self) -> None:
        self.session_id = int((await self._post("", {"janus": "create"}))["data"]["id"])
        reply = await self._post(
            f"/{self.session_id}", {"janus": "attach", "plugin": "janus.plugin.streaming"}
        )
        self.handle_id = int(reply["data"]["id"])
        self._tasks = [
            asyncio.create_task(self._poll(), name="janus-poll"),
            asyncio.create_task(self._keepalive(), name="janus-keepalive"),
        ]

    async def message(self, body: dict[str, Any], jsep: dict[str, str] | None = None) -> None:
        msg: dict[str, Any] = {"janus": "message", "body": body}
        if jsep is not None:
            msg["jsep"] = jsep
        await self._post(f"/{self.session_id}/{self.handle_id}", msg)

    async def _poll(self) -> None:
        url = f"{self.base}/{self.session_id}?maxev=10"
        while True:
            try:
                async with self.http.get(url, timeout=aiohttp.ClientTimeout(total=70)) as resp:
                    got = await resp.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as exc:
                log.debug("janus long poll: %s", exc)
                await asyncio.sleep(0.5)
                continue
            for event in got if isinstance(got, list) else [got]:
                if event.get("janus") != "keepalive":
                    await self.events.put(event)

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(KEEPALIVE_S)
            with contextlib.suppress(aiohttp.ClientError, JanusError, TimeoutError):
                await self._post(f"/{self.session_id}", {"janus": "keepalive"})

    async def next_event(self, timeout_s: float, want: str | None = None) -> dict[str, Any]:
        """The next plugin event (or one carrying JSEP when want="jsep"); errors raise."""
        async with asyncio.timeout(timeout_s):
            while True:
                event = await self.events.get()
                data = event.get("plugindata", {}).get("data", {})
                if "error" in data:
                    raise JanusError(f"streaming plugin: {data.get('error_code')} {data['error']}")
                if want == "jsep" and "jsep" not in event:
                    continue
                return event

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.session_id is not None:
            with contextlib.suppress(Exception):
                await self._post(f"/{self.session_id}", {"janus": "destroy"})


class JanusViewer(LightViewer):
    """A `LightViewer` that answers Janus's offer instead of offering to the anchor."""

    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.janus: JanusSession | None = None

    async def watch(self, http: aiohttp.ClientSession, base: str, mountpoint: int,
                    timeout_s: float = 20.0) -> None:
        from aiortc.mediastreams import MediaStreamTrack

        from benchmarks.viewer_clients import _drain

        self.janus = janus = JanusSession(http, base)
        await janus.open()
        await janus.message({"request": "watch", "id": mountpoint})
        offer = (await janus.next_event(timeout_s, want="jsep"))["jsep"]
        pc = self.pc

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self._drains.append(asyncio.ensure_future(_drain(track)))

        await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], offer["type"]))
        for t in pc.getTransceivers():
            # before the receivers start their decoder threads (at connect): count, never decode
            counter = self.video if t.kind == "video" else self.audio
            t.receiver._RTCRtpReceiver__decoder_queue = counter  # type: ignore[attr-defined]
        await pc.setLocalDescription(await pc.createAnswer())
        answer = pc.localDescription
        await janus.message({"request": "start"}, {"type": answer.type, "sdp": answer.sdp})

    async def close(self) -> None:
        await super().close()
        if self.janus is not None:
            await self.janus.close()


async def run_janus_viewers(
    janus_http_url: str, mountpoint_id: int, n: int, seconds: float, *,
    warmup_s: float = 3.0, connect_timeout_s: float = 30.0,
) -> dict[str, Any]:
    """Connect n viewers through Janus, wait until all receive (or the timeout), warm up, then
    measure for `seconds`. Same result shape as `benchmarks.viewer_clients.run_viewers`."""
    from anchor.stream.ice import enable_loopback_candidates

    enable_loopback_candidates()
    viewers = [JanusViewer(i) for i in range(n)]
    connector = aiohttp.TCPConnector(limit=0)  # one long poll per viewer stays open
    async with aiohttp.ClientSession(connector=connector) as http:
        result = await measure_viewers(
            viewers, [v.watch(http, janus_http_url, mountpoint_id) for v in viewers], seconds,
            warmup_s=warmup_s, connect_timeout_s=connect_timeout_s,
        )
    return {**result, "via": "janus", "janus": janus_http_url, "mountpoint": mountpoint_id}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("janus", help="Janus HTTP API base, e.g. http://127.0.0.1:8088/janus")
    p.add_argument("mountpoint", type=int, help="streaming mountpoint id")
    p.add_argument("n", type=int)
    p.add_argument("seconds", type=float)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--json", help="write the result here (default: stdout)")
    args = p.parse_args(argv)
    result = asyncio.run(run_janus_viewers(args.janus, args.mountpoint, args.n, args.seconds,
                                           warmup_s=args.warmup))
    write_result(result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
