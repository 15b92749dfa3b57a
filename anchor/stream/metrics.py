"""Prometheus metrics for one app, in its own CollectorRegistry (never the global one).

Histograms of per-stage latency are fed by the session's observer hook; gauges (fps, queue
depths, sessions, lookahead) and drop counters are read from the live objects at scrape time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from anchor.pipeline.items import OutputFrame
from anchor.pipeline.observers import stage_latencies
from anchor.pipeline.session import AnchorSession


@dataclass(frozen=True)
class BroadcastStats:
    """The shared encode and its audience, read at scrape time."""

    viewers: int
    max_viewers: int
    encode_ms: float  # shared encoder's worker time per frame (all codecs + audio), running mean
    frames_encoded: int
    video_skipped: int  # frames whose picture the encoder skipped (it was behind)
    keyframes_forced: int
    bytes_sent: int  # encoded bytes handed to viewers' senders, all viewers
    viewer_video_dropped: int  # encoded frames current viewers lost (slow, or awaiting a keyframe)
    evictions: int  # viewers closed for sending no RTCP
    rejected_full: int  # offers answered 503 (max_viewers)

    def as_dict(self) -> dict[str, float | int]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.08, 0.12, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.5, 2.0, 4.0)


class _StateCollector(Collector):
    def __init__(
        self,
        session: AnchorSession,
        sessions: Callable[[], dict[str, int]],
        broadcast: Callable[[], BroadcastStats] | None,
    ) -> None:
        self.session = session
        self.sessions = sessions
        self.broadcast = broadcast

    def collect(self) -> Iterator[Metric]:
        s = self.session
        fps = GaugeMetricFamily("anchor_fps", "Frames released per second (recent window)")
        fps.add_metric([], s.recorder.fps())
        yield fps
        target = GaugeMetricFamily("anchor_fps_target", "Configured frame rate")
        target.add_metric([], s.fps)
        yield target
        look = GaugeMetricFamily("anchor_lookahead_ms", "TCN lookahead (future audio a frame waits for)")
        look.add_metric([], s.models.lookahead_ms)
        yield look
        hop = GaugeMetricFamily("anchor_hop_ms", "TCN window hop")
        hop.add_metric([], s.models.streaming.hop_ms)
        yield hop
        lat = GaugeMetricFamily(
            "anchor_live_latency_target_ms", "Audio-in to frame-out target for live input"
        )
        lat.add_metric([], 1000 * s.live_latency_s)
        yield lat
        depth = GaugeMetricFamily("anchor_queue_depth_ms", "Media queued per edge", labels=["queue"])
        for name, ms in s.queue_depths_ms().items():
            depth.add_metric([name], ms)
        yield depth
        dropped = CounterMetricFamily(
            "anchor_dropped", "Items dropped per edge (viewer_*: by slow viewers; flushed: by interrupts)",
            labels=["queue"],
        )
        for name, n in s.dropped_counts().items():
            dropped.add_metric([name], n)
        yield dropped
        sessions = GaugeMetricFamily("anchor_sessions", "Connected clients", labels=["kind"])
        for kind, n in self.sessions().items():
            sessions.add_metric([kind], n)
        yield sessions
        active = GaugeMetricFamily("anchor_input_active", "1 while an input is pushing audio")
        active.add_metric([], 1.0 if s.active_input else 0.0)
        yield active
        frame = GaugeMetricFamily("anchor_frame_index", "Index of the next frame on the output timeline")
        frame.add_metric([], s.player.next_index)
        yield frame
        if self.broadcast is not None:
            b = self.broadcast()
            for name, help_text, value in (
                ("anchor_viewers", "Connected viewers (WebRTC + WHEP)", b.viewers),
                ("anchor_max_viewers", "Admission limit (broadcast.max_viewers)", b.max_viewers),
                ("anchor_encode_ms", "Shared encoder time per frame, all codecs + audio", b.encode_ms),
            ):
                g = GaugeMetricFamily(name, help_text)
                g.add_metric([], value)
                yield g
            for name, help_text, value in (
                ("anchor_encoded_frames", "Frames through the shared encoder", b.frames_encoded),
                ("anchor_encode_skipped", "Frames whose picture the encoder skipped", b.video_skipped),
                ("anchor_keyframes_forced", "Keyframes forced (new viewers, PLI/FIR)", b.keyframes_forced),
                ("anchor_bytes_sent", "Encoded bytes handed to viewers' senders", b.bytes_sent),
                ("anchor_viewer_video_dropped", "Encoded frames lost by slow viewers", b.viewer_video_dropped),
                ("anchor_evictions", "Viewers evicted for sending no RTCP", b.evictions),
                ("anchor_rejected_full", "Offers refused with 503 (max_viewers)", b.rejected_full),
            ):
                c = CounterMetricFamily(name, help_text)
                c.add_metric([], value)
                yield c


class AnchorMetrics:
    """Per-app registry; also a pipeline observer (add it to the session's observers)."""

    def __init__(
        self,
        session: AnchorSession,
        sessions: Callable[[], dict[str, int]],
        broadcast: Callable[[], BroadcastStats] | None = None,
    ) -> None:
        self.registry = CollectorRegistry()
        self.stage_latency = Histogram(
            "anchor_stage_latency_seconds",
            "Per-stage latency of speech frames (analysis includes the lookahead wait; total = "
            "audio in to frame out)",
            ["stage"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.frames = Counter(
            "anchor_frames", "Frames released, by kind", ["kind"], registry=self.registry
        )
        self.events = Counter(
            "anchor_events", "Pipeline events (underrun, resync, skipped, interrupt, stage_error)",
            ["event"], registry=self.registry,
        )
        self.registry.register(_StateCollector(session, sessions, broadcast))

    def on_frame(self, frame: OutputFrame) -> None:
        self.frames.labels("speech" if frame.speech else "idle").inc()
        if frame.speech:
            for stage, seconds in stage_latencies(frame.timestamps).items():
                self.stage_latency.labels(stage).observe(max(0.0, seconds))

    def on_event(self, name: str, count: int = 1) -> None:
        self.events.labels(name).inc(count)

    def render(self) -> bytes:
        return generate_latest(self.registry)
