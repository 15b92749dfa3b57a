"""How many simultaneous anchors hold 25 fps with cross-session batching in one renderer worker.

N sessions, each with its own audio (different stretches of speech) and its own analysis (VAD +
MFCC + sliding TCN with the live hop) and VP8 encoder, share one avatar engine. Every 40 ms tick,
paced on absolute deadlines, the renderer worker takes one frame from each session, draws the N
facial maps, runs ONE backend.infer on the (N, R, R, 3) batch and composites the N faces. N grows
until the tick no longer fits in a frame period (p95 > 40 ms).

Two figures, since on a small CPU everything shares the same cores:
- `renderer_worker`: facial maps + one batched infer + compositing (the worker's own tick);
- `whole_tick`: that plus every session's analysis of its 40 ms of audio and its VP8 encode.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from anchor.config import AnchorConfig
from benchmarks.common import BenchOptions, percentiles, pyplot, save_figure
from benchmarks.inputs import effective_config, resolve_avatar, speech_audio

log = logging.getLogger(__name__)

PARTS = ("analysis", "facial_map", "renderer", "compositor", "video_encode")


def plan(opts: BenchOptions) -> tuple[float, int]:
    """(seconds per N, largest N tried)."""
    if opts.tiny:
        return 0.6, 2
    if opts.quick:
        return 4.0, 16
    return 15.0, 64


def measure_n(n: int, engine: Any, analyzers: list[Any], audios: list[np.ndarray],
              encoders: list[Any], seconds: float, fps: int) -> dict[str, Any]:
    spf = analyzers[0].samples_per_frame
    feats = [np.zeros(engine.bundle.pca.dims, np.float32) for _ in range(n)]
    parts: dict[str, list[float]] = {k: [] for k in PARTS}
    worker, whole = [], []
    n_ticks = max(2, int(seconds * fps))
    late = 0
    t_start = time.perf_counter()
    for k in range(n_ticks):
        due = t_start + k / fps
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        elif delay < -1.0 / fps:
            late += 1
        t0 = time.perf_counter()
        for i in range(n):  # each session's 40 ms of audio, in two 20 ms chunks
            a = audios[i]
            s = (k * spf) % (len(a) - spf)
            for half in (a[s : s + spf // 2], a[s + spf // 2 : s + spf]):
                for frame in analyzers[i].push(half, time.monotonic()):
                    feats[i] = frame.features
        t1 = time.perf_counter()
        tidx = [engine.idle_loop.index(k + 7 * i) for i in range(n)]  # sessions out of phase
        maps = engine.maps(np.stack(feats), tidx)
        t2 = time.perf_counter()
        faces = engine.backend.infer(maps)  # one call for all sessions
        t3 = time.perf_counter()
        frames = engine.compose(faces, tidx)
        t4 = time.perf_counter()
        for i in range(n):
            encoders[i].encode(frames[i])
        t5 = time.perf_counter()
        for name, dt in zip(PARTS, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
            parts[name].append(1000 * dt)
        worker.append(1000 * (t4 - t1))
        whole.append(1000 * (t5 - t0))
    elapsed = time.perf_counter() - t_start
    period = 1000.0 / fps
    w, h = percentiles(worker), percentiles(whole)
    return {
        "sessions": n,
        "ticks": n_ticks,
        "late_ticks": late,
        "achieved_fps_per_session": n_ticks / elapsed,
        "renderer_worker_ms": w,
        "whole_tick_ms": h,
        "parts_ms": {k: percentiles(v) for k, v in parts.items()},
        "renderer_worker_holds_25fps": w["p95"] <= period,
        "whole_tick_holds_25fps": h["p95"] <= period,
    }


def run(cfg: AnchorConfig, opts: BenchOptions) -> dict[str, Any]:
    from anchor.audio.mfcc import silence_mfcc  # noqa: F401  (analysis pads with it)
    from anchor.mouth.runtime import MouthOnnx
    from anchor.pipeline.analysis import SpeechAnalyzer
    from anchor.render.engine import create_engine
    from benchmarks.live import Vp8FrameEncoder

    avatar = resolve_avatar(opts.avatar, cfg, seed=opts.seed)
    ecfg = effective_config(cfg, avatar.bundle)
    seconds, n_max = plan(opts)
    hop = cfg.server.hop_frames  # the live hop
    streaming = dataclasses.replace(ecfg.streaming, hop_frames=hop)
    # the worker batches all sessions in one call: let the backend take the largest batch
    ecfg = dataclasses.replace(ecfg, backend=dataclasses.replace(ecfg.backend, max_batch=n_max))
    engine = create_engine(avatar.bundle, ecfg)
    engine.warmup()
    mouth = MouthOnnx(avatar.bundle.mouth_onnx, threads=1)
    fps = ecfg.video.fps
    speech, source = speech_audio(max(20.0, seconds * 2))
    rows: list[dict[str, Any]] = []
    for n in range(1, n_max + 1):
        analyzers = [SpeechAnalyzer(ecfg.audio, streaming, ecfg.mouth_model, mouth, fps=fps)
                     for _ in range(n)]
        # each session its own audio: the recording from a different point
        audios = [np.roll(speech, -int(i * 3.7 * ecfg.audio.sample_rate)) for i in range(n)]
        encoders = [Vp8FrameEncoder(fps) for _ in range(n)]
        engine.backend.infer(engine.maps(np.zeros((n, engine.bundle.pca.dims), np.float32),
                                         list(range(n))))  # warm this batch size
        log.info("concurrency: %d session(s)", n)
        row = measure_n(n, engine, analyzers, audios, encoders, seconds, fps)
        rows.append(row)
        if not row["renderer_worker_holds_25fps"] and not row["whole_tick_holds_25fps"]:
            break
    engine.close()
    worker_ok = [r["sessions"] for r in rows if r["renderer_worker_holds_25fps"]]
    whole_ok = [r["sessions"] for r in rows if r["whole_tick_holds_25fps"]]
    return {
        "avatar": avatar.describe(),
        "audio": source,
        "backend": engine.backend.name,
        "backend_threads": ecfg.backend.threads,
        "hop_frames": hop,
        "seconds_per_n": seconds,
        "criterion": "p95 tick time <= 40 ms (one frame period at 25 fps)",
        "max_sessions_renderer_worker": max(worker_ok) if worker_ok else 0,
        "max_sessions_whole_tick": max(whole_ok) if whole_ok else 0,
        "stopped_at": rows[-1]["sessions"],
        "by_sessions": rows,
    }


def plot(figures: dict[str, Any], out_dir: Path) -> list[Path]:
    plt = pyplot()
    rows = figures["by_sessions"]
    ns = [r["sessions"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, label, c in (("renderer_worker_ms", "renderer worker (maps + infer + compose)", "C0"),
                          ("whole_tick_ms", "whole tick (+ analysis + VP8 encode)", "C1")):
        ax.plot(ns, [r[key]["p50"] for r in rows], marker="o", color=c, label=f"{label} p50")
        ax.plot(ns, [r[key]["p95"] for r in rows], marker="^", ls=":", color=c, label="p95")
    ax.axhline(40, color="0.5", ls="--", label="40 ms (25 fps)")
    ax.set_xlabel("simultaneous anchors (one batched infer per tick)")
    ax.set_ylabel("tick time (ms)")
    ax.set_title(f"concurrency, {figures['backend']} ({figures['avatar']['renderer_preset']})")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return [save_figure(fig, out_dir / "concurrency.png")]


def summary(figures: dict[str, Any]) -> str:
    lines = [f"{'N':>3} {'worker p50':>10} {'p95':>7} {'whole p50':>10} {'p95':>7} {'fps/sess':>9}"]
    for r in figures["by_sessions"]:
        lines.append(f"{r['sessions']:>3} {r['renderer_worker_ms']['p50']:>10.1f} "
                     f"{r['renderer_worker_ms']['p95']:>7.1f} {r['whole_tick_ms']['p50']:>10.1f} "
                     f"{r['whole_tick_ms']['p95']:>7.1f} {r['achieved_fps_per_session']:>9.1f}")
    lines.append(f"max anchors at 25 fps: renderer worker {figures['max_sessions_renderer_worker']}, "
                 f"whole tick {figures['max_sessions_whole_tick']}")
    return "\n".join(lines)
