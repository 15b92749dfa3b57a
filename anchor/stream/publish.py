"""Publish the one shared encoded stream as plain RTP to an SFU (e.g. Janus's streaming plugin),
so that viewers scale with SFU servers and not with anchor's CPU.

    SharedEncoder ─► ViewerFeed (one, like a viewer) ─► RtpPublisher ─► UDP ─► Janus ─► viewers
                                                           ▲ RTCP PLI/FIR  │
                                                           └───────────────┘ (keyframe requests)

The target is a URL (`anchor serve --publish URL`):

    rtp://HOST:VIDEO_PORT[?audio=PORT|none][&rtcp=PORT|none][&codec=vp8|h264]
                        [&video_pt=100][&audio_pt=111]

- video (RTP) goes to HOST:VIDEO_PORT; Opus audio to `audio` (default VIDEO_PORT + 2);
- `rtcp` (default VIDEO_PORT + 1) is the SFU's video RTCP port: anchor sends a sender report
  there every second and turns the PLI/FIR the SFU sends back (a viewer joined or lost
  packets) into a keyframe request; `none` turns this off (the encoder's periodic keyframe,
  `broadcast.keyframe_interval_s`, then heals viewers on its own);
- `codec` is the video codec (vp8 default; h264 is constrained baseline, SPS/PPS in-band);
- payload types must match the SFU's mountpoint (Janus: `pt`); 100 and 111 are Janus's samples.

`rtp://127.0.0.1:5004` therefore means video 5004, video RTCP 5005, audio 5006, VP8 on 100,
Opus on 111: what `write_janus_config` writes for Janus (`python -m anchor.stream.publish
janus-config DIR URL`, then `janus -F DIR`).

Timing and A/V sync. RTP timestamps come straight from the packets' pts (video 1/90000, audio
1/48000) plus a random offset per stream, and each packet leaves when the viewers' tracks would
send it: video as soon as the encoder releases the frame (the player released it at its
deadline), each 20 ms Opus packet at its own deadline on the session's media clock. So the
arrival time of a packet at the SFU maps to its RTP timestamp the same way for both streams.
That matters because Janus does not pass a source's RTCP sender reports on to viewers: it
writes its own for every viewer from the times it relays packets, and a browser lip-syncs from
those. The sender reports anchor sends (video only, to the RTCP port) carry the same mapping;
Janus needs them only to learn where to send its keyframe requests.

Queues and drop policy:
- the feed (as every viewer's): video `broadcast.viewer_video_ms`, past it the publisher loses
  what is queued and waits for the next keyframe (requested); audio `server.viewer_audio_ms`,
  drop-oldest. The encoder never waits for the publisher.
- the sockets: sending never blocks the event loop (asyncio datagram transports). When the
  kernel cannot take a datagram asyncio buffers it; once that buffer holds more than
  `max_buffer_bytes`, further packets are dropped and counted. A video frame that lost a
  packet is useless to decoders, so the rest of the video is dropped until the next keyframe,
  which is requested.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import ipaddress
import logging
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiortc.rtp import RtpPacket

from anchor.clock import MediaClock
from anchor.errors import StreamError
from anchor.pipeline.queues import QueueClosed
from anchor.stream.encoder import CODECS, OPUS_RATE, VIDEO_CLOCK, SharedEncoder, ViewerFeed

log = logging.getLogger(__name__)

DEFAULT_VIDEO_PT = 100
DEFAULT_AUDIO_PT = 111
SR_INTERVAL_S = 1.0
RTCP_PSFB_PLI = 1
RTCP_PSFB_FIR = 4
H264_FMTP = "profile-level-id=42e01f;packetization-mode=1"


class PublishError(StreamError):
    """A bad --publish URL or a target that cannot be opened."""


def _port(value: str, what: str, url: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise PublishError(f"--publish {url}: {what} must be a port number, not {value!r}") from None
    if not 0 < port < 65536:
        raise PublishError(f"--publish {url}: {what} {port} is not a port (1-65535)")
    return port


def _pt(value: str, what: str, url: str) -> int:
    try:
        pt = int(value)
    except ValueError:
        raise PublishError(f"--publish {url}: {what} must be a number, not {value!r}") from None
    if not 96 <= pt <= 127:
        raise PublishError(f"--publish {url}: {what} {pt} must be a dynamic payload type (96-127)")
    return pt


@dataclass(frozen=True)
class PublishTarget:
    """Where the RTP goes. `audio_port` / `rtcp_port` None: that part is not sent."""

    host: str
    video_port: int
    audio_port: int | None
    rtcp_port: int | None
    codec: str = "vp8"
    video_pt: int = DEFAULT_VIDEO_PT
    audio_pt: int = DEFAULT_AUDIO_PT

    @classmethod
    def parse(cls, url: str) -> PublishTarget:
        """`rtp://HOST:VIDEO_PORT[?audio=..&rtcp=..&codec=..&video_pt=..&audio_pt=..]`."""
        parts = urlsplit(url)
        if parts.scheme != "rtp":
            raise PublishError(
                f"--publish {url}: use rtp://HOST:VIDEO_PORT[?audio=PORT&rtcp=PORT&codec=vp8]"
            )
        try:
            host, port = parts.hostname, parts.port
        except ValueError:
            raise PublishError(f"--publish {url}: the port is not a number (1-65535)") from None
        if not host or port is None:
            raise PublishError(f"--publish {url}: needs a host and the video port (rtp://HOST:PORT)")
        if parts.path not in ("", "/"):
            raise PublishError(f"--publish {url}: no path expected after the port")
        query = parse_qs(parts.query, keep_blank_values=True)
        known = {"audio", "rtcp", "codec", "video_pt", "audio_pt"}
        unknown = sorted(set(query) - known)
        if unknown:
            raise PublishError(
                f"--publish {url}: unknown parameter {unknown[0]!r} (known: {', '.join(sorted(known))})"
            )
        one = {k: v[-1].strip() for k, v in query.items()}
        video_port = _port(str(port), "the video port", url)

        def optional_port(name: str, default: int) -> int | None:
            value = one.get(name)
            if value is None:
                return default if default < 65536 else None
            if value.lower() in ("none", "off", "0", ""):
                return None
            return _port(value, name, url)

        codec = one.get("codec", "vp8").lower()
        if codec not in CODECS:
            raise PublishError(f"--publish {url}: codec {codec!r} (use one of {', '.join(CODECS)})")
        target = cls(
            host=host,
            video_port=video_port,
            audio_port=optional_port("audio", video_port + 2),
            rtcp_port=optional_port("rtcp", video_port + 1),
            codec=codec,
            video_pt=_pt(one["video_pt"], "video_pt", url) if "video_pt" in one else DEFAULT_VIDEO_PT,
            audio_pt=_pt(one["audio_pt"], "audio_pt", url) if "audio_pt" in one else DEFAULT_AUDIO_PT,
        )
        ports = [p for p in (target.video_port, target.audio_port, target.rtcp_port) if p]
        if len(set(ports)) != len(ports):
            raise PublishError(f"--publish {url}: video, audio and rtcp need different ports")
        if target.audio_port is not None and target.audio_pt == target.video_pt:
            raise PublishError(f"--publish {url}: audio_pt and video_pt must differ")
        return target

    @property
    def url(self) -> str:
        def opt(p: int | None) -> str:
            return "none" if p is None else str(p)

        host = f"[{self.host}]" if ":" in self.host else self.host
        return (
            f"rtp://{host}:{self.video_port}?audio={opt(self.audio_port)}"
            f"&rtcp={opt(self.rtcp_port)}&codec={self.codec}"
            f"&video_pt={self.video_pt}&audio_pt={self.audio_pt}"
        )


class _Datagrams(asyncio.DatagramProtocol):
    """One connected UDP socket; counts errors (an ICMP 'port unreachable' while the SFU is
    down is normal and must not end the broadcast)."""

    def __init__(self, name: str, on_datagram: Callable[[bytes], None] | None = None) -> None:
        self.name = name
        self.on_datagram = on_datagram
        self.transport: asyncio.DatagramTransport | None = None
        self.errors = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.on_datagram is not None:
            try:
                self.on_datagram(data)
            except Exception:  # a malformed datagram must not stop the socket
                log.debug("publish %s: bad datagram", self.name, exc_info=True)

    def error_received(self, exc: Exception) -> None:
        self.errors += 1
        # the first one says why (SFU not started yet?); the rest would flood the log
        (log.warning if self.errors == 1 else log.debug)(
            "publish %s: %s (is the SFU listening?)", self.name, exc
        )


def _buffered_bytes(transport: asyncio.DatagramTransport) -> int:
    """What asyncio holds back for a socket the kernel would not take (selector transports
    have it; the DatagramTransport type does not say so)."""
    size = getattr(transport, "get_write_buffer_size", None)
    return int(size()) if size is not None else 0


class _RtpStream:
    """Sequence numbers, SSRC and timestamp offset of one outgoing RTP stream."""

    def __init__(self, name: str, payload_type: int, clock_rate: int, max_buffer_bytes: int) -> None:
        self.name = name
        self.payload_type = payload_type
        self.clock_rate = clock_rate
        self.max_buffer_bytes = max_buffer_bytes
        self.ssrc = random.getrandbits(32) or 1
        self.sequence = random.getrandbits(16)
        self.offset = random.getrandbits(32)  # RFC 3550: a random start, like every sender
        self.socket = _Datagrams(name)
        self.packets = 0
        self.octets = 0  # payload bytes (what a sender report counts)
        self.dropped = 0
        self.last_timestamp: int | None = None

    def rtp_timestamp(self, pts: int) -> int:
        return (self.offset + pts) & 0xFFFFFFFF

    def send(self, payloads: Sequence[bytes], pts: int, marker_last: bool) -> bool:
        """Send one frame's packets; False when the socket buffer was full (all dropped from
        the first refusal on: a partial frame is useless)."""
        transport = self.socket.transport
        timestamp = self.rtp_timestamp(pts)
        for i, payload in enumerate(payloads):
            if transport is None or transport.is_closing() or (
                _buffered_bytes(transport) > self.max_buffer_bytes
            ):
                self.dropped += len(payloads) - i
                return False
            packet = RtpPacket(
                payload_type=self.payload_type,
                marker=int(marker_last and i == len(payloads) - 1),
                sequence_number=self.sequence,
                timestamp=timestamp,
                ssrc=self.ssrc,
                payload=payload,
            )
            self.sequence = (self.sequence + 1) & 0xFFFF
            transport.sendto(packet.serialize())
            self.packets += 1
            self.octets += len(payload)
        self.last_timestamp = timestamp
        return True


class RtpPublisher:
    """Sends the shared encoder's stream as plain RTP (one video, one Opus stream) to `target`.

    `start()` opens the sockets and takes a feed from the encoder (as a viewer does);
    `aclose()` gives it back. Nothing here waits on the network.
    """

    def __init__(
        self,
        encoder: SharedEncoder,
        clock: MediaClock,
        target: PublishTarget,
        *,
        max_buffer_bytes: int = 256 << 10,
        sr_interval_s: float = SR_INTERVAL_S,
    ) -> None:
        self.encoder = encoder
        self.clock = clock
        self.target = target
        self.sr_interval_s = sr_interval_s
        self.video = _RtpStream("video", target.video_pt, VIDEO_CLOCK, max_buffer_bytes)
        self.audio = _RtpStream("audio", target.audio_pt, OPUS_RATE, max_buffer_bytes)
        self.rtcp = _Datagrams("rtcp", self._on_rtcp)
        self.feed: ViewerFeed | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._video_broken = False  # a frame lost a packet: drop until the next keyframe
        self.frames_sent = 0
        self.frames_dropped = 0  # whole frames not sent by the publisher itself
        self.audio_packets_dropped = 0
        self.keyframe_requests = 0  # PLI/FIR from the SFU

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        if self.feed is not None:
            return
        from aiortc.codecs import get_encoder
        from aiortc.rtcrtpparameters import RTCRtpCodecParameters

        t = self.target
        loop = asyncio.get_running_loop()
        endpoints: list[tuple[_Datagrams, int]] = [(self.video.socket, t.video_port)]
        if t.audio_port is not None:
            endpoints.append((self.audio.socket, t.audio_port))
        if t.rtcp_port is not None:
            endpoints.append((self.rtcp, t.rtcp_port))
        try:
            for proto, port in endpoints:
                await loop.create_datagram_endpoint(lambda p=proto: p, remote_addr=(t.host, port))  # type: ignore[misc]
        except OSError as exc:
            self._close_sockets()
            raise PublishError(
                f"--publish {t.url}: cannot open UDP to {t.host} ({exc.strerror or exc})"
            ) from None
        mime = "video/VP8" if t.codec == "vp8" else "video/H264"
        # aiortc's packetizers (RFC 7741 VP8 descriptors, RFC 6184 FU-A/STAP-A for H.264)
        self._video_pack = get_encoder(RTCRtpCodecParameters(mimeType=mime, clockRate=VIDEO_CLOCK))
        self.feed = self.encoder.add_feed(t.codec)  # asks for a keyframe to start on
        self._tasks = [asyncio.create_task(self._video_loop(), name="publish-video")]
        if t.audio_port is not None:
            self._tasks.append(asyncio.create_task(self._audio_loop(), name="publish-audio"))
        if t.rtcp_port is not None:
            self._tasks.append(asyncio.create_task(self._report_loop(), name="publish-rtcp"))
        log.info("publishing %s RTP to %s", t.codec.upper(), t.url)

    async def aclose(self) -> None:
        if self.feed is not None:
            self.encoder.remove_feed(self.feed)  # closes its queues: the loops end
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self.feed is not None and self.target.rtcp_port is not None:
            self._send_bye()
        self._close_sockets()
        self.feed = None

    def _close_sockets(self) -> None:
        for proto in (self.video.socket, self.audio.socket, self.rtcp):
            if proto.transport is not None:
                proto.transport.close()
                proto.transport = None

    # -- media ---------------------------------------------------------------------------------
    async def _video_loop(self) -> None:
        assert self.feed is not None
        queue, codec = self.feed.video, self.target.codec
        while True:
            try:
                item = await queue.get()
            except QueueClosed:
                return
            if self._video_broken and not item.keyframe:
                self.frames_dropped += 1
                continue
            payloads, _ = self._video_pack.pack(item.packet)
            pts = int(item.packet.pts or 0)  # 1/90000: the RTP video clock
            if self.video.send(payloads, pts, marker_last=True):
                self._video_broken = False
                self.frames_sent += 1
            else:
                if not self._video_broken:
                    log.warning("publish: socket buffer full, video dropped until a keyframe")
                self._video_broken = True
                self.frames_dropped += 1
                self.encoder.request_keyframe(codec)

    async def _audio_loop(self) -> None:
        assert self.feed is not None
        queue = self.feed.audio
        while True:
            try:
                item = await queue.get()
            except QueueClosed:
                return
            await self.clock.sleep_until(item.due)  # each 20 ms packet at its own deadline
            pts = int(item.packet.pts or 0)  # 1/48000: the RTP Opus clock
            if not self.audio.send([bytes(item.packet)], pts, marker_last=False):
                self.audio_packets_dropped += 1

    # -- RTCP ----------------------------------------------------------------------------------
    def _sender_report(self) -> bytes:
        from aiortc.clock import current_ntp_time
        from aiortc.rtp import RtcpSenderInfo, RtcpSrPacket

        # the RTP timestamp of "now" on the media clock: the same mapping as the packets'
        now_pts = round(self.clock.now() * VIDEO_CLOCK)
        sr = RtcpSrPacket(
            ssrc=self.video.ssrc,
            sender_info=RtcpSenderInfo(
                ntp_timestamp=current_ntp_time(),
                rtp_timestamp=self.video.rtp_timestamp(now_pts),
                packet_count=self.video.packets & 0xFFFFFFFF,
                octet_count=self.video.octets & 0xFFFFFFFF,
            ),
        )
        return bytes(sr)

    async def _report_loop(self) -> None:
        while True:
            transport = self.rtcp.transport
            if transport is not None and self.video.packets and self.clock.started:
                transport.sendto(self._sender_report())
            await asyncio.sleep(self.sr_interval_s)

    def _send_bye(self) -> None:
        from aiortc.rtp import RtcpByePacket

        if self.rtcp.transport is not None:
            with contextlib.suppress(OSError):
                self.rtcp.transport.sendto(bytes(RtcpByePacket(sources=[self.video.ssrc])))

    def _on_rtcp(self, data: bytes) -> None:
        from aiortc.rtp import RtcpPacket, RtcpPsfbPacket

        for packet in RtcpPacket.parse(data):
            if isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
                self.keyframe_requests += 1
                self.encoder.request_keyframe(self.target.codec)  # rate-limited by the encoder

    # -- stats ---------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        feed = self.feed
        return {
            "target": self.target.url,
            "frames_sent": self.frames_sent,
            "frames_dropped": self.frames_dropped + (feed.dropped_video if feed else 0),
            "video_packets": self.video.packets,
            "audio_packets": self.audio.packets,
            "audio_packets_dropped": self.audio_packets_dropped + (feed.audio.dropped if feed else 0),
            "bytes_sent": self.video.octets + self.audio.octets,
            "keyframe_requests": self.keyframe_requests,
            "socket_errors": self.video.socket.errors + self.audio.socket.errors + self.rtcp.errors,
        }


# -- Janus -------------------------------------------------------------------------------------
JANUS_LIB_GLOBS = (
    "/usr/lib/*/janus",  # Debian / Ubuntu (multiarch)
    "/usr/lib/janus",
    "/usr/lib64/janus",
    "/opt/janus/lib/janus",  # built from source with the default prefix
)


def janus_lib_dir() -> Path | None:
    """Where Janus's plugins/ and transports/ live (None: Janus is not installed)."""
    for pattern in JANUS_LIB_GLOBS:
        for found in sorted(glob.glob(pattern)):
            path = Path(found)
            if (path / "plugins" / "libjanus_streaming.so").exists():
                return path
    return None


@dataclass(frozen=True)
class JanusConfig:
    """A Janus configuration folder with only the HTTP transport and the streaming plugin."""

    directory: Path
    http_url: str  # Janus API base, e.g. http://127.0.0.1:8088/janus
    mountpoint_id: int

    def command(self, janus: str = "janus") -> list[str]:
        """Janus in the foreground (logs to stdout; no colours, so a log file stays readable)."""
        return [janus, "-F", str(self.directory), "-o"]


def write_janus_config(
    directory: Path | str,
    target: PublishTarget,
    *,
    http_port: int = 8088,
    http_host: str = "127.0.0.1",
    mountpoint_id: int = 1,
    description: str = "anchor",
    rtp_iface: str | None = "",
    nat_1_1: str | None = None,
    rtp_port_range: str = "20000-40000",
    threads: int = 0,
    lib_dir: Path | None = None,
    debug_level: int = 4,
) -> JanusConfig:
    """Write janus.jcfg, the HTTP transport and a streaming mountpoint fed by `target`.

    Only two modules load (symlinks in DIR/plugins and DIR/transports), so no WebSocket,
    MQTT, SIP... servers start. `rtp_iface` binds the RTP ingest ports to one address: "" (the
    default) uses the target host when it is an IP address, so an SFU on a public machine does
    not take RTP from anyone; None binds them to every interface. `nat_1_1` is the public IP
    for ICE when Janus sits behind a 1:1 NAT (cloud machines). `threads` > 0 gives the
    mountpoint relay helper threads (worth it from a few hundred viewers).
    """
    lib = lib_dir or janus_lib_dir()
    if lib is None:
        raise PublishError("Janus is not installed (apt-get install janus; scripts/setup.sh does)")
    d = Path(directory).resolve()
    for sub in ("plugins", "transports", "events", "loggers"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    for sub, name in (("plugins", "libjanus_streaming.so"), ("transports", "libjanus_http.so")):
        link = d / sub / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(lib / sub / name)
    if rtp_iface == "":
        try:
            ipaddress.ip_address(target.host)
            rtp_iface = target.host
        except ValueError:
            rtp_iface = None
    nat = [
        "\tnice_debug = false",
        '\tice_ignore_list = "vmnet"',
        "\tignore_mdns = true",
    ]
    if nat_1_1:
        nat.append(f'\tnat_1_1_mapping = "{nat_1_1}"')
    (d / "janus.jcfg").write_text(
        "# written by anchor.stream.publish.write_janus_config\n"
        "general: {\n"
        f'\tconfigs_folder = "{d}"\n'
        f'\tplugins_folder = "{d / "plugins"}"\n'
        f'\ttransports_folder = "{d / "transports"}"\n'
        f'\tevents_folder = "{d / "events"}"\n'
        f'\tloggers_folder = "{d / "loggers"}"\n'
        f"\tdebug_level = {debug_level}\n"
        "\tsession_timeout = 60\n"
        '\tserver_name = "anchor-sfu"\n'
        "}\n"
        "media: {\n"
        f'\trtp_port_range = "{rtp_port_range}"\n'
        "}\n"
        "nat: {\n" + "\n".join(nat) + "\n}\n"
        "plugins: {\n}\ntransports: {\n}\nevents: {\n}\nloggers: {\n}\n"
    )
    (d / "janus.transport.http.jcfg").write_text(
        "general: {\n"
        '\tjson = "plain"\n'
        '\tbase_path = "/janus"\n'
        "\thttp = true\n"
        f"\tport = {http_port}\n"
        f'\tip = "{http_host}"\n'
        "\thttps = false\n"
        "}\n"
        "admin: {\n\tadmin_http = false\n\tadmin_https = false\n}\n"
        "cors: {\n}\n"
    )
    iface = f'\t\t\tiface = "{rtp_iface}"\n' if rtp_iface else ""
    media = []
    if target.audio_port is not None:
        media.append(
            "\t\t{\n"
            '\t\t\ttype = "audio"\n\t\t\tmid = "a"\n\t\t\tlabel = "anchor audio"\n'
            f'\t\t\tport = {target.audio_port}\n\t\t\tpt = {target.audio_pt}\n'
            '\t\t\tcodec = "opus"\n' + iface + "\t\t}"
        )
    video_codec = "vp8" if target.codec == "vp8" else "h264"
    fmtp = f'\t\t\tfmtp = "{H264_FMTP}"\n' if target.codec == "h264" else ""
    rtcp = f"\t\t\trtcpport = {target.rtcp_port}\n" if target.rtcp_port is not None else ""
    media.append(
        "\t\t{\n"
        '\t\t\ttype = "video"\n\t\t\tmid = "v"\n\t\t\tlabel = "anchor video"\n'
        f"\t\t\tport = {target.video_port}\n{rtcp}\t\t\tpt = {target.video_pt}\n"
        f'\t\t\tcodec = "{video_codec}"\n' + fmtp + iface + "\t\t}"
    )
    (d / "janus.plugin.streaming.jcfg").write_text(
        "general: {\n}\n"
        f"anchor-{mountpoint_id}: {{\n"
        '\ttype = "rtp"\n'
        f"\tid = {mountpoint_id}\n"
        f'\tdescription = "{description}"\n'
        + (f"\tthreads = {threads}\n" if threads > 0 else "")
        + "\tmedia = (\n" + ",\n".join(media) + "\n\t)\n"
        "}\n"
    )
    host = f"[{http_host}]" if ":" in http_host else http_host
    return JanusConfig(d, f"http://{host}:{http_port}/janus", mountpoint_id)


def main(argv: list[str] | None = None) -> int:
    """`python -m anchor.stream.publish janus-config DIR [URL]`: write a Janus config folder."""
    p = argparse.ArgumentParser(prog="python -m anchor.stream.publish", description=main.__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    jc = sub.add_parser("janus-config", help="write a Janus config folder for a --publish URL")
    jc.add_argument("directory")
    jc.add_argument("url", nargs="?", default="rtp://127.0.0.1:5004",
                    help="the URL given to anchor serve --publish (default rtp://127.0.0.1:5004)")
    jc.add_argument("--http-port", type=int, default=8088)
    jc.add_argument("--http-host", default="127.0.0.1",
                    help="where Janus's HTTP API listens (0.0.0.0: every interface)")
    jc.add_argument("--mountpoint", type=int, default=1)
    jc.add_argument("--nat-1-1", help="public IP of a Janus behind a 1:1 NAT")
    jc.add_argument("--threads", type=int, default=0, help="mountpoint relay helper threads")
    args = p.parse_args(argv)
    try:
        cfg = write_janus_config(
            args.directory, PublishTarget.parse(args.url), http_port=args.http_port,
            http_host=args.http_host, mountpoint_id=args.mountpoint, nat_1_1=args.nat_1_1,
            threads=args.threads,
        )
    except PublishError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    sys.stdout.write(
        f"wrote {cfg.directory}\nstart it:  {' '.join(cfg.command())}\n"
        f"Janus API: {cfg.http_url}  (streaming mountpoint id {cfg.mountpoint_id})\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = [
    "JanusConfig",
    "PublishError",
    "PublishTarget",
    "RtpPublisher",
    "janus_lib_dir",
    "write_janus_config",
]
