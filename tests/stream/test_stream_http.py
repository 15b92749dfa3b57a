"""HTTP endpoints: health, metrics, auth, ws ingest protocol, speak/interrupt, bad offers.

Every failure must be a clear 4xx (or a ws close code) and the server must keep serving.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from pipeline_helpers import speechlike
from stream_helpers import TOKEN, auth, running_app

from anchor.pipeline.models import PipelineModels
from anchor.stream.auth import bearer_token, resolve_token
from anchor.stream.ingest import IngestError, parse_header, pcm16_to_float
from anchor.stream.peers import wants_audio_send


async def assert_healthy(client: aiohttp.ClientSession | object) -> None:
    resp = await client.get("/healthz")  # type: ignore[attr-defined]
    assert resp.status == 200
    assert (await resp.json())["status"] == "ok"


def test_health_metrics_and_web_client(models: PipelineModels) -> None:
    async def main() -> None:
        async with running_app(models) as (client, _server):
            await asyncio.sleep(0.3)
            health = await (await client.get("/healthz")).json()
            assert health["status"] == "ok" and health["lookahead_ms"] == models.lookahead_ms
            resp = await client.get("/metrics")
            assert resp.status == 200 and resp.content_type == "text/plain"
            text = await resp.text()
            for name in ("anchor_fps ", "anchor_lookahead_ms ", "anchor_queue_depth_ms{",
                         "anchor_dropped_total{", "anchor_sessions{", "anchor_frames_total{"):
                assert name in text, name
            index = await client.get("/")
            assert index.status == 200 and "client.js" in await index.text()
            assert (await client.get("/client.js")).status == 200

    asyncio.run(main())


def test_control_endpoints_need_the_token(models: PipelineModels) -> None:
    async def main() -> None:
        async with running_app(models) as (client, _server):
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
                assert (await client.post("/interrupt", headers=headers)).status == 401
                assert (await client.post("/speak", data=b"x", headers=headers)).status == 401
                resp = await client.get("/ws/audio", headers=headers)
                assert resp.status == 401
                assert "token" in await resp.text()
            resp = await client.post("/interrupt", headers=auth())
            assert resp.status == 200 and (await resp.json())["status"] == "interrupted"
            await assert_healthy(client)

    asyncio.run(main())


@pytest.mark.parametrize(
    ("messages", "code", "reason"),
    [
        (["{not json"], 1003, "not JSON"),
        (['{"sample_rate": 12345}'], 1003, "unsupported sample_rate"),
        (['{"rate": 16000}'], 1003, "integer sample_rate"),
        ([b"\x00\x00"], 1003, "JSON header"),
        (['{"sample_rate": 16000}', b"\x00\x00\x00"], 1003, "odd byte count"),
        (['{"sample_rate": 16000}', "hello"], 1003, "text message"),
        (['{"sample_rate": 16000}', b"\x00" * 5000], 1009, ""),
    ],
)
def test_bad_ws_messages_close_with_a_clear_code(
    models: PipelineModels, messages: list[str | bytes], code: int, reason: str
) -> None:
    async def main() -> None:
        async with running_app(models, max_ws_message_bytes=4096) as (client, _server):
            ws = await client.ws_connect(f"/ws/audio?token={TOKEN}")
            for m in messages:
                if isinstance(m, bytes):
                    await ws.send_bytes(m)
                else:
                    await ws.send_str(m)
            async with asyncio.timeout(5):
                while True:
                    msg = await ws.receive()
                    if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                        break
            assert ws.close_code == code
            assert reason in (msg.extra or "")
            await assert_healthy(client)
            # the input was released: a new push connection is accepted
            ws2 = await client.ws_connect("/ws/audio", headers=auth())
            await ws2.send_str('{"sample_rate": 16000}')
            ready = await ws2.receive_json(timeout=5)
            assert ready["type"] == "ready"
            await ws2.close()

    asyncio.run(main())


def test_ws_push_makes_the_anchor_speak_and_second_pusher_is_busy(models: PipelineModels) -> None:
    async def main() -> None:
        async with running_app(models) as (client, server):
            sub = server.session.subscribe()
            ws = await client.ws_connect("/ws/audio", headers=auth())
            await ws.send_str(json.dumps({"sample_rate": 48000}))
            assert (await ws.receive_json(timeout=5))["type"] == "ready"
            busy = await client.ws_connect(f"/ws/audio?token={TOKEN}")
            await busy.send_str('{"sample_rate": 16000}')
            msg = await busy.receive(timeout=5)
            assert msg.type == aiohttp.WSMsgType.CLOSE and busy.close_code == 1013
            x = speechlike(1.0)
            x48 = np.repeat(x, 3)  # crude 48 kHz version; resampled back by the server
            pcm = (x48 * 32767).astype("<i2").tobytes()
            for i in range(0, len(pcm), 1917 * 2):  # odd-sized chunks of whole samples
                await ws.send_bytes(pcm[i : i + 1917 * 2])
            await ws.close()
            speaking = 0
            async with asyncio.timeout(8):
                while speaking < 10:
                    speaking += (await sub.video.get()).speech
            await assert_healthy(client)

    asyncio.run(main())


def test_speak_upload_and_interrupt(models: PipelineModels, speech_wav: Path) -> None:
    async def main() -> None:
        async with running_app(models) as (client, server):
            sub = server.session.subscribe()
            form = aiohttp.FormData()
            form.add_field("file", speech_wav.read_bytes(), filename="speech.wav")
            resp = await client.post("/speak", data=form, headers=auth())
            assert resp.status == 202, await resp.text()
            async with asyncio.timeout(10):
                while not (await sub.video.get()).speech:
                    pass
            resp = await client.post("/interrupt", headers=auth())
            assert (await resp.json())["dropped"] > 0
            frames = [await sub.video.get() for _ in range(6)]
            assert not any(f.speech for f in frames[1:])

    asyncio.run(main())


def test_bad_uploads_are_4xx(models: PipelineModels) -> None:
    async def main() -> None:
        async with running_app(models, max_upload_bytes=10_000) as (client, _server):
            resp = await client.post("/speak", data=b"", headers=auth())
            assert resp.status == 400
            resp = await client.post("/speak", data=b"this is not audio" * 10, headers=auth())
            assert resp.status == 415 and len((await resp.text()).strip().splitlines()) == 1
            resp = await client.post("/speak", data=b"\0" * 20_000, headers=auth())
            assert resp.status == 413
            await assert_healthy(client)

    asyncio.run(main())


@pytest.mark.parametrize(
    "body",
    [
        {"sdp": "garbage", "type": "offer"},
        {"sdp": "v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n",
         "type": "offer"},
        {"sdp": "v=0\r\n", "type": "answer"},
        {"nothing": 1},
    ],
)
def test_malformed_offers_are_400(models: PipelineModels, body: dict[str, object]) -> None:
    async def main() -> None:
        async with running_app(models) as (client, server):
            resp = await client.post("/offer", json=body)
            assert resp.status == 400
            text = await resp.text()
            assert len(text.strip().splitlines()) == 1
            resp = await client.post("/whep", data=str(body.get("sdp", "x")),
                                     headers={"Content-Type": "application/sdp"})
            assert resp.status == 400
            assert (await client.post("/offer", data=b"{")).status == 400
            assert (await client.post("/whep", data="v=0")).status == 415
            assert not server.peers.peers  # nothing left half-open
            await assert_healthy(client)

    asyncio.run(main())


def test_protocol_helpers() -> None:
    assert parse_header('{"sample_rate": 44100}') == 44100
    with pytest.raises(IngestError):
        parse_header('{"sample_rate": 16000, "channels": 2}')
    np.testing.assert_array_equal(pcm16_to_float(b"\x00\x80\xff\x7f"), [-1.0, 32767 / 32768])
    assert bearer_token("Bearer abc") == "abc" and bearer_token("Basic abc") is None
    assert resolve_token("", {"ANCHOR_TOKEN": "e"}) == ("e", "env")
    assert resolve_token("c", {"ANCHOR_TOKEN": "e"}) == ("c", "config")
    token, where = resolve_token("", {})
    assert where == "generated" and len(token) >= 16
    offer = "v=0\r\nm=audio 9 X 111\r\na=sendrecv\r\nm=video 9 X 96\r\na=recvonly\r\n"
    assert wants_audio_send(offer)
    assert not wants_audio_send(offer.replace("a=sendrecv", "a=recvonly"))


def test_a_stuck_shutdown_step_is_abandoned_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """Ctrl-C never waits forever on one part: a step past its limit is dropped, named."""
    from anchor.stream.app import bounded_step

    async def main() -> float:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await bounded_step("the stuck part", asyncio.Event().wait(), limit_s=0.2)
        await bounded_step("a quick part", asyncio.sleep(0), limit_s=0.2)
        return loop.time() - t0

    with caplog.at_level(logging.WARNING, logger="anchor.stream.app"):
        took = asyncio.run(main())
    assert took < 2.0
    warned = [r.getMessage() for r in caplog.records]
    assert warned == ["shutdown: the stuck part did not stop within 0.2 s; abandoned"]
