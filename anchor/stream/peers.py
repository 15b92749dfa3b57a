"""WebRTC peers: one RTCPeerConnection per viewer, all reading the session's one stream.

A viewer's offer must ask to receive video (and may ask for audio); a pushing viewer also sends
its microphone on the audio m-line (sendrecv), which the server consumes with `track.recv()` as
a live input. A data channel the client opens (any label) receives per-frame server timestamps
as JSON: {"type": "frame", "frame", "pts", "audio_in", "sent", "speech", "latency_ms",
"av_offset_ms"} with times in milliseconds on the session's media clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from anchor.config import ServerConfig
from anchor.errors import StreamError
from anchor.pipeline.fanout import Subscription
from anchor.pipeline.items import STAMP_AUDIO_IN, STAMP_OUT, OutputFrame
from anchor.pipeline.session import AnchorSession, AudioInput, InputBusy
from anchor.stream.tracks import AnchorAudioTrack, AnchorVideoTrack, SendLog, drain_track

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 30.0


class OfferError(StreamError):
    """The offer cannot be answered (HTTP 400)."""


def check_offer_sdp(sdp: str) -> None:
    """Cheap structural checks so garbage gets a clear one-line 400 before aiortc sees it."""
    if not isinstance(sdp, str) or not sdp.strip():
        raise OfferError("offer SDP is empty")
    if not sdp.lstrip().startswith("v=0"):
        raise OfferError("offer SDP must start with 'v=0'")
    if "\nm=video " not in sdp.replace("\r\n", "\n"):
        raise OfferError("offer has no video m-line (the anchor is a video stream)")


def wants_audio_send(sdp: str) -> bool:
    """Does the offer send audio (a microphone) to us? (sendrecv / sendonly audio m-line)."""
    for section in sdp.replace("\r\n", "\n").split("\nm=")[1:]:
        if not section.startswith("audio "):
            continue
        if "a=sendrecv" in section or "a=sendonly" in section:
            return True
        if not any(d in section for d in ("a=recvonly", "a=inactive")):
            return True  # no direction attribute means sendrecv
    return False


@dataclass
class Peer:
    id: str
    kind: str  # "webrtc" | "whep"
    pc: RTCPeerConnection
    sub: Subscription
    send_log: SendLog
    push_allowed: bool
    created: float = field(default_factory=time.monotonic)
    channel: Any = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    mic_input: AudioInput | None = None
    closed: bool = False


class PeerManager:
    def __init__(self, session: AnchorSession, cfg: ServerConfig) -> None:
        self.session = session
        self.cfg = cfg
        self.peers: dict[str, Peer] = {}
        self._ids = itertools.count(1)
        self.failed = 0

    def count(self, kind: str | None = None) -> int:
        return sum(1 for p in self.peers.values() if kind is None or p.kind == kind)

    async def answer(self, sdp: str, sdp_type: str, *, kind: str, push_allowed: bool) -> Peer:
        """Create a peer for an offer; its answer is `peer.pc.localDescription`."""
        if sdp_type != "offer":
            raise OfferError(f"expected an SDP offer, got type {sdp_type!r}")
        check_offer_sdp(sdp)
        # max-bundle: every m-line on one transport. (With aiortc's default "balanced" policy a
        # second audio m-line — a viewer's sendonly microphone next to its recvonly anchor audio
        # — is left on a transport that never connects.)
        pc = RTCPeerConnection(
            RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        sub = self.session.subscribe()
        peer_id = f"{next(self._ids)}-{secrets.token_hex(4)}"
        peer = Peer(peer_id, kind, pc, sub, SendLog(), push_allowed)
        self.peers[peer_id] = peer
        try:
            await self._negotiate(peer, sdp)
        except Exception as exc:
            await self.close(peer_id)
            self.failed += 1
            if isinstance(exc, StreamError):
                raise
            raise OfferError(f"cannot answer the offer: {one_line(exc)}") from exc
        peer.tasks.append(asyncio.create_task(self._watchdog(peer)))
        log.info("peer %s (%s) answered; %d peers", peer_id, kind, len(self.peers))
        return peer

    async def _negotiate(self, peer: Peer, sdp: str) -> None:
        pc = peer.pc
        session = self.session
        video = AnchorVideoTrack(
            peer.sub, session.fps, session.clock, peer.send_log,
            on_sent=lambda frame: self._send_stamp(peer, frame),
        )
        audio = AnchorAudioTrack(
            peer.sub, session.fps, session.sample_rate, session.clock, peer.send_log
        )

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            log.debug("peer %s: remote %s track (push allowed: %s)", peer.id, track.kind,
                      peer.push_allowed)
            if track.kind == "audio" and peer.push_allowed:
                peer.tasks.append(asyncio.create_task(self._consume_mic(peer, track)))
            else:
                peer.tasks.append(asyncio.create_task(drain_track(track)))

        @pc.on("datachannel")
        def on_datachannel(channel: Any) -> None:
            peer.channel = channel

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            log.debug("peer %s: %s", peer.id, pc.connectionState)
            if pc.connectionState in ("failed", "closed"):
                await self.close(peer.id)

        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        kinds = {t.kind for t in pc.getTransceivers()}
        if "video" not in kinds:
            raise OfferError("offer has no video m-line (the anchor is a video stream)")
        pc.addTrack(video)
        if "audio" in kinds:
            pc.addTrack(audio)
        self._prefer_codec(pc)
        answer = await pc.createAnswer()
        await pc.setLocalDescription(answer)

    def _prefer_codec(self, pc: RTCPeerConnection) -> None:
        name = self.cfg.video_codec.lower()
        caps = RTCRtpSender.getCapabilities("video").codecs
        chosen = [c for c in caps if c.mimeType.lower() == f"video/{name}"]
        if not chosen:
            log.warning("video codec %r not available; using aiortc's default", self.cfg.video_codec)
            return
        rtx = [c for c in caps if c.mimeType.lower() == "video/rtx"]
        for t in pc.getTransceivers():
            if t.kind == "video":
                with contextlib.suppress(Exception):  # the offer may not list the codec
                    t.setCodecPreferences(chosen + rtx)

    async def _watchdog(self, peer: Peer) -> None:
        """Drop peers that never connect (a browser that went away mid-handshake)."""
        await asyncio.sleep(CONNECT_TIMEOUT_S)
        if not peer.closed and peer.pc.connectionState != "connected":
            log.info("peer %s never connected; closing it", peer.id)
            await self.close(peer.id)

    async def _consume_mic(self, peer: Peer, track: MediaStreamTrack) -> None:
        """The viewer's microphone as a live input (48 kHz stereo s16 from aiortc's decoder)."""
        name = f"browser-mic:{peer.id}"
        busy_reported = False
        try:
            while True:
                frame = await track.recv()
                if not isinstance(frame, av.AudioFrame):
                    continue
                pcm = frame.to_ndarray()
                channels = len(frame.layout.channels)
                mono = pcm.reshape(-1, channels).astype(np.float32).mean(axis=1) / 32768.0
                if peer.mic_input is None:
                    try:
                        peer.mic_input = self.session.open_input(name, frame.sample_rate, live=True)
                    except InputBusy as exc:
                        if not busy_reported:
                            log.info("peer %s microphone ignored: %s", peer.id, exc)
                            self._send_json(peer, {"type": "error", "message": str(exc)})
                            busy_reported = True
                        continue
                peer.mic_input.set_rate(frame.sample_rate)
                await peer.mic_input.push(mono)
        except MediaStreamError:
            pass
        except Exception:  # a bad frame must not leave the input claimed or kill other peers
            log.exception("peer %s: microphone input failed", peer.id)
        finally:
            if peer.mic_input is not None:
                await peer.mic_input.close()
                peer.mic_input = None

    def _send_json(self, peer: Peer, msg: dict[str, Any]) -> None:
        ch = peer.channel
        if ch is None or getattr(ch, "readyState", "") != "open":
            return
        with contextlib.suppress(Exception):  # a closing channel: the stats are best-effort
            ch.send(json.dumps(msg))

    def _send_stamp(self, peer: Peer, frame: OutputFrame) -> None:
        if peer.channel is None:
            return
        origin = self.session.clock.origin
        sent = peer.send_log.video.get(frame.index, self.session.clock.monotonic())
        msg: dict[str, Any] = {
            "type": "frame",
            "frame": frame.index,
            "pts": round(frame.index / self.session.fps, 3),
            "speech": frame.speech,
            "sent": round(1000 * (sent - origin), 1),
        }
        stamps = frame.timestamps
        if STAMP_AUDIO_IN in stamps:
            msg["audio_in"] = round(1000 * (stamps[STAMP_AUDIO_IN] - origin), 1)
            msg["latency_ms"] = round(1000 * (sent - stamps[STAMP_AUDIO_IN]), 1)
        if STAMP_OUT in stamps:
            msg["out"] = round(1000 * (stamps[STAMP_OUT] - origin), 1)
        # the newest frame whose video and audio have both left (audio may trail by a packet)
        for index in range(frame.index, frame.index - 4, -1):
            offset = peer.send_log.av_offset(index)
            if offset is not None:
                msg["av_offset_ms"] = round(1000 * offset, 1)
                msg["av_frame"] = index
                break
        self._send_json(peer, msg)

    async def close(self, peer_id: str) -> bool:
        peer = self.peers.pop(peer_id, None)
        if peer is None:
            return False
        peer.closed = True
        self.session.unsubscribe(peer.sub)
        current = asyncio.current_task()
        for t in peer.tasks:
            if t is not current:
                t.cancel()
        with contextlib.suppress(Exception):
            await peer.pc.close()
        if peer.mic_input is not None:
            with contextlib.suppress(Exception):
                await peer.mic_input.close()
        log.info("peer %s closed; %d peers", peer_id, len(self.peers))
        return True

    async def close_all(self) -> None:
        for peer_id in list(self.peers):
            await self.close(peer_id)


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]

