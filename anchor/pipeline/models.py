"""What the pipeline loads for one avatar: `PipelineModels` bundles the per-frame engine
(anchor.render.engine) with the mouth model, the configs the analysis stage needs, the phoneme
shaper and head motion; `load_models` builds it from an avatar bundle. Also the live latency
budget (`live_latency_ms`), written down once.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from anchor.compose.motion import GestureSet, HeadWarper, MotionDirector, head_motion_enabled
from anchor.config import (
    AnchorConfig,
    AudioConfig,
    MotionConfig,
    MouthModelConfig,
    StreamingConfig,
)
from anchor.mouth.streaming import InferFn
from anchor.mouth.visemes import VisemeShaper
from anchor.render.engine import FrameEngine

log = logging.getLogger(__name__)


@dataclass
class PipelineModels:
    """Everything the stages need to turn audio into frames for one avatar."""

    engine: FrameEngine
    infer: InferFn
    audio: AudioConfig
    streaming: StreamingConfig
    mouth_model: MouthModelConfig
    fps: int
    name: str = "avatar"
    info: dict[str, Any] = dataclasses.field(default_factory=dict)
    # Phoneme constraints for text input (None: the avatar's mouth follows the TCN alone).
    shaper: VisemeShaper | None = None
    # Head motion and keyword gestures (none without a warper).
    motion: MotionConfig = dataclasses.field(default_factory=MotionConfig)
    head_motion: bool = False
    gestures: GestureSet | None = None
    warper: HeadWarper | None = None

    def new_motion(self) -> MotionDirector | None:
        """A fresh director for one output timeline (a session or an offline render)."""
        if self.warper is None:
            return None
        director = MotionDirector(self.motion, self.fps, head=self.head_motion,
                                  gestures=self.gestures or GestureSet())
        return director if director.active else None

    @property
    def samples_per_frame(self) -> int:
        return self.audio.sample_rate // self.fps

    @property
    def lookahead_ms(self) -> float:
        return self.streaming.lookahead_ms


MARGIN_LIMITS_MS = (40.0, 200.0)


def measured_margin_ms(models: PipelineModels, frames: int = 12) -> float:
    """The live jitter budget for this avatar on this machine: twice the p90 of the time one
    speech frame takes (facial map + renderer + compositor, what runs between a frame's features
    and its deadline) plus 15 ms for the encoder and scheduling, within MARGIN_LIMITS_MS.
    Measured once per models (cached in `info`), after warm-up."""
    cached = models.info.get("measured_margin_ms")
    if isinstance(cached, float):
        return cached
    import time

    engine = models.engine
    feats = np.zeros((1, models.mouth_model.pca_dims), np.float32)
    costs = []
    for i in range(frames + 2):
        t0 = time.perf_counter()
        engine.compose(engine.infer(engine.maps(feats, [i])), [i])
        costs.append(time.perf_counter() - t0)
    p90 = float(np.percentile(costs[2:], 90)) * 1000.0  # the first two warm caches up
    margin = float(np.clip(2.0 * p90 + 15.0, *MARGIN_LIMITS_MS))
    models.info["measured_margin_ms"] = margin
    log.info("live latency margin %.0f ms (frame cost p90 %.1f ms)", margin, p90)
    return margin


def live_latency_ms(models: PipelineModels, margin_ms: float | None) -> float:
    """Audio in -> frame out target for live input: hop + lookahead + margin (measured when
    `margin_ms` is None). The one place this budget is written down."""
    s = models.streaming
    margin = measured_margin_ms(models) if margin_ms is None else float(margin_ms)
    return (s.hop_frames + s.right_context_frames) * 1000.0 / models.fps + margin


def merge_streaming(bundle: StreamingConfig, user: StreamingConfig) -> StreamingConfig:
    """The bundle's streaming settings, except fields the user changed from the defaults."""
    default = StreamingConfig()
    changes = {
        f.name: getattr(user, f.name)
        for f in dataclasses.fields(StreamingConfig)
        if getattr(user, f.name) != getattr(default, f.name)
    }
    return dataclasses.replace(bundle, **changes) if changes else bundle


def mouth_box(bundle: Any, margin: float = 0.25) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) frame pixels covering the mouth in every template frame (+ margin).

    Template landmarks are in crop pixels (templates' edge size); body face box i says where
    crop i lands in body frame i. Used by clients to watch the mouth (e.g. the browser test).
    """
    size = float(bundle.templates[0].edges.shape[0])
    xs: list[float] = []
    ys: list[float] = []
    for t, box in zip(bundle.templates, bundle.body.face_boxes, strict=True):
        pts = np.asarray(t.crop_landmarks, dtype=np.float64)[48:68] / size
        bx0, by0, bx1, by1 = (float(v) for v in box)
        xs += list(bx0 + pts[:, 0] * (bx1 - bx0))
        ys += list(by0 + pts[:, 1] * (by1 - by0))
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    mx, my = margin * (x1 - x0), margin * (y1 - y0)
    w, h = bundle.body.width, bundle.body.height
    return (
        max(0, int(x0 - mx)), max(0, int(y0 - my)), min(w, int(x1 + mx + 1)), min(h, int(y1 + my + 1))
    )


def load_models(
    bundle_path: str | Path | None,
    cfg: AnchorConfig,
    *,
    live: bool = False,
    hop_frames: int | None = None,
    warmup: bool = True,
) -> PipelineModels:
    """Load an avatar bundle (default avatar when None) into an engine + mouth model.

    The bundle's own config fixes what its models were trained with (audio, mouth model, fps);
    runtime choices (backend, compose, server) come from `cfg`. The TCN windows: `live` takes
    the live pipeline's hop and lookahead (`server.hop_frames`, `server.lookahead_frames`);
    offline keeps the bundle's `streaming` windows (with the user's changes to them).
    `hop_frames` (tests, benchmarks) sets the hop alone.
    """
    from anchor.avatar.bundle import default_avatar_path, load_avatar
    from anchor.mouth.runtime import MouthOnnx
    from anchor.render.engine import create_engine

    path = Path(bundle_path) if bundle_path is not None else default_avatar_path()
    bundle = load_avatar(path)
    bcfg = bundle.config
    streaming = merge_streaming(bcfg.streaming, cfg.streaming)
    if live:
        streaming = dataclasses.replace(streaming, hop_frames=cfg.server.hop_frames,
                                        right_context_frames=cfg.server.lookahead_frames)
    if hop_frames is not None:
        streaming = dataclasses.replace(streaming, hop_frames=int(hop_frames))
    streaming.validate()
    # The engine composes with the user's compose/backend settings over the bundle's geometry.
    engine_cfg = dataclasses.replace(bcfg, compose=cfg.compose, backend=cfg.backend)
    engine = create_engine(bundle, engine_cfg)
    mouth = MouthOnnx(bundle.mouth_onnx, threads=1)
    if warmup:
        engine.warmup()
        mouth(np.zeros((1, bcfg.mouth_model.window_in, bcfg.mouth_model.n_mfcc), np.float32))
    log.info(
        "avatar %s: lookahead %.0f ms, TCN hop %d frames (%.0f ms)",
        bundle.name, streaming.lookahead_ms, streaming.hop_frames, streaming.hop_ms,
    )
    head = head_motion_enabled(cfg.motion, len(bundle.templates), bundle.fps)
    gestures = bundle.gestures if cfg.motion.gestures else None
    warper = None
    if head or (gestures is not None and len(gestures)):
        w, h = engine.frame_size
        box = np.median(bundle.body.face_boxes, axis=0)
        warper = HeadWarper(w, h, [float(v) for v in box])
        log.info("avatar %s: head motion %s, %d keyword gestures", bundle.name,
                 "on" if head else "off", len(gestures) if gestures is not None else 0)
    return PipelineModels(
        engine=engine,
        infer=mouth,
        audio=bcfg.audio,
        streaming=streaming,
        mouth_model=bcfg.mouth_model,
        fps=bundle.fps,
        name=bundle.name,
        shaper=VisemeShaper(
            bundle.pca, strength=cfg.tts.phoneme_mouth,
            reference=np.mean([t.mouth_mean for t in bundle.templates], axis=0),
        ) if cfg.tts.phoneme_mouth > 0 else None,
        motion=cfg.motion,
        head_motion=head,
        gestures=gestures,
        warper=warper,
        info={
            "path": str(path),
            "backend": getattr(engine.backend, "name", "?"),
            "mouth_box": mouth_box(bundle),
            "frame_size": engine.frame_size,
        },
    )
