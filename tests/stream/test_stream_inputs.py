"""Inputs beyond the raw websocket: a browser-style microphone track over WebRTC, the `anchor
push` client, and the server runner (`anchor serve`) with its stop and error paths."""

from __future__ import annotations

import asyncio
import contextlib
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from pipeline_helpers import speechlike
from stream_helpers import TOKEN, running_app

from anchor.config import ServerConfig
from anchor.errors import StreamError
from anchor.pipeline.models import PipelineModels
from anchor.stream.push import push_file
from anchor.stream.runner import serve


class SpeechTrack(MediaStreamTrack):
    """A microphone that says `seconds` of speech-like sound at 48 kHz, then silence."""

    kind = "audio"

    def __init__(self, seconds: float) -> None:
        super().__init__()
        x16 = speechlike(seconds)
        self.samples = (np.repeat(x16, 3) * 32767).astype(np.int16)
        self.pos = 0
        self.start: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self.start is None:
            self.start = time.monotonic()
        due = self.start + self.pos / 48000
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        chunk = self.samples[self.pos : self.pos + 960]
        if len(chunk) < 960:
            chunk = np.zeros(960, np.int16)
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = 48000
        frame.pts = self.pos
        frame.time_base = Fraction(1, 48000)
        self.pos += 960
        return frame


async def offer_with_mic(
    client: object, push: bool, token: str | None, separate: bool = False
) -> tuple[RTCPeerConnection, int]:
    """Offer to watch and send a microphone: on the anchor audio's m-line (sendrecv), or as its
    own sendonly m-line next to recvonly video and audio (`separate`, what the web client does).
    """
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    pc.addTransceiver("video", direction="recvonly")
    if separate:
        pc.addTransceiver("audio", direction="recvonly")
        pc.addTransceiver(SpeechTrack(2.0), direction="sendonly")
    else:
        pc.addTransceiver(SpeechTrack(2.0), direction="sendrecv")
    await pc.setLocalDescription(await pc.createOffer())
    body: dict[str, object] = {"sdp": pc.localDescription.sdp, "type": "offer", "push": push}
    if token is not None:
        body["token"] = token
    resp = await client.post("/offer", json=body)  # type: ignore[attr-defined]
    if resp.status == 200:
        answer = await resp.json()
        await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))
    return pc, resp.status


async def close_client(pc: RTCPeerConnection) -> None:
    """Close a test client's connection; aiortc's close() can hang after a sending track ended
    (aiortc #283), and the client's own teardown is not what these tests check."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(5):
            await pc.close()


@pytest.mark.parametrize("separate", [False, True], ids=["sendrecv-audio", "sendonly-mic-mline"])
def test_browser_microphone_track_drives_the_anchor(models: PipelineModels, separate: bool) -> None:
    async def main() -> None:
        async with running_app(models) as (client, server):
            _pc, status = await offer_with_mic(client, push=True, token="wrong")
            assert status == 401
            await close_client(_pc)
            sub = server.session.subscribe()
            pc, status = await offer_with_mic(client, push=True, token=TOKEN, separate=separate)
            assert status == 200
            speaking = 0
            async with asyncio.timeout(15):
                while speaking < 10:
                    frame = await sub.video.get()
                    speaking += frame.speech
            assert frame.source.startswith("browser-mic:")
            assert server.session.active_input is not None
            await close_client(pc)
            async with asyncio.timeout(10):  # the peer's microphone input is released
                while server.session.active_input is not None:
                    await asyncio.sleep(0.1)

    asyncio.run(main())


def test_watch_only_offer_ignores_the_microphone(models: PipelineModels) -> None:
    async def main() -> None:
        async with running_app(models) as (client, server):
            pc, status = await offer_with_mic(client, push=False, token=None)
            assert status == 200
            await asyncio.sleep(1.5)
            assert server.session.active_input is None  # no token, no push: audio discarded
            await close_client(pc)

    asyncio.run(main())


def test_push_client_streams_a_file(models: PipelineModels, tmp_path: Path) -> None:
    import wave

    speech_wav = tmp_path / "short.wav"
    with wave.open(str(speech_wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((speechlike(1.5) * 32767).astype("<i2").tobytes())

    async def main() -> None:
        async with running_app(models) as (client, server):
            url = str(client.make_url("/ws/audio")).replace("http://", "ws://")
            with pytest.raises(StreamError, match="401"):
                await push_file(speech_wav, url, "wrong")
            sub = server.session.subscribe()
            t0 = time.monotonic()
            pushing = asyncio.create_task(push_file(speech_wav, url, TOKEN))
            speaking = 0
            async with asyncio.timeout(15):
                while speaking < 5:
                    speaking += (await sub.video.get()).speech
            seconds = await pushing
            assert seconds == pytest.approx(1.5, abs=0.01)
            assert time.monotonic() - t0 >= 1.45  # real-time pace, not a burst

    asyncio.run(main())


def test_serve_runs_until_stopped_and_reports_busy_port(models: PipelineModels) -> None:
    import aiohttp

    async def main() -> None:
        stop = asyncio.Event()
        urls: list[str] = []
        cfg = ServerConfig(port=0)
        task = asyncio.create_task(serve(models, cfg, TOKEN, on_ready=urls.append, stop=stop))
        async with asyncio.timeout(10):
            while not urls:
                await asyncio.sleep(0.05)
        async with aiohttp.ClientSession() as http:
            resp = await http.get(urls[0] + "healthz")
            assert resp.status == 200
            port = int(urls[0].rsplit(":", 1)[1].strip("/"))
            with pytest.raises(StreamError, match="cannot listen"):
                await serve(models, ServerConfig(port=port), TOKEN, stop=asyncio.Event())
        stop.set()
        await asyncio.wait_for(task, 10)

    asyncio.run(main())


def test_missing_microphone_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    from anchor.stream.mic import check_input_device

    fake = types.ModuleType("sounddevice")

    class PortAudioError(Exception):
        pass

    def query_devices(device: object = None, kind: str | None = None) -> dict[str, object]:
        raise PortAudioError("Error querying device -1")

    fake.PortAudioError = PortAudioError  # type: ignore[attr-defined]
    fake.query_devices = query_devices  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    with pytest.raises(StreamError, match="no audio input device") as info:
        check_input_device()
    assert "\n" not in str(info.value)
