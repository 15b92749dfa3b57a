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
from aiortc.sdp import SessionDescription

from anchor.config import BroadcastConfig, ServerConfig
from anchor.errors import StreamError
from anchor.pipeline.items import STAMP_AUDIO_IN, STAMP_OUT, OutputFrame
from anchor.pipeline.session import AnchorSession, AudioInput, InputBusy
from anchor.stream.encoder import CODECS, SharedEncoder, ViewerFeed
from anchor.stream.tracks import EncodedAudioTrack, EncodedVideoTrack, SendLog, drain_track

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 30.0
# aiortc's pc.close() can wait forever on a transport that never finishes stopping (aiortc
# issue #283); a viewer's teardown, and with it shutdown, never waits longer than this.
CLOSE_TIMEOUT_S = 5.0


class OfferError(StreamError):
    """The offer cannot be answered (HTTP 400)."""


class ViewerLimit(StreamError):
    """broadcast.max_viewers are connected (HTTP 503 + Retry-After)."""


SENDABLE_VIDEO = ("video/vp8", "video/h264")  # what aiortc can encode for a viewer


def parse_offer_sdp(sdp: str) -> SessionDescription:
    """Parse and check an offer before aiortc negotiates it, so that every problem a client can
    cause is a one-sentence OfferError (HTTP 400) about its SDP, never a Python internal."""
    if not isinstance(sdp, str) or not sdp.strip():
        raise OfferError("offer SDP is empty")
    if not sdp.lstrip().startswith("v=0"):
        raise OfferError("offer SDP must start with 'v=0'")
    try:
        desc = SessionDescription.parse(sdp)
    except Exception:  # aiortc's parser asserts / raises on anything it cannot read
        raise OfferError("offer SDP is malformed: a line could not be parsed") from None
    video = [m for m in desc.media if m.kind == "video"]
    if not video:
        raise OfferError("offer has no video m-line (the anchor is a video stream)")
    v = video[0]
    direction = v.direction or "sendrecv"  # no attribute means sendrecv
    if v.port == 0 or direction not in ("recvonly", "sendrecv"):
        why = "rejected (port 0)" if v.port == 0 else direction
        raise OfferError(
            f"offer's video m-line is {why}: a viewer must receive video (recvonly or sendrecv)"
        )
    if not any(c.mimeType.lower() in SENDABLE_VIDEO for c in v.rtp.codecs):
        raise OfferError("offer's video m-line lists no codec the anchor sends (VP8 or H.264)")
    for m in desc.media:
        if m.kind not in ("audio", "video", "application"):
            raise OfferError(f"offer has an m-line of unsupported kind {m.kind!r}")
        if m.ice is None or not m.ice.usernameFragment or not m.ice.password:
            raise OfferError(f"offer's {m.kind} m-line has no ICE credentials (a=ice-ufrag, a=ice-pwd)")
        if m.dtls is None or not m.dtls.fingerprints:
            raise OfferError(
                f"offer's {m.kind} m-line has no DTLS fingerprint and setup role "
                "(a=fingerprint, a=setup)"
            )
        if m.kind in ("audio", "video") and not m.rtp.codecs:
            raise OfferError(f"offer's {m.kind} m-line lists no codecs (a=rtpmap)")
    return desc


def wants_audio_send(sdp: str | SessionDescription) -> bool:
    """Does the offer send audio (a microphone) to us? (sendrecv / sendonly audio m-line)."""
    if isinstance(sdp, str):
        try:
            desc = SessionDescription.parse(sdp)
        except Exception:  # unparseable: it sends nothing we could use
            return False
    else:
        desc = sdp
    return any(
        m.kind == "audio" and m.port != 0 and (m.direction or "sendrecv") in ("sendrecv", "sendonly")
        for m in desc.media
    )


@dataclass
class Peer:
    id: str
    kind: str  # "webrtc" | "whep"
    pc: RTCPeerConnection
    send_log: SendLog
    push_allowed: bool
    created: float = field(default_factory=time.monotonic)
    channel: Any = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    mic_input: AudioInput | None = None
    feed: ViewerFeed | None = None
    codec: str = ""
    connected_at: float | None = None
    last_rtcp: float = 0.0  # monotonic time of the viewer's latest RTCP packet
    closed: bool = False


class PeerManager:
    """Every viewer's peer connection; admission (max_viewers) and eviction of dead viewers.

    A viewer is evicted when its DTLS/ICE connection fails or closes, or when it has sent no
    RTCP (receiver reports, NACK/PLI, REMB) for `viewer_timeout_s` while connected: a browser
    tab that was killed stops reporting at once, long before ICE consent (30 s) gives up."""

    def __init__(
        self,
        session: AnchorSession,
        cfg: ServerConfig,
        broadcast: BroadcastConfig,
        encoder: SharedEncoder,
        time_fn: Any = time.monotonic,
    ) -> None:
        self.session = session
        self.cfg = cfg
        self.broadcast = broadcast
        self.encoder = encoder
        self.time_fn = time_fn
        self.peers: dict[str, Peer] = {}
        self._ids = itertools.count(1)
        self.failed = 0
        self.evictions = 0
        self.rejected_full = 0
        self._sweeper: asyncio.Task[None] | None = None

    def count(self, kind: str | None = None) -> int:
        return sum(1 for p in self.peers.values() if kind is None or p.kind == kind)

    def start(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._evict_loop(), name="anchor-evict")

    async def _evict_loop(self) -> None:
        while True:
            await asyncio.sleep(min(0.5, self.broadcast.viewer_timeout_s / 4))
            try:
                await self.evict_silent()
            except Exception:  # the sweeper must outlive any one peer's failure
                log.exception("viewer eviction sweep failed")

    async def evict_silent(self) -> list[str]:
        """Close connected viewers that have sent no RTCP for viewer_timeout_s."""
        now = self.time_fn()
        gone = []
        for peer in list(self.peers.values()):
            if peer.connected_at is None:
                continue
            silent = now - max(peer.last_rtcp, peer.connected_at)
            if silent > self.broadcast.viewer_timeout_s:
                log.info("peer %s evicted: no RTCP for %.1f s", peer.id, silent)
                self.evictions += 1
                gone.append(peer.id)
                await self.close(peer.id)
        return gone

    async def answer(self, sdp: str, sdp_type: str, *, kind: str, push_allowed: bool) -> Peer:
        """Create a peer for an offer; its answer is `peer.pc.localDescription`."""
        if sdp_type != "offer":
            raise OfferError(f"expected an SDP offer, got type {sdp_type[:20]!r}")
        parse_offer_sdp(sdp)
        if len(self.peers) >= self.broadcast.max_viewers:
            self.rejected_full += 1
            raise ViewerLimit(
                f"the anchor has its maximum of {self.broadcast.max_viewers} viewers "
                "(broadcast.max_viewers): try again later"
            )
        # max-bundle: every m-line on one transport. (With aiortc's default "balanced" policy a
        # second audio m-line — a viewer's sendonly microphone next to its recvonly anchor audio
        # — is left on a transport that never connects.)
        pc = RTCPeerConnection(
            RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        peer_id = f"{next(self._ids)}-{secrets.token_hex(4)}"
        peer = Peer(peer_id, kind, pc, SendLog(), push_allowed)
        self.peers[peer_id] = peer
        try:
            await self._negotiate(peer, sdp)
        except Exception as exc:
            await self.close(peer_id)
            self.failed += 1
            if isinstance(exc, StreamError):
                raise
            # What aiortc says here is about its internals, not about what the client sent.
            log.info("peer %s: offer not negotiable: %s", peer_id, one_line(exc))
            raise OfferError(
                "cannot answer the offer: its media sections cannot be negotiated with the anchor"
            ) from exc
        peer.tasks.append(asyncio.create_task(self._watchdog(peer)))
        log.info("peer %s (%s) answered; %d peers", peer_id, kind, len(self.peers))
        return peer

    async def _negotiate(self, peer: Peer, sdp: str) -> None:
        pc = peer.pc
        session = self.session
        video = EncodedVideoTrack(
            session.clock, peer.send_log, on_sent=lambda frame: self._send_stamp(peer, frame)
        )
        audio = EncodedAudioTrack(session.clock, peer.send_log)

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
            if pc.connectionState == "connected" and peer.connected_at is None:
                peer.connected_at = self.time_fn()
            if pc.connectionState in ("failed", "closed"):
                await self.close(peer.id)

        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        kinds = {t.kind for t in pc.getTransceivers()}
        if "video" not in kinds:
            raise OfferError("offer has no video m-line (the anchor is a video stream)")
        senders = [pc.addTrack(video)]
        if "audio" in kinds:
            senders.append(pc.addTrack(audio))
        self._prefer_codec(pc)
        answer = await pc.createAnswer()
        await pc.setLocalDescription(answer)
        peer.codec = negotiated_video_codec(pc)
        peer.feed = self.encoder.add_feed(peer.codec)
        video.attach(peer.feed)
        audio.attach(peer.feed)
        for sender in senders:
            self._hook_sender(peer, sender)

    def _hook_sender(self, peer: Peer, sender: RTCRtpSender) -> None:
        """Route the viewer's RTCP through the peer: every packet proves it is alive, and a
        PLI/FIR asks the shared encoder (not this sender, which never encodes) for a keyframe."""
        original = sender._handle_rtcp_packet

        async def handle(packet: Any) -> None:
            peer.last_rtcp = self.time_fn()
            await original(packet)

        sender._handle_rtcp_packet = handle  # type: ignore[method-assign]
        if sender.kind == "video":
            sender._send_keyframe = (  # type: ignore[method-assign]
                lambda: self.encoder.request_keyframe(peer.codec)
            )

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
        if peer.feed is not None:
            self.encoder.remove_feed(peer.feed)
        current = asyncio.current_task()
        for t in peer.tasks:
            if t is not current:
                t.cancel()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await peer.pc.close()
        except TimeoutError:
            log.warning("peer %s: the WebRTC connection did not close within %.0f s; dropped",
                        peer_id, CLOSE_TIMEOUT_S)
        except Exception:  # noqa: BLE001  (a half-closed connection is dropped all the same)
            log.debug("peer %s: error while closing", peer_id, exc_info=True)
        if peer.mic_input is not None:
            with contextlib.suppress(Exception):
                await peer.mic_input.close()
        log.info("peer %s closed; %d peers", peer_id, len(self.peers))
        return True

    async def close_all(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None
        for peer_id in list(self.peers):
            await self.close(peer_id)


def negotiated_video_codec(pc: RTCPeerConnection) -> str:
    """"vp8" or "h264": the codec the answer chose for the video m-line."""
    for t in pc.getTransceivers():
        if t.kind != "video":
            continue
        for codec in t._codecs:  # negotiated, in preference order (aiortc keeps no public view)
            name = codec.mimeType.split("/")[-1].lower()
            if name in CODECS:
                return name
    raise OfferError("offer's video m-line lists no codec the anchor sends (VP8 or H.264)")


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]

