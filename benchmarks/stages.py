"""Per-stage latency at real-time pacing (p50/p95/p99, ms).

Two views of the same stages:

- `functions`: each stage function timed call by call in one thread, paced like a live input
  (20 ms audio chunks, one 40 ms video frame per tick, absolute deadlines): Opus decode of the
  browser's 48 kHz packets (aiortc), resample 48 -> 16 kHz, VAD, MFCC, TCN step (the sliding
  window scheduler with the live hop; `tcn_window` counts only pushes that ran a window), facial
  map, renderer (batch 1), compositor, VP8 encode (aiortc, RGB frame in).
- `pipeline`: the real `AnchorSession` fed live, its observers' spans (audio in -> analysed ->
  render start -> rendered -> released) for speech frames, plus one viewer's VP8 encode.
"""

from __future__ import annotations

import logging
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from anchor.config import AnchorConfig
from benchmarks.common import BenchOptions, percentiles, pyplot, save_figure
from benchmarks.inputs import AvatarInput, effective_config, resolve_avatar, speech_audio

log = logging.getLogger(__name__)

FUNCTION_STAGES = ("decode", "resample", "vad", "mfcc", "tcn_step", "tcn_window", "facial_map",
                   "renderer", "compositor", "video_encode")
PIPELINE_SPANS = ("analysis", "render_wait", "render", "playout", "viewer_queue", "video_encode",
                  "total")


def durations(opts: BenchOptions) -> tuple[float, float]:
    """(seconds of paced function timing, seconds of live pipeline audio)."""
    if opts.tiny:
        return 1.0, 2.0
    if opts.quick:
        return 10.0, 12.0
    return 60.0, 60.0


def _opus_packets(audio48: np.ndarray) -> list[bytes]:
    import av
    from aiortc.codecs.opus import OpusEncoder

    enc = OpusEncoder()
    pcm = np.clip(audio48 * 32767, -32768, 32767).astype(np.int16)
    packets: list[bytes] = []
    for j in range(len(pcm) // 960):
        frame = av.AudioFrame.from_ndarray(pcm[None, j * 960 : (j + 1) * 960], format="s16",
                                           layout="mono")
        frame.sample_rate = 48000
        frame.pts = j * 960
        frame.time_base = Fraction(1, 48000)
        payloads, _ = enc.encode(frame)
        packets += payloads
    return packets


def time_functions(avatar: AvatarInput, cfg: AnchorConfig, seconds: float,
                   threads: int) -> dict[str, Any]:
    """Every stage function, paced at real time in one thread; per-call milliseconds."""
    from aiortc.codecs.opus import OpusDecoder
    from aiortc.jitterbuffer import JitterFrame

    from anchor.audio.mfcc import MfccExtractor, silence_mfcc
    from anchor.audio.resample import StreamResampler, resample
    from anchor.audio.vad import VoiceActivityDetector
    from anchor.mouth.runtime import MouthOnnx
    from anchor.mouth.streaming import MouthWindowScheduler
    from anchor.render.engine import create_engine
    from benchmarks.live import Vp8FrameEncoder

    bundle = avatar.bundle
    ecfg = effective_config(cfg, bundle)
    hop = cfg.server.hop_frames  # the live hop
    import dataclasses

    streaming = dataclasses.replace(ecfg.streaming, hop_frames=hop)
    audio16, source = speech_audio(seconds + 1.0)
    audio48 = resample(audio16, 16000, 48000)
    packets = _opus_packets(audio48)
    engine = create_engine(bundle, ecfg)
    engine.warmup()
    mouth = MouthOnnx(bundle.mouth_onnx, threads=1)
    decoder = OpusDecoder()
    resampler = StreamResampler(48000, 16000)
    vad = VoiceActivityDetector(ecfg.audio)
    mfcc = MfccExtractor(ecfg.audio)
    scheduler = MouthWindowScheduler(streaming, ecfg.mouth_model, mouth, silence_mfcc(ecfg.audio))
    encoder = Vp8FrameEncoder(ecfg.video.fps)
    times: dict[str, list[float]] = {k: [] for k in FUNCTION_STAGES}
    ticks: list[float] = []
    pending16 = np.zeros(0, np.float32)
    feats = np.zeros(ecfg.mouth_model.pca_dims, np.float32)
    spf = ecfg.audio.sample_rate // ecfg.video.fps
    n_ticks = int(seconds * ecfg.video.fps)
    late = 0
    t_start = time.perf_counter()

    def timed(name: str, fn: Any, *args: Any) -> Any:
        t0 = time.perf_counter()
        out = fn(*args)
        times[name].append(1000 * (time.perf_counter() - t0))
        return out

    for k in range(n_ticks):
        due = t_start + k / ecfg.video.fps
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        elif delay < -1.0 / ecfg.video.fps:
            late += 1
        t_tick = time.perf_counter()
        for j in (2 * k, 2 * k + 1):  # two 20 ms packets per 40 ms frame
            frames = timed("decode", decoder.decode, JitterFrame(data=packets[j], timestamp=j * 960))
            pcm = np.concatenate([f.to_ndarray().reshape(-1, 2).mean(axis=1) for f in frames])
            x16 = timed("resample", resampler.process, (pcm / 32768.0).astype(np.float32))
            rows = timed("mfcc", mfcc.push, x16)
            t0 = time.perf_counter()
            emitted = scheduler.push(rows)
            dt = 1000 * (time.perf_counter() - t0)
            times["tcn_step"].append(dt)
            if emitted:
                times["tcn_window"].append(dt)
                feats = emitted[-1][1]
            pending16 = np.concatenate([pending16, x16])
        while len(pending16) >= spf:
            timed("vad", vad.push, pending16[:spf])
            pending16 = pending16[spf:]
        tidx = engine.idle_loop.index(k)
        maps = timed("facial_map", engine.maps, feats[None], [tidx])
        faces = timed("renderer", engine.backend.infer, maps)
        frames_out = timed("compositor", engine.compose, faces, [tidx])
        times["video_encode"].append(1000 * encoder.encode(frames_out[0]))
        ticks.append(1000 * (time.perf_counter() - t_tick))
    engine.close()
    return {
        "seconds": seconds,
        "ticks": n_ticks,
        "late_ticks": late,
        "audio": source,
        "hop_frames": hop,
        "backend": engine.backend.name,
        "stages_ms": {k: percentiles(v) for k, v in times.items()},
        "tick_ms": percentiles(ticks),
        "vp8_kbit_per_s": encoder.bytes * 8 / 1000 / max(1e-9, n_ticks / ecfg.video.fps),
    }


def time_pipeline(avatar: AvatarInput, cfg: AnchorConfig, seconds: float,
                  tail_s: float | None = None) -> dict[str, Any]:
    """The real session, fed live; spans of speech frames from its observers (+ the viewer)."""
    from anchor.pipeline.items import STAMP_OUT
    from anchor.pipeline.observers import stage_latencies
    from benchmarks.live import STAMP_SENT, load_pipeline_models, run_live

    models = load_pipeline_models(avatar.bundle.path, cfg)
    audio, source = speech_audio(seconds)
    run = run_live(models, cfg, audio, tail_s=tail_s)
    spans: dict[str, list[float]] = {k: [] for k in PIPELINE_SPANS}
    for f in run.frames:
        if not f.speech:
            continue
        for name, value in stage_latencies(f.stamps).items():
            if name != "total":
                spans[name].append(1000 * value)
        if STAMP_SENT in f.stamps and STAMP_OUT in f.stamps:
            spans["video_encode"].append(1000 * f.encode_s)
            spans["viewer_queue"].append(
                1000 * (f.stamps[STAMP_SENT] - f.stamps[STAMP_OUT] - f.encode_s))
        if "audio_in" in f.stamps and STAMP_SENT in f.stamps:
            spans["total"].append(1000 * (f.stamps[STAMP_SENT] - f.stamps["audio_in"]))
    out_times = [f.stamps[STAMP_OUT] for f in run.frames if STAMP_OUT in f.stamps]
    fps = (len(out_times) - 1) / (out_times[-1] - out_times[0]) if len(out_times) > 1 else 0.0
    events = {k: v for k, v in run.stats.items()
              if k in ("resync", "skipped", "underrun", "stage_error", "interrupt")}
    return {
        "seconds": seconds,
        "audio": source,
        "lookahead_ms": run.lookahead_ms,
        "hop_frames": run.hop_frames,
        "live_latency_target_ms": run.live_latency_ms,
        "frames_out": len(run.frames),
        "speech_frames": sum(f.speech for f in run.frames),
        "output_fps": fps,
        "events": events,
        "viewer_video_dropped": run.viewer_dropped,
        "spans_ms": {k: percentiles(v) for k, v in spans.items()},
        "span_definitions": {
            "analysis": "audio in -> mouth features (lookahead wait + MFCC/VAD/TCN)",
            "render_wait": "features -> render worker picks the frame up",
            "render": "facial map + renderer + compositor",
            "playout": "rendered -> released at its deadline (jitter buffer)",
            "viewer_queue": "released -> the viewer's encoder takes it",
            "video_encode": "VP8 encode (aiortc) of the composited frame",
            "total": "audio in -> encoded frame leaves the server",
        },
        "backend": run.info.get("backend"),
    }


def run(cfg: AnchorConfig, opts: BenchOptions) -> dict[str, Any]:
    avatar = resolve_avatar(opts.avatar, cfg, seed=opts.seed)
    f_seconds, p_seconds = durations(opts)
    log.info("stages: paced stage functions for %.0f s", f_seconds)
    functions = time_functions(avatar, cfg, f_seconds, opts.threads)
    log.info("stages: live pipeline for %.0f s of audio", p_seconds)
    pipeline = time_pipeline(avatar, cfg, p_seconds, tail_s=1.0 if opts.tiny else None)
    return {"avatar": avatar.describe(), "functions": functions, "pipeline": pipeline}


def plot(figures: dict[str, Any], out_dir: Path) -> list[Path]:
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    st = figures["functions"]["stages_ms"]
    names = [k for k in FUNCTION_STAGES if st[k].get("n")]
    y = np.arange(len(names))
    for q, off, c in (("p50", -0.25, "C0"), ("p95", 0.0, "C1"), ("p99", 0.25, "C3")):
        ax1.barh(y + off, [st[k][q] for k in names], height=0.25, color=c, label=q)
    ax1.set_yticks(y, names)
    ax1.invert_yaxis()
    ax1.set_xlabel("ms per call")
    ax1.set_title("stage functions, paced at real time")
    ax1.legend()
    sp = figures["pipeline"]["spans_ms"]
    names2 = [k for k in PIPELINE_SPANS if sp[k].get("n")]
    y2 = np.arange(len(names2))
    for q, off, c in (("p50", -0.25, "C0"), ("p95", 0.0, "C1"), ("p99", 0.25, "C3")):
        ax2.barh(y2 + off, [sp[k][q] for k in names2], height=0.25, color=c, label=q)
    ax2.set_yticks(y2, names2)
    ax2.invert_yaxis()
    ax2.set_xlabel("ms (speech frames)")
    ax2.set_title(f"live pipeline spans (lookahead {figures['pipeline']['lookahead_ms']:.0f} ms, "
                  f"hop {figures['pipeline']['hop_frames']})")
    ax2.legend()
    fig.tight_layout()
    return [save_figure(fig, out_dir / "stages.png")]


def summary(figures: dict[str, Any]) -> str:
    lines = [f"avatar: {figures['avatar']['source']} ({figures['avatar']['name']})",
             f"{'stage function':<16} {'n':>5} {'p50':>8} {'p95':>8} {'p99':>8}  (ms)"]
    for k, v in figures["functions"]["stages_ms"].items():
        if v.get("n"):
            lines.append(f"{k:<16} {v['n']:>5} {v['p50']:>8.2f} {v['p95']:>8.2f} {v['p99']:>8.2f}")
    p = figures["pipeline"]
    lines.append(f"live pipeline: {p['output_fps']:.1f} fps out, events {p['events']}")
    lines.append(f"{'span':<16} {'n':>5} {'p50':>8} {'p95':>8} {'p99':>8}  (ms)")
    for k, v in p["spans_ms"].items():
        if v.get("n"):
            lines.append(f"{k:<16} {v['n']:>5} {v['p50']:>8.1f} {v['p95']:>8.1f} {v['p99']:>8.1f}")
    return "\n".join(lines)
