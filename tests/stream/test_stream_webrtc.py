"""In-process WebRTC loopback: an aiortc client peer watches the app over 127.0.0.1.

A flash engine paints each frame as bright as its mouth feature (the loudness of that frame's
audio), so the receiver can find the frame where a sound starts in the video and in the audio.
Each received frame's RTP timestamp is mapped to the sender's clock through the RTCP sender
reports of its stream — what a lip-syncing player (a browser) does — and the difference between
the two onsets is the A/V offset a viewer experiences. (aiortc's own receiver does not lip-sync:
it buffers audio 4 packets and video 1 frame, so raw arrival times would measure the receiver.)
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Sequence

import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import RtcpSrPacket
from pipeline_helpers import SPF, loudness_infer, speechlike
from stream_helpers import push_paced, running_app

from anchor.compose.idle import IdleLoop
from anchor.config import AnchorConfig, StreamingConfig
from anchor.pipeline.models import PipelineModels

W, H = 64, 48


class FlashEngine:
    """Test-only FrameEngine: brightness = mouth feature 0 (loudness); idle frames are black."""

    frame_size = (W, H)
    idle_loop = IdleLoop(1)

    def maps(self, feats: np.ndarray, template_indices: Sequence[int]) -> np.ndarray:
        level = np.clip(feats[:, 0] * 600, 0, 255).astype(np.uint8)
        return np.broadcast_to(level[:, None, None, None], (len(feats), 1, 1, 3)).copy()

    def infer(self, maps: np.ndarray) -> np.ndarray:
        return maps

    def compose(self, faces: np.ndarray, template_indices: Sequence[int]) -> list[np.ndarray]:
        return [np.full((H, W, 3), int(f[0, 0, 0]), np.uint8) for f in faces]

    def idle_frame_at(self, counter: int) -> np.ndarray:
        return np.zeros((H, W, 3), np.uint8)

    def warmup(self) -> None:
        pass

    def close(self) -> None:
        pass


def flash_models() -> PipelineModels:
    cfg = AnchorConfig()
    return PipelineModels(
        engine=FlashEngine(), infer=loudness_infer, audio=cfg.audio,
        streaming=dataclasses.replace(StreamingConfig(), hop_frames=2, right_context_frames=4),
        mouth_model=cfg.mouth_model, fps=25, name="flash",
        info={"mouth_box": (0, 0, W, H), "frame_size": (W, H)},
    )


async def record(track: MediaStreamTrack, out: list[tuple[float, int, float]]) -> None:
    """(arrival time, pts, level) per received frame; level = mean pixel or audio RMS."""
    try:
        while True:
            frame = await track.recv()
            t = time.monotonic()
            x = frame.to_ndarray()
            if track.kind == "video":
                level = float(frame.to_ndarray(format="gray").mean())
            else:
                level = float(np.sqrt(np.mean((x.astype(np.float64) / 32768.0) ** 2)))
            out.append((t, int(frame.pts), level))
    except MediaStreamError:
        pass


async def connect_viewer(client: object) -> tuple[RTCPeerConnection, dict[str, list], list[dict]]:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    channel = pc.createDataChannel("stats")
    stamps: list[dict] = []
    channel.on("message", lambda m: stamps.append(json.loads(m)))
    got: dict[str, list] = {"video": [], "audio": []}
    tasks = []
    pc._anchor_reports = capture_sender_reports(pc)  # type: ignore[attr-defined]

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        tasks.append(asyncio.ensure_future(record(track, got[track.kind])))

    await pc.setLocalDescription(await pc.createOffer())
    resp = await client.post(  # type: ignore[attr-defined]
        "/offer", json={"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}
    )
    assert resp.status == 200, await resp.text()
    answer = await resp.json()
    await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))
    pc._anchor_tasks = tasks  # type: ignore[attr-defined]
    return pc, got, stamps


def onset(events: list[tuple[float, int, float]], threshold: float, after: float) -> tuple[float, int]:
    """(arrival time, RTP timestamp) of the first frame above `threshold` arriving after `after`."""
    for t, pts, level in events:
        if t > after and level > threshold:
            return t, pts
    raise AssertionError(f"no frame above {threshold} (max {max(e[2] for e in events):.3f})")


def capture_sender_reports(pc: RTCPeerConnection) -> dict[str, list[tuple[float, int]]]:
    """Record (sender NTP seconds, RTP timestamp) of every RTCP sender report, per kind."""
    reports: dict[str, list[tuple[float, int]]] = {"audio": [], "video": []}
    for transceiver in pc.getTransceivers():
        receiver = transceiver.receiver
        original = receiver._handle_rtcp_packet

        async def handle(packet: object, original: object = original, kind: str = transceiver.kind) -> None:
            if isinstance(packet, RtcpSrPacket):
                ntp = packet.sender_info.ntp_timestamp
                reports[kind].append(((ntp >> 32) + (ntp & 0xFFFFFFFF) / 2**32,
                                      packet.sender_info.rtp_timestamp))
            await original(packet)  # type: ignore[operator]

        receiver._handle_rtcp_packet = handle  # type: ignore[method-assign]
    return reports


def rtp_origin(pc: RTCPeerConnection, kind: str) -> int:
    """aiortc's receiver rebases RTP timestamps to start at 0; this is the first one it saw."""
    for t in pc.getTransceivers():
        if t.kind == kind:
            return int(t.receiver._RTCRtpReceiver__timestamp_mapper._origin)  # type: ignore[attr-defined]
    raise AssertionError(f"no {kind} receiver")


def sender_time(rtp: int, report: tuple[float, int], clock_rate: int) -> float:
    """Sender wall time of an RTP timestamp, from a sender report (32-bit wrap-around safe)."""
    ntp, sr_rtp = report
    delta = (rtp - sr_rtp + 2**31) % 2**32 - 2**31
    return ntp + delta / clock_rate


def test_webrtc_loopback_av_sync() -> None:
    models = flash_models()
    tone_at = 25 * SPF  # the tone starts exactly on frame 25 of the pushed audio
    x = np.concatenate([np.zeros(tone_at, np.float32), speechlike(1.0), np.zeros(16000, np.float32)])

    async def main() -> None:
        async with running_app(models) as (client, server):
            pc, got, stamps = await connect_viewer(client)
            async with asyncio.timeout(15):
                while len(got["video"]) < 5 or len(got["audio"]) < 5:
                    await asyncio.sleep(0.05)
            t_push = await push_paced(client, x)
            await asyncio.sleep(0.3)
            await pc.close()
            for t in pc._anchor_tasks:  # type: ignore[attr-defined]
                t.cancel()
            health = await (await client.get("/healthz")).json()
            assert health["status"] == "ok"

            video, audio = got["video"], got["audio"]
            assert len(video) > 50 and len(audio) > 100  # both kept flowing
            for events in (video, audio):
                pts = [p for _t, p, _l in events]
                assert all(b > a for a, b in zip(pts, pts[1:], strict=False))  # monotonic pts
            # A/V offset: the sound's first bright frame vs its first loud audio frame, both on
            # the sender's clock via each stream's latest RTCP sender report
            reports = pc._anchor_reports  # type: ignore[attr-defined]
            assert reports["video"] and reports["audio"], "no RTCP sender reports received"
            t_video, pts_video = onset(video, 128.0, t_push)
            _t_audio, pts_audio = onset(audio, 0.02, t_push)
            rtp_video = pts_video + rtp_origin(pc, "video")
            rtp_audio = pts_audio + rtp_origin(pc, "audio")
            offset = sender_time(rtp_video, reports["video"][-1], 90000) - sender_time(
                rtp_audio, reports["audio"][-1], 48000
            )
            assert abs(offset) <= 0.040, f"A/V offset {1000 * offset:.0f} ms"
            # and the latency from pushing the tone to seeing it is the live target (+ slack)
            assert 0.0 < t_video - (t_push + tone_at / 16000) < server.session.live_latency_s + 0.3
            # the data channel carried per-frame server stamps
            frames = [s for s in stamps if s.get("type") == "frame"]
            assert frames and all("sent" in s for s in frames)
            assert any("latency_ms" in s for s in frames if s["speech"])

    asyncio.run(main())


def test_whep_and_delete() -> None:
    models = flash_models()

    async def main() -> None:
        async with running_app(models) as (client, server):
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            pc.addTransceiver("video", direction="recvonly")
            pc.addTransceiver("audio", direction="recvonly")
            got: list = []

            @pc.on("track")
            def on_track(track: MediaStreamTrack) -> None:
                if track.kind == "video":
                    asyncio.ensure_future(record(track, got))

            await pc.setLocalDescription(await pc.createOffer())
            resp = await client.post(
                "/whep", data=pc.localDescription.sdp, headers={"Content-Type": "application/sdp"}
            )
            assert resp.status == 201 and resp.content_type == "application/sdp"
            assert "Location" in resp.headers["Access-Control-Expose-Headers"]  # browser players
            location = resp.headers["Location"]
            await pc.setRemoteDescription(RTCSessionDescription(await resp.text(), "answer"))
            async with asyncio.timeout(15):
                while len(got) < 5:
                    await asyncio.sleep(0.05)
            assert server.peers.count("whep") == 1
            assert (await client.delete(location)).status == 200
            assert server.peers.count("whep") == 0
            assert (await client.delete(location)).status == 404
            assert (await client.options("/whep")).status == 204
            await pc.close()

    asyncio.run(main())
