"""Publishing the one encoded stream to an SFU (Janus's streaming plugin) as plain RTP.

Without Janus: the URL format, the Janus config folder, and what the publisher puts on the wire
(RTP timestamps and send times on one mapping for both streams, sender reports, PLI -> keyframe,
the drop policy when a socket is full).

With Janus (Debian `janus`, installed by scripts/setup.sh): Janus, the anchor and the viewers run
in a private network namespace (`unshare --net`, as root). Its loopback carries the RTP from
anchor to Janus and the HTTP signalling; the WebRTC media runs over a veth pair that exists only
in that namespace, because Janus's ICE (libnice) never gathers loopback candidates. Nothing
leaves the namespace. The test re-runs this module inside it with ANCHOR_SFU_NETNS=1, which is
what makes the inside-the-namespace test exist.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiortc.rtp import RtcpPacket, RtcpPsfbPacket, RtcpSrPacket, RtpPacket
from stream_helpers import push_paced, running_app

from anchor.pipeline.models import PipelineModels
from anchor.stream.publish import (
    PublishError,
    PublishTarget,
    RtpPublisher,
    _RtpStream,
    janus_lib_dir,
    write_janus_config,
)
from benchmarks.janus_clients import NETNS_SETUP, wait_for_janus

REPO = Path(__file__).resolve().parents[2]
INSIDE = "ANCHOR_SFU_NETNS"


# -- the URL ---------------------------------------------------------------------------------------
def test_publish_url_defaults_and_options() -> None:
    t = PublishTarget.parse("rtp://127.0.0.1:5004")
    assert (t.host, t.video_port, t.rtcp_port, t.audio_port) == ("127.0.0.1", 5004, 5005, 5006)
    assert (t.codec, t.video_pt, t.audio_pt) == ("vp8", 100, 111)
    assert PublishTarget.parse(t.url) == t  # the canonical form parses back

    t = PublishTarget.parse("rtp://sfu.example:6000?audio=none&rtcp=off&codec=H264&video_pt=126")
    assert (t.host, t.audio_port, t.rtcp_port, t.codec, t.video_pt) == (
        "sfu.example", None, None, "h264", 126
    )
    assert PublishTarget.parse("rtp://[::1]:5004?audio=7000").audio_port == 7000


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://127.0.0.1:5004", "rtp://HOST:VIDEO_PORT"),
        ("rtp://127.0.0.1", "video port"),
        ("rtp://127.0.0.1:5004?audio=x", "audio must be a port"),
        ("rtp://127.0.0.1:5004?audio=5004", "different ports"),
        ("rtp://127.0.0.1:5004?codec=av1", "codec 'av1'"),
        ("rtp://127.0.0.1:5004?video_pt=8", "dynamic payload type"),
        ("rtp://127.0.0.1:5004?vidoe_pt=100", "unknown parameter 'vidoe_pt'"),
        ("rtp://127.0.0.1:5004?audio_pt=100", "must differ"),
    ],
)
def test_publish_url_errors_say_what_is_wrong(url: str, says: str) -> None:
    with pytest.raises(PublishError, match=says):
        PublishTarget.parse(url)


# -- the Janus config folder -----------------------------------------------------------------------
def fake_janus_lib(root: Path) -> Path:
    for sub, name in (("plugins", "libjanus_streaming.so"), ("transports", "libjanus_http.so")):
        (root / sub).mkdir(parents=True)
        (root / sub / name).write_bytes(b"")
    return root


def test_janus_config_loads_only_http_and_streaming(tmp_path: Path) -> None:
    lib = fake_janus_lib(tmp_path / "lib")
    target = PublishTarget.parse("rtp://127.0.0.1:5004")
    cfg = write_janus_config(tmp_path / "janus", target, http_port=8188, mountpoint_id=7, lib_dir=lib)
    d = cfg.directory
    assert cfg.http_url == "http://127.0.0.1:8188/janus" and cfg.mountpoint_id == 7
    assert cfg.command() == ["janus", "-F", str(d), "-o"]
    assert [p.name for p in (d / "plugins").iterdir()] == ["libjanus_streaming.so"]
    assert [p.name for p in (d / "transports").iterdir()] == ["libjanus_http.so"]
    assert (d / "plugins" / "libjanus_streaming.so").resolve() == lib / "plugins" / "libjanus_streaming.so"
    main = (d / "janus.jcfg").read_text()
    assert f'configs_folder = "{d}"' in main and f'plugins_folder = "{d / "plugins"}"' in main
    http = (d / "janus.transport.http.jcfg").read_text()
    assert "port = 8188" in http and 'ip = "127.0.0.1"' in http
    mount = (d / "janus.plugin.streaming.jcfg").read_text()
    for line in ("id = 7", "port = 5006", "pt = 111", 'codec = "opus"', "port = 5004",
                 "rtcpport = 5005", "pt = 100", 'codec = "vp8"', 'iface = "127.0.0.1"'):
        assert line in mount, line
    # rewriting the same folder (a second run) replaces the links
    write_janus_config(d, PublishTarget.parse("rtp://sfu.example:6000?audio=none&codec=h264"), lib_dir=lib)
    mount = (d / "janus.plugin.streaming.jcfg").read_text()
    assert "opus" not in mount and "h264" in mount and "packetization-mode=1" in mount
    assert "iface" not in mount  # a host name: the ports listen on every interface


def test_janus_config_without_janus_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("anchor.stream.publish.JANUS_LIB_GLOBS", (str(tmp_path / "none"),))
    with pytest.raises(PublishError, match="apt-get install janus"):
        write_janus_config(tmp_path / "j", PublishTarget.parse("rtp://127.0.0.1:5004"))


# -- on the wire -----------------------------------------------------------------------------------
class Catcher(asyncio.DatagramProtocol):
    """A UDP port that records (arrival time, datagram, sender)."""

    def __init__(self) -> None:
        self.got: list[tuple[float, bytes, Any]] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.got.append((time.monotonic(), data, addr))


async def catcher() -> tuple[Catcher, int]:
    loop = asyncio.get_running_loop()
    proto = Catcher()
    transport, _ = await loop.create_datagram_endpoint(lambda: proto, local_addr=("127.0.0.1", 0))
    return proto, transport.get_extra_info("sockname")[1]


def vp8_keyframe(payload: bytes) -> bool:
    from aiortc.codecs.vpx import VpxPayloadDescriptor

    descr, rest = VpxPayloadDescriptor.parse(payload)
    return bool(descr.partition_start) and descr.partition_id == 0 and not rest[0] & 1


def test_publisher_puts_both_streams_on_one_timeline(models: PipelineModels) -> None:
    async def main() -> None:
        (video, vport), (audio, aport), (rtcp, rport) = [await catcher() for _ in range(3)]
        target = PublishTarget("127.0.0.1", vport, aport, rport)
        async with running_app(models) as (_client, server):
            clock = server.session.clock
            pub = RtpPublisher(server.encoder, clock, target, sr_interval_s=0.5)
            await pub.start()
            await asyncio.sleep(2.5)
            origin = clock.origin  # media time of an arrival: its monotonic time - origin
            # the SFU asks for a keyframe (a viewer joined): the encoder is told
            forced = server.encoder.keyframes_forced
            assert rtcp.got, "no RTCP sender report reached the RTCP port"
            assert rtcp.transport is not None
            pli = RtcpPsfbPacket(fmt=1, ssrc=1, media_ssrc=pub.video.ssrc)
            rtcp.transport.sendto(bytes(pli), rtcp.got[0][2])
            await asyncio.sleep(0.6)
            assert pub.keyframe_requests == 1
            assert server.encoder.keyframes_forced > forced
            stats = pub.stats()
            feed = pub.feed
            await pub.aclose()
            assert feed is not None and feed not in server.encoder.feeds  # the feed went back

        assert stats["socket_errors"] == 0 and stats["frames_dropped"] == 0
        vp = [(t, RtpPacket.parse(d)) for t, d, _ in video.got]
        ap = [(t, RtpPacket.parse(d)) for t, d, _ in audio.got]
        assert len(vp) >= 50 and len(ap) >= 100  # 25 fps, 50 Opus packets/s
        assert {p.payload_type for _, p in vp} == {100} and {p.payload_type for _, p in ap} == {111}
        assert len({p.ssrc for _, p in vp} | {p.ssrc for _, p in ap}) == 2
        # sequence numbers without gaps; timestamps: 3600 per frame, 960 per 20 ms
        for packets in (vp, ap):
            seqs = [p.sequence_number for _, p in packets]
            assert all((b - a) % 65536 == 1 for a, b in zip(seqs, seqs[1:], strict=False))
        vts = sorted({p.timestamp for _, p in vp})
        assert all((b - a) % 3600 == 0 for a, b in zip(vts, vts[1:], strict=False))
        ats = [p.timestamp for _, p in ap]
        assert all((b - a) % 2**32 == 960 for a, b in zip(ats, ats[1:], strict=False))
        # the marker bit ends each frame (one timestamp), on its last packet only
        for a, b in zip(vp, vp[1:], strict=False):
            assert a[1].marker == (a[1].timestamp != b[1].timestamp)
        assert vp8_keyframe(vp[0][1].payload)  # the feed starts at a keyframe
        # one mapping for both streams: send time - media time (of the RTP timestamp) agrees
        def origins(packets: list[tuple[float, RtpPacket]], offset: int, rate: int) -> float:
            return float(np.median([t - ((p.timestamp - offset) % 2**32) / rate for t, p in packets]))

        skew = origins(vp, pub.video.offset, 90000) - origins(ap, pub.audio.offset, 48000)
        assert abs(skew) < 0.02, f"video leaves {1000 * skew:.1f} ms after its audio"
        # sender reports carry the same mapping (RTP timestamp of "now" on the media clock)
        srs = [(t, p) for t, d, _ in rtcp.got for p in RtcpPacket.parse(d)
               if isinstance(p, RtcpSrPacket)]
        assert srs and all(p.ssrc == pub.video.ssrc for _, p in srs)
        for t, p in srs:
            sr_media = ((p.sender_info.rtp_timestamp - pub.video.offset) % 2**32) / 90000
            assert abs(sr_media - (t - origin)) < 0.02

    asyncio.run(main())


def closed_ports(n: int) -> list[int]:
    """n UDP ports nobody listens on (bound, noted, released)."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_publisher_keeps_going_while_nobody_listens(models: PipelineModels) -> None:
    """The SFU is down (ICMP port unreachable): counted, logged once, the stream goes on."""

    async def main() -> None:
        vport, aport, rport = closed_ports(3)
        target = PublishTarget("127.0.0.1", vport, aport, rport)
        async with running_app(models) as (_client, server):
            pub = RtpPublisher(server.encoder, server.session.clock, target, sr_interval_s=0.2)
            await pub.start()
            await asyncio.sleep(1.5)
            stats = pub.stats()
            assert all(not t.done() for t in pub._tasks)
            await pub.aclose()
        assert stats["frames_sent"] >= 25 and stats["audio_packets"] >= 50
        assert stats["socket_errors"] > 0

    asyncio.run(main())


class FullTransport:
    """A datagram transport whose buffer is full until `free` is set."""

    def __init__(self) -> None:
        self.free = False
        self.sent: list[bytes] = []

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0 if self.free else 1 << 30

    def sendto(self, data: bytes) -> None:
        self.sent.append(data)


def test_a_full_socket_drops_and_counts() -> None:
    stream = _RtpStream("video", 100, 90000, max_buffer_bytes=1000)
    transport = FullTransport()
    stream.socket.transport = transport  # type: ignore[assignment]
    assert not stream.send([b"a", b"b", b"c"], 3600, marker_last=True)
    assert stream.dropped == 3 and not transport.sent and stream.packets == 0
    transport.free = True
    assert stream.send([b"a", b"b"], 7200, marker_last=True)
    first, last = (RtpPacket.parse(d) for d in transport.sent)
    assert (first.marker, last.marker) == (0, 1)
    assert last.sequence_number == (first.sequence_number + 1) % 65536
    assert first.timestamp == (stream.offset + 7200) % 2**32


# -- through Janus, in a private network namespace -------------------------------------------------
def janus_or_skip() -> str:
    janus = shutil.which("janus")
    if janus is None or janus_lib_dir() is None:
        pytest.skip("needs Janus (Debian package janus: apt-get install janus; scripts/setup.sh does)")
    if sys.platform != "linux" or shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs unshare and ip (util-linux, iproute2) for a private network namespace")
    probe = subprocess.run(["unshare", "--net", "sh", "-c", NETNS_SETUP], capture_output=True,
                           text=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a private network namespace with a veth pair (needs root): "
                    f"{(probe.stderr or probe.stdout).strip()[:200]}")
    return janus


@pytest.mark.slow
def test_viewers_watch_through_janus() -> None:
    """Janus + anchor + viewers in a private network namespace (see the module docstring)."""
    janus_or_skip()
    node = f"{Path(__file__).relative_to(REPO)}::test_inside_netns_janus_viewers"
    cmd = [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", node]
    env = {**os.environ, INSIDE: "1"}
    proc = subprocess.Popen(
        ["unshare", "--net", "sh", "-c", f'{NETNS_SETUP} && exec "$@"', "sh", *cmd],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,  # one process group: a timeout ends all of it
    )
    try:
        out, _ = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(f"the namespace test hung:\n{out[-4000:]}") from None
    print(out[-4000:])
    assert proc.returncode == 0, out[-4000:]
    assert "1 passed" in out, out[-4000:]


if os.environ.get(INSIDE):  # only inside the namespace the test above makes

    def die_with_parent() -> None:
        """Janus gets SIGKILL if this test process dies first (PR_SET_PDEATHSIG)."""
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)

    async def decoding_janus_viewer(url: str, mountpoint: int) -> Any:
        """A full aiortc viewer (decodes) through Janus, recording frames and sender reports."""
        import aiohttp
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
        from test_stream_webrtc import capture_sender_reports, record

        from benchmarks.janus_clients import JanusSession

        http = aiohttp.ClientSession()
        janus = JanusSession(http, url)
        await janus.open()
        await janus.message({"request": "watch", "id": mountpoint})
        offer = (await janus.next_event(15, want="jsep"))["jsep"]
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        got: dict[str, list[tuple[float, int, float]]] = {"video": [], "audio": []}
        tasks: list[asyncio.Future[None]] = []
        pc.on("track", lambda track: tasks.append(asyncio.ensure_future(record(track, got[track.kind]))))
        await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], offer["type"]))
        reports = capture_sender_reports(pc)
        await pc.setLocalDescription(await pc.createAnswer())
        await janus.message({"request": "start"}, {"type": "answer", "sdp": pc.localDescription.sdp})

        async def close() -> None:
            await pc.close()
            for t in tasks:
                t.cancel()
            await janus.close()
            await http.close()

        return pc, got, reports, close

    def test_inside_netns_janus_viewers(tmp_path: Path) -> None:
        from pipeline_helpers import SPF, speechlike
        from test_stream_webrtc import flash_models, onset, rtp_origin, sender_time

        from benchmarks.janus_clients import run_janus_viewers
        from benchmarks.viewer_clients import run_viewers

        target = PublishTarget.parse("rtp://127.0.0.1:5004")
        cfg = write_janus_config(tmp_path / "janus", target, http_port=8088)
        log = tmp_path / "janus.log"
        models = flash_models()  # brightness follows loudness: lets the A/V check find a sound

        async def main() -> None:
            with log.open("wb") as out:
                proc = subprocess.Popen(cfg.command(), stdout=out, stderr=subprocess.STDOUT,
                                        preexec_fn=die_with_parent)
            try:
                await wait_for_janus(cfg.http_url, proc, log)
                async with running_app(models) as (client, server):
                    pub = RtpPublisher(server.encoder, server.session.clock, target)
                    await pub.start()
                    # 1. five viewers through Janus; the anchor itself serves none of them
                    most_peers = 0

                    async def count_peers() -> None:
                        nonlocal most_peers
                        while True:
                            most_peers = max(most_peers, server.peers.count())
                            await asyncio.sleep(0.1)

                    counter = asyncio.create_task(count_peers())
                    r = await run_janus_viewers(cfg.http_url, cfg.mountpoint_id, 5, 4.0, warmup_s=1.0)
                    counter.cancel()
                    print("through janus:", {k: v for k, v in r.items() if k != "per_viewer"})
                    assert r["connected"] == 5, r["per_viewer"]
                    for v in r["per_viewer"]:
                        assert v["fps"] >= 24.0, v
                        assert v["audio_packets"] >= 40 * r["seconds"], v  # 50 Opus packets/s
                    assert most_peers == 0
                    # 2. a WHEP viewer of anchor itself still works while it publishes
                    direct = await run_viewers(str(client.make_url("")).rstrip("/"), 1, 3.0,
                                               whep=True, warmup_s=0.5)
                    print("direct WHEP:", {k: v for k, v in direct.items() if k != "per_viewer"})
                    assert direct["connected"] == 1 and direct["fps_min"] >= 24.0, direct
                    # 3. lips and sound stay together through Janus: a decoding viewer maps a
                    # sound's first bright frame and its first loud audio through the sender
                    # reports Janus writes
                    pc, got, reports, close = await decoding_janus_viewer(cfg.http_url, cfg.mountpoint_id)
                    try:
                        async with asyncio.timeout(15):
                            while len(got["video"]) < 10 or len(got["audio"]) < 10:
                                await asyncio.sleep(0.05)
                        # the sound starts on a frame boundary (frame 25), as in the direct test
                        x = np.concatenate([np.zeros(25 * SPF, np.float32), speechlike(1.0),
                                            np.zeros(16000, np.float32)])
                        t_push = await push_paced(client, x)
                        await asyncio.sleep(1.0)
                    finally:
                        await close()
                    assert reports["video"] and reports["audio"], "Janus sent no sender reports"
                    _tv, pts_video = onset(got["video"], 128.0, t_push)
                    _ta, pts_audio = onset(got["audio"], 0.02, t_push)
                    offset = sender_time(pts_video + rtp_origin(pc, "video"), reports["video"][-1], 90000) - (
                        sender_time(pts_audio + rtp_origin(pc, "audio"), reports["audio"][-1], 48000)
                    )
                    print(f"A/V offset through Janus: {1000 * offset:.0f} ms")
                    assert abs(offset) <= 0.040, f"A/V offset {1000 * offset:.0f} ms through Janus"
                    stats = pub.stats()
                    await pub.aclose()
                    print("publisher:", stats)
                    assert stats["socket_errors"] == 0 and stats["frames_sent"] > 200
            finally:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

        asyncio.run(main())
