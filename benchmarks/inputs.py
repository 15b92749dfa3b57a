"""Inputs every suite needs, resolved the same way everywhere and recorded in the results.

- The avatar: `--avatar BUNDLE`, else the committed default avatar (anchor/avatar/default/),
  else a bundle built here from random-weight models (torch needed) so that timing suites still
  run on a clean clone; the figures then say so (`avatar.source == "random-weights"`).
- Speech: ../shared/media/speech (real recordings), else a synthetic voiced signal (harmonics
  with a syllable envelope) that webrtcvad classifies as speech.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from anchor.config import AnchorConfig, to_dict
from anchor.errors import BenchError

if TYPE_CHECKING:
    from anchor.avatar.bundle import AvatarBundle

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
SPEECH_FILES = ("musetalk_eng.wav", "vexpress_intro_tts.mp3", "musetalk_sun.wav")


def shared_media_dir() -> Path | None:
    """../shared/media next to the checkout, or None on a clean clone."""
    path = REPO_ROOT.parent / "shared" / "media"
    return path if (path / "clips").is_dir() else None


def cache_dir() -> Path:
    """Where built-on-demand inputs (random-weight bundles, small datasets) are kept."""
    path = Path(tempfile.gettempdir()) / "anchor-bench"
    path.mkdir(parents=True, exist_ok=True)
    return path


# --------------------------------------------------------------------------------------------
# avatar


@dataclass(frozen=True)
class AvatarInput:
    bundle: AvatarBundle
    source: str  # "option" | "default" | "random-weights"
    note: str

    def describe(self) -> dict[str, Any]:
        b = self.bundle
        return {
            "source": self.source,
            "path": str(b.path),
            "name": b.name,
            "note": self.note,
            "face_resolution": b.face_resolution,
            "frame_size": [b.body.width, b.body.height],
            "templates": b.n_templates,
            "renderer_preset": b.config.renderer.preset,
            "lookahead_ms": b.lookahead_ms,
        }


def resolve_avatar(avatar: Path | None, cfg: AnchorConfig, *, seed: int = 0) -> AvatarInput:
    from anchor.avatar.bundle import MANIFEST, default_avatar_path, load_avatar

    if avatar is not None:
        return AvatarInput(load_avatar(avatar), "option", f"--avatar {avatar}")
    default = default_avatar_path()
    if (default / MANIFEST).is_file():
        return AvatarInput(load_avatar(default), "default", "the committed default avatar")
    path = random_weight_bundle(cfg, seed=seed)
    return AvatarInput(
        load_avatar(path), "random-weights",
        f"no avatar given and {default} does not exist yet: a bundle with random-weight "
        f"mouth and renderer models ({cfg.renderer.preset}) and synthetic templates, so timings "
        "are representative but rendered faces are noise",
    )


def effective_config(cfg: AnchorConfig, bundle: AvatarBundle) -> AnchorConfig:
    """The bundle fixes what its models were built with (mouth model, renderer, fps, face);
    everything about running them (streaming, backend, compose, server, audio) comes from cfg."""
    b = bundle.config
    return dataclasses.replace(
        cfg, mouth_model=b.mouth_model, renderer=b.renderer, video=b.video, face=b.face
    )


def config_key(data: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


def random_renderer_files(cfg: AnchorConfig, out_dir: Path, *, seed: int = 0,
                          checkpoint: bool = True) -> tuple[Path, Path | None]:
    """A random-weight generator of cfg.renderer: (renderer.onnx, checkpoint.pt or None).

    Speed does not depend on the weights, so a benchmark of a preset needs no training.
    Cached by the renderer config.
    """
    import torch

    from anchor.render.export import export_generator
    from anchor.render.networks import build_generator

    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / "renderer.onnx"
    ckpt_path = out_dir / "renderer.pt"
    if onnx_path.is_file() and (ckpt_path.is_file() or not checkpoint):
        return onnx_path, ckpt_path if checkpoint else None
    torch.manual_seed(seed)
    gen = build_generator(cfg.renderer).eval()
    export_generator(gen, cfg.renderer, onnx_path, anchor_config=to_dict(cfg), verify=False)
    if checkpoint:
        tmp = ckpt_path.with_suffix(".pt.tmp")
        torch.save({"config": to_dict(cfg), "generator": gen.state_dict()}, tmp)
        tmp.replace(ckpt_path)
    return onnx_path, ckpt_path if checkpoint else None


def random_mouth_onnx(cfg: AnchorConfig, out: Path, *, seed: int = 0) -> Path:
    """A random-weight audio-to-mouth network of cfg.mouth_model, exported like a trained one."""
    import torch

    from anchor.mouth.export import export_module
    from anchor.mouth.models import MouthInference, build_generator
    from anchor.mouth.runtime import META_CONFIG, META_KIND

    if out.is_file():
        return out
    mm = cfg.mouth_model
    torch.manual_seed(seed)
    gen = build_generator(mm).eval()
    # MFCC of speech are O(10); standardise roughly and keep outputs in a PCA-like range.
    module = MouthInference(
        gen, torch.zeros(mm.n_mfcc), torch.full((mm.n_mfcc,), 10.0), torch.full((mm.pca_dims,), 0.05)
    )
    meta = {META_CONFIG: json.dumps(to_dict(cfg)), META_KIND: f"random-{mm.kind}"}
    return export_module(module, out, mm.window_in, mm.n_mfcc, meta)


def random_weight_bundle(
    cfg: AnchorConfig,
    *,
    seed: int = 0,
    n_frames: int = 25,
    template_size: int = 256,
    frame_size: tuple[int, int] = (576, 768),
) -> Path:
    """Build (or reuse) a valid bundle with random-weight models and synthetic templates.

    The body frames have the shared presenter template's size (576 x 768) so compositing and
    encoding cost what they would with a real avatar.
    """
    import cv2

    from anchor.avatar.bundle import MANIFEST, write_avatar
    from anchor.build.synth import synthetic_landmarks
    from anchor.compose.body import BodyTemplate
    from anchor.face.facial_map import TemplateFrame
    from anchor.face.jaw import JawRegression
    from anchor.mouth.features import MouthPca, normalise_mouth

    spec = {"renderer": to_dict(cfg.renderer), "mouth": to_dict(cfg.mouth_model),
            "streaming": to_dict(cfg.streaming), "seed": seed, "frames": n_frames,
            "template": template_size, "size": list(frame_size), "v": 1}
    root = cache_dir() / f"avatar-random-{config_key(spec)}"
    out = root / "bundle"
    if (out / MANIFEST).is_file():
        return out
    log.info("building a random-weight avatar bundle in %s", out)
    parts = root / "parts"
    parts.mkdir(parents=True, exist_ok=True)
    renderer, _ = random_renderer_files(cfg, parts, seed=seed, checkpoint=False)
    mouth = random_mouth_onnx(cfg, parts / "mouth.onnx", seed=seed)

    rng = np.random.default_rng(seed)
    dims = cfg.mouth_model.pca_dims
    comps = np.linalg.qr(rng.standard_normal((40, dims)))[0].T.astype(np.float32)
    pca = MouthPca(mean=np.zeros(40, np.float32), components=comps,
                   explained_variance_ratio=np.linspace(0.3, 0.01, dims).astype(np.float32))
    jaw = JawRegression(np.zeros((3, 34)))
    w, h = frame_size
    side = 0.42 * w
    templates, boxes = [], np.zeros((n_frames, 4), np.float32)
    frames = np.zeros((n_frames, h, w, 3), np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    backdrop = (60 + 40 * yy / h + 20 * xx / w).astype(np.uint8)
    for i in range(n_frames):
        sway = 2.0 * np.sin(2 * np.pi * i / n_frames)
        lm = synthetic_landmarks(template_size) + np.array([sway, 0.0])
        norm = normalise_mouth(lm[None])
        edges = np.zeros((template_size, template_size), np.uint8)
        for a, b in ((0, 17), (17, 22), (22, 27), (27, 31), (31, 36), (36, 42), (42, 48)):
            cv2.polylines(edges, [np.round(lm[a:b]).astype(np.int32)], False, 255, 1)
        templates.append(TemplateFrame(
            edges=edges, crop_landmarks=lm, mouth_center=norm.center[0].astype(np.float64),
            mouth_angle=float(norm.angle[0]), mouth_scale=float(norm.scale[0]),
            mouth_mean=norm.mouth[0].astype(np.float64),
        ))
        frame = np.repeat(backdrop[..., None], 3, axis=2)
        x0, y0 = (w - side) / 2 + sway, 0.12 * h
        cv2.rectangle(frame, (int(0.2 * w), int(0.45 * h)), (int(0.8 * w), h), (40, 50, 120), -1)
        cv2.circle(frame, (int(x0 + side / 2), int(y0 + side / 2)), int(side / 2.3), (200, 160, 130), -1)
        frames[i] = frame
        boxes[i] = (x0, y0, x0 + side, y0 + side)
    r = cfg.renderer.resolution
    mask = np.zeros((r, r), np.float32)
    cv2.ellipse(mask, (r // 2, int(r * 0.6)), (int(r * 0.32), int(r * 0.3)), 0, 0, 360, 1.0, -1)
    body = BodyTemplate(boxes, mask, frames)
    write_avatar(out, name="random-weights", config=cfg, mouth_onnx=mouth, renderer_onnx=renderer,
                 pca=pca, jaw=jaw, templates=templates, body=body, body_video=False,
                 description="benchmark stand-in: random-weight models, synthetic templates")
    return out


# --------------------------------------------------------------------------------------------
# speech


def synthetic_speech(seconds: float, sample_rate: int = 16000, seed: int = 0) -> np.ndarray:
    """A voiced, syllabic signal (120 Hz harmonics through two formants, 4 Hz envelope)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f0 = 120 + 15 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    x = sum(np.sin(k * phase) / k for k in range(1, 25))
    formant = 0.5 + 0.5 * np.sin(2 * np.pi * 3.1 * t + rng.uniform(0, 6))
    env = np.clip(np.sin(2 * np.pi * 4.0 * t) * 0.6 + 0.5, 0, 1) ** 0.5
    y = x * env * (0.6 + 0.4 * formant) + 0.003 * rng.standard_normal(t.size)
    return (0.3 * y / (np.abs(y).max() + 1e-9)).astype(np.float32)


def first_voiced_sample(x: np.ndarray, sample_rate: int, dbfs: float = -35.0) -> int:
    """Start of the first 20 ms window louder than `dbfs` (RMS), or 0."""
    n = sample_rate // 50
    frames = x[: len(x) // n * n].reshape(-1, n).astype(np.float64)
    rms_db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    loud = np.flatnonzero(rms_db > dbfs)
    return int(loud[0] * n) if loud.size else 0


def speech_recording(sample_rate: int = 16000) -> tuple[np.ndarray, str] | None:
    """The first shared speech recording (leading silence removed), or None."""
    from anchor.audio.decode import decode_audio

    media = shared_media_dir()
    if media is None:
        return None
    for name in SPEECH_FILES:
        path = media / "speech" / name
        if path.is_file():
            x = decode_audio(path, sample_rate)
            return x[first_voiced_sample(x, sample_rate) :].astype(np.float32), str(path)
    return None


def speech_audio(seconds: float, sample_rate: int = 16000) -> tuple[np.ndarray, str]:
    """`seconds` of speech at `sample_rate` (looped if the recording is shorter) and its source."""
    rec = speech_recording(sample_rate)
    n = int(seconds * sample_rate)
    if rec is not None:
        return np.resize(rec[0], n).astype(np.float32), rec[1]
    return synthetic_speech(seconds, sample_rate), "synthetic voiced signal (no shared media)"


def require(condition: bool, message: str) -> None:
    if not condition:
        raise BenchError(message)
