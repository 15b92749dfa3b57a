"""Several anchors in one server: each channel its own input, clock and viewers at /c/NAME/."""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pipeline_helpers import make_models, speechlike
from stream_helpers import TOKEN, Viewer, auth, push_paced

from anchor.avatar.bundle import AvatarBundle
from anchor.config import ServerConfig
from anchor.errors import StreamError
from anchor.pipeline.session import AnchorSession
from anchor.stream.app import AnchorServer
from anchor.stream.channels import ChannelSpec, channel_name_for, mount_channels, parse_channels


def test_avatar_arguments_become_channels() -> None:
    assert parse_channels(None) == [ChannelSpec("", None)]
    assert parse_channels(["avatars/me"]) == [ChannelSpec("", "avatars/me")]
    assert parse_channels(["news=a", "weather=b"]) == [ChannelSpec("news", "a"),
                                                       ChannelSpec("weather", "b")]
    for bad, match in ((["news=a", "b"], "needs a channel name"),
                       (["news=a", "news=b"], "given twice"),
                       (["News Desk=a"], "lower-case"), (["news="], "no avatar path"),
                       ([f"c{i}=a" for i in range(9)], "at most 8")):
        with pytest.raises(StreamError, match=match):
            parse_channels(bad)
    assert channel_name_for(ChannelSpec("", None), "Astronaut Cam") == "astronaut-cam"


@contextlib.asynccontextmanager
async def two_channels(bundle: AvatarBundle) -> AsyncIterator[tuple[TestClient,
                                                                    list[AnchorServer]]]:
    cfg = ServerConfig(latency_margin_ms=80)
    pool = ThreadPoolExecutor(1, thread_name_prefix="anchor-render")
    servers = [
        (name, AnchorServer(AnchorSession(make_models(bundle), cfg, render_executor=pool), cfg,
                            TOKEN))
        for name in ("news", "weather")
    ]
    try:
        async with TestClient(TestServer(mount_channels(servers), host="127.0.0.1")) as client:
            yield client, [s for _n, s in servers]
    finally:
        pool.shutdown(wait=True)


def test_two_channels_each_hold_their_frame_rate_with_their_own_pusher_and_viewer(
    tiny_bundle: AvatarBundle,
) -> None:
    async def main() -> None:
        async with two_channels(tiny_bundle) as (client, (news, weather)):
            listing = await (await client.get("/channels.json")).json()
            assert [(c["name"], c["path"]) for c in listing["channels"]] == [
                ("news", "/c/news/"), ("weather", "/c/weather/")]
            viewers = {name: Viewer() for name in ("news", "weather")}
            for name, v in viewers.items():
                await v.watch(client, path=f"/c/{name}/offer")
            # each channel speaks its own audio, at the same time
            pushes = [asyncio.create_task(push_paced(client, speechlike(4.0, seed=k),
                                                     path=f"/c/{name}/ws/audio"))
                      for k, name in enumerate(viewers)]
            t0 = time.monotonic() + 0.5
            await asyncio.gather(*pushes)
            t1 = time.monotonic()
            for name, v in viewers.items():
                fps = v.fps_between(t0, t1)
                print(f"\nchannel {name}: {fps:.1f} fps while both speak")
                assert fps >= 24.0, f"{name}: {fps:.1f} fps"
            # each session saw its own speech, not the other's
            for srv, name in ((news, "news"), (weather, "weather")):
                health = await (await client.get(f"/c/{name}/healthz")).json()
                assert health["status"] == "ok" and health["viewers"] == 1
                assert srv.session.recorder.speech_frames_out > 50
            for v in viewers.values():
                await v.close()

    asyncio.run(main())


def test_bad_input_on_one_channel_never_stops_the_other(tiny_bundle: AvatarBundle) -> None:
    async def main() -> None:
        async with two_channels(tiny_bundle) as (client, (news, weather)):
            viewer = Viewer()
            await viewer.watch(client, path="/c/weather/offer")
            # news gets malformed websocket frames and an unreadable upload
            ws = await client.ws_connect("/c/news/ws/audio", headers=auth())
            await ws.send_str("not json")
            msg = await ws.receive(timeout=5)
            assert msg.type.name in ("CLOSE", "CLOSED", "TEXT")
            await ws.close()
            resp = await client.post("/c/news/speak", data={"file": io.BytesIO(b"garbage")},
                                     headers=auth())
            assert resp.status in (400, 415)
            # and its renderer breaks outright
            engine = news.session.models.engine

            def broken(*_a: object, **_k: object) -> None:
                raise RuntimeError("renderer exploded")

            engine.infer = broken  # type: ignore[method-assign]
            push_news = asyncio.create_task(push_paced(client, speechlike(2.0),
                                                       path="/c/news/ws/audio"))
            t0 = time.monotonic()
            await push_paced(client, speechlike(3.0, seed=1), path="/c/weather/ws/audio")
            t1 = time.monotonic()
            with contextlib.suppress(Exception):
                await push_news
            # Still streaming, not stalled: the other channel's failing renderer (an exception
            # and its log per frame) shares the two cores, so this is not the 25 fps check (that
            # is the healthy two-channel test above, and `anchor bench channels`).
            assert viewer.fps_between(t0 + 0.5, t1) >= 20.0
            assert weather.session.running
            assert (await client.get("/c/weather/healthz")).status == 200
            await viewer.close()

    asyncio.run(main())


def test_channel_urls_redirect_and_whep_locations_stay_inside_the_channel(
    tiny_bundle: AvatarBundle,
) -> None:
    async def main() -> None:
        async with two_channels(tiny_bundle) as (client, _servers):
            resp = await client.get("/c/weather", allow_redirects=False)
            assert resp.status == 301 and resp.headers["Location"] == "/c/weather/"
            page = await client.get("/c/weather/")
            assert page.status == 200 and "client.js" in await page.text()
            assert (await client.get("/c/weather/client.js")).status == 200
            info = await (await client.get("/c/news/avatar.json")).json()
            root = await (await client.get("/avatar.json")).json()
            assert info["name"] == root["name"] == "tiny"
            from aiortc import RTCConfiguration, RTCPeerConnection

            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            pc.addTransceiver("video", direction="recvonly")
            await pc.setLocalDescription(await pc.createOffer())
            resp = await client.post("/c/weather/whep", data=pc.localDescription.sdp,
                                     headers={"Content-Type": "application/sdp"})
            assert resp.status == 201
            location = resp.headers["Location"]
            assert location.startswith("/c/weather/whep/")
            assert (await client.delete(location)).status in (200, 204)
            await pc.close()
            assert (await client.get("/c/nope/healthz")).status == 404

    asyncio.run(main())




def test_serve_runs_several_channels_and_stops_them(tiny_bundle: AvatarBundle) -> None:
    import aiohttp

    from anchor.stream.runner import serve

    async def main() -> None:
        stop = asyncio.Event()
        urls: list[str] = []
        channels = [("news", make_models(tiny_bundle)), ("weather", make_models(tiny_bundle))]
        task = asyncio.create_task(serve(channels, ServerConfig(port=0), TOKEN,
                                         on_ready=urls.append, stop=stop))
        async with asyncio.timeout(10):
            while not urls:
                await asyncio.sleep(0.05)
        async with aiohttp.ClientSession() as http:
            for path in ("healthz", "c/news/healthz", "c/weather/healthz"):
                resp = await http.get(urls[0] + path)
                assert resp.status == 200, path
                assert (await resp.json())["status"] == "ok"
            listing = await (await http.get(urls[0] + "channels.json")).json()
            assert [c["name"] for c in listing["channels"]] == ["news", "weather"]
        stop.set()
        await asyncio.wait_for(task, 10)

    asyncio.run(main())
