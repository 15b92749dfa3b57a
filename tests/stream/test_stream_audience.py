"""Render once, encode once, fan out: the shared encoder, admission, and eviction of dead viewers.

What a broadcaster relies on: every viewer (VP8 or H.264) gets the one encode; a viewer that
falls behind loses frames only until the next keyframe, without touching the others; the
audience is capped with a 503 the player can retry; viewers killed without hanging up are
evicted within seconds while the rest keep their frame rate.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
from stream_helpers import Viewer, running_app

from anchor.config import BroadcastConfig
from anchor.pipeline.items import OutputFrame
from anchor.pipeline.models import PipelineModels
from anchor.stream.encoder import EncodedVideo, SharedEncoder, ViewerFeed

REPO = Path(__file__).resolve().parents[2]
KILLED = 20  # the audience issue's figure: 20 viewers gone without hanging up


def video_item(index: int, keyframe: bool) -> EncodedVideo:
    frame = OutputFrame(index=index, image=np.zeros((4, 4, 3), np.uint8),
                        audio=np.zeros(640, np.float32), speech=False, source="", timestamps={})
    return EncodedVideo(index, av.Packet(b"\x00" * 100), keyframe, frame)


def test_a_feed_starts_at_a_keyframe_and_a_slow_one_waits_for_the_next() -> None:
    requested: list[str] = []
    feed = ViewerFeed(1, "vp8", 25, video_ms=120, audio_ms=200, request_keyframe=requested.append)
    feed.push_video(video_item(0, keyframe=False))  # joined mid-GOP: undecodable, dropped
    assert len(feed.video) == 0 and feed.join_skipped == 1 and feed.dropped_video == 0
    feed.push_video(video_item(1, keyframe=True))
    for i in range(2, 4):
        feed.push_video(video_item(i, keyframe=False))
    assert [x.index for x, _ in feed.video._items] == [1, 2, 3]
    # nobody reads: the next frame would exceed 120 ms of queue -> drop all, wait for a key
    feed.push_video(video_item(4, keyframe=False))
    assert len(feed.video) == 0 and feed.waiting_for_keyframe and requested == ["vp8"]
    assert feed.dropped_video == 4
    feed.push_video(video_item(5, keyframe=False))
    feed.push_video(video_item(6, keyframe=True))
    assert [x.index for x, _ in feed.video._items] == [6] and feed.dropped_video == 5


def test_keyframe_requests_are_rate_limited() -> None:
    from anchor.pipeline.fanout import FrameBroadcaster

    now = [100.0]
    enc = SharedEncoder(FrameBroadcaster(25), 25, 16000, clock=None,  # type: ignore[arg-type]
                        cfg=BroadcastConfig(keyframe_min_interval_ms=500), viewer_audio_ms=200,
                        time_fn=lambda: now[0])
    try:
        assert enc._take_keyframe("vp8", now[0])  # the first frame of a codec
        enc.request_keyframe("vp8")
        now[0] += 0.2
        assert not enc._take_keyframe("vp8", now[0])  # too soon: stays wanted
        now[0] += 0.31
        assert enc._take_keyframe("vp8", now[0])
        assert not enc._take_keyframe("vp8", now[0] + 5)  # nobody asked again
    finally:
        enc._pool.shutdown()


def test_vp8_and_h264_viewers_share_one_encode_per_codec(models: PipelineModels) -> None:
    async def main() -> None:
        async with running_app(models) as (client, server):
            viewers = [Viewer() for _ in range(3)]
            await viewers[0].watch(client)
            await viewers[1].watch(client)
            await viewers[2].watch(client, codec="H264")
            assert sorted(f.codec for f in server.encoder.feeds) == ["h264", "vp8", "vp8"]
            n0, t0 = server.encoder.frames_encoded, time.monotonic()
            counts0 = [len(v.arrivals) for v in viewers]
            await asyncio.sleep(2.0)
            n1, t1 = server.encoder.frames_encoded, time.monotonic()
            # one pass of the encoder per output frame, whatever the number of viewers
            assert 20 <= (n1 - n0) / (t1 - t0) <= 30
            for v, c0 in zip(viewers, counts0, strict=True):
                assert (len(v.arrivals) - c0) / (t1 - t0) >= 20  # each decoded its codec
            health = await (await client.get("/healthz")).json()
            assert health["viewers"] == 3 and health["broadcast"]["bytes_sent"] > 0
            metrics = await (await client.get("/metrics")).text()
            for name in ("anchor_viewers 3.0", "anchor_encode_ms ", "anchor_bytes_sent_total ",
                         "anchor_evictions_total "):
                assert name in metrics, name
            for v in viewers:
                await v.close()

    asyncio.run(main())


def test_past_max_viewers_offers_get_503_with_retry_after(models: PipelineModels) -> None:
    async def main() -> None:
        async with running_app(models, broadcast=BroadcastConfig(max_viewers=1)) as (client, server):
            first = Viewer()
            await first.watch(client)
            second = Viewer()
            second.pc.addTransceiver("video", direction="recvonly")
            await second.pc.setLocalDescription(await second.pc.createOffer())
            offer = second.pc.localDescription.sdp
            resp = await client.post("/offer", json={"sdp": offer, "type": "offer"})
            assert resp.status == 503 and resp.headers["Retry-After"].isdigit()
            resp = await client.post("/whep", data="v=0\r\n", headers={"Content-Type": "application/sdp"})
            assert resp.status == 400  # a bad offer is still a bad offer
            resp = await client.post("/whep", data=offer, headers={"Content-Type": "application/sdp"})
            assert resp.status == 503 and resp.headers["Retry-After"].isdigit()
            assert "max_viewers" in await resp.text()
            assert server.peers.count() == 1
            await first.close()
            await second.close()
            async with asyncio.timeout(5):
                while server.peers.count():
                    await asyncio.sleep(0.1)
            third = Viewer()
            await third.watch(client)  # a freed seat is taken again
            await third.close()

    asyncio.run(main())


def test_killed_viewers_are_evicted_within_5_s_and_the_rest_keep_25_fps(
    models: PipelineModels,
) -> None:
    async def main() -> None:
        async with running_app(models) as (client, server):
            watcher = Viewer()
            await watcher.watch(client)
            base = str(client.make_url("/")).rstrip("/")
            env = {**os.environ, "PYTHONPATH": str(REPO)}
            clients = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.viewer_clients", base, str(KILLED), "60"],
                cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            try:
                async with asyncio.timeout(30):
                    while server.peers.count() < KILLED + 1 or any(
                        p.last_rtcp == 0.0 for p in server.peers.peers.values()
                    ):
                        await asyncio.sleep(0.1)
                await asyncio.sleep(1.0)
            finally:
                clients.send_signal(signal.SIGKILL)  # gone without a word: no BYE, no DTLS close
                clients.wait()
            killed_at = time.monotonic()
            async with asyncio.timeout(10):
                while server.peers.count() > 1:
                    await asyncio.sleep(0.05)
            evicted_after = time.monotonic() - killed_at
            assert evicted_after <= 5.0, f"evicted after {evicted_after:.1f} s"
            assert server.peers.evictions == KILLED
            t0 = killed_at
            await asyncio.sleep(max(0.0, killed_at + 6.0 - time.monotonic()))
            t1 = time.monotonic()
            assert watcher.fps_between(t0, t1) >= 24.0
            assert watcher.worst_window_fps(t0, t1) >= 20.0
            assert len(server.encoder.feeds) == 1  # the dead viewers' feeds are gone
            await watcher.close()

    asyncio.run(main())
