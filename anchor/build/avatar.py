"""`anchor build-avatar`: one talking-head video -> an avatar bundle, as resumable steps.

prepare (video -> dataset) -> mouth (train the audio-to-mouth model) -> renderer (train the face
renderer; it also fits the jaw regression) -> jaw -> export (both models to ONNX) -> templates
(template frames, body frames, face boxes, blend mask) -> bundle. Every step writes into the
work directory and then a marker `steps/<name>.json`; with `--resume` a step whose marker exists
is skipped and an interrupted training continues from its checkpoint.

The template (idle footage the face is pasted into) is a separate video (`--template`) or, by
default, the quietest stretch of the training video: the window of at least 2 s with the least
voice activity, energy and mouth motion.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from anchor.avatar.bundle import (
    _load_body,
    _load_templates,
    _template_fields,
    encode_body_video,
    write_avatar,
)
from anchor.compose.body import BodyTemplate
from anchor.config import AnchorConfig
from anchor.errors import AnchorError, AvatarError
from anchor.progress import progress_bar

if TYPE_CHECKING:
    from anchor.face.facial_map import TemplateFrame
    from anchor.train.dataset import ClipData

log = logging.getLogger(__name__)

STEPS_DIR = "steps"
PARTS_DIR = "parts"
TEMPLATE_SECONDS = 3.0
MIN_TEMPLATE_SECONDS = 2.0
MAX_TEMPLATE_FRAMES = 150  # 6 s of body frames is plenty for an idle loop; bounds bundle and memory


# -- step runner --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[], dict[str, Any] | None]  # returns facts to record in the marker
    description: str = ""


class StepRunner:
    """Runs named steps in order, skipping those whose marker exists when resuming."""

    def __init__(self, work: Path, *, resume: bool, progress: bool = True) -> None:
        self.work = Path(work)
        self.resume = resume
        self.progress = progress
        self.markers = self.work / STEPS_DIR
        self.ran: list[str] = []
        self.skipped: list[str] = []

    def marker(self, name: str) -> Path:
        return self.markers / f"{name}.json"

    def done(self, name: str) -> bool:
        return self.marker(name).is_file()

    def check_fresh(self, steps: Sequence[Step]) -> None:
        finished = [s.name for s in steps if self.done(s.name)]
        if finished and not self.resume:
            raise AvatarError(
                f"{self.work}: holds a previous build (finished steps: {', '.join(finished)}); "
                "pass --resume to continue it, or choose another --work directory"
            )

    def run(self, steps: Sequence[Step]) -> dict[str, dict[str, Any]]:
        self.check_fresh(steps)
        self.markers.mkdir(parents=True, exist_ok=True)
        facts: dict[str, dict[str, Any]] = {}
        bar = progress_bar(steps, desc="build-avatar", unit="step", disable=not self.progress)
        for i, step in enumerate(bar):
            bar.set_postfix_str(step.name)
            if self.resume and self.done(step.name):
                log.info("[%d/%d] %s: done already, skipped", i + 1, len(steps), step.name)
                facts[step.name] = json.loads(self.marker(step.name).read_text())
                self.skipped.append(step.name)
                continue
            log.info("[%d/%d] %s: %s", i + 1, len(steps), step.name, step.description)
            t0 = time.monotonic()
            result = dict(step.run() or {})
            result["seconds"] = round(time.monotonic() - t0, 2)
            tmp = self.marker(step.name).with_suffix(".tmp")
            tmp.write_text(json.dumps(result, indent=2, default=str) + "\n")
            os.replace(tmp, self.marker(step.name))
            facts[step.name] = result
            self.ran.append(step.name)
        return facts


# -- templates, body, blend mask ------------------------------------------------------------------


def frame_audio_activity(clip: ClipData, cfg: AnchorConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per video frame: (voice activity 0/1, RMS energy) of a dataset clip's audio."""
    from anchor.audio.vad import VoiceActivityDetector

    audio = clip.audio()
    spf = cfg.audio.sample_rate // cfg.video.fps
    n = clip.frames
    padded = np.zeros(n * spf, np.float32)
    m = min(len(audio), n * spf)
    padded[:m] = audio[:m]
    chunks = padded.reshape(n, spf)
    energy = np.sqrt(np.mean(chunks.astype(np.float64) ** 2, axis=1))
    vad = VoiceActivityDetector(cfg.audio)
    speech = np.array([vad.push(c) for c in chunks], dtype=np.float64)
    return speech, energy


def quietest_stretch(
    clip: ClipData,
    cfg: AnchorConfig,
    seconds: float = TEMPLATE_SECONDS,
    min_seconds: float = MIN_TEMPLATE_SECONDS,
) -> range:
    """Frames of the quietest window (least voice activity, then energy, then mouth motion)."""
    fps = cfg.video.fps
    n = clip.frames
    need = int(round(min_seconds * fps))
    if n < need:
        raise AvatarError(
            f"clip {clip.name}: {n / fps:.1f} s is shorter than the {min_seconds:g} s a template "
            "needs; pass a longer video or --template"
        )
    length = min(n, max(need, int(round(seconds * fps))))
    speech, energy = frame_audio_activity(clip, cfg)
    motion = np.zeros(n)
    motion[1:] = np.linalg.norm(np.diff(clip.mouth_pca, axis=0), axis=1)
    openness = np.abs(clip.mouth_pca[:, 0] - np.median(clip.mouth_pca[:, 0]))

    def window_mean(x: np.ndarray) -> np.ndarray:
        c = np.concatenate([[0.0], np.cumsum(x)])
        return (c[length:] - c[:-length]) / length

    def scaled(x: np.ndarray) -> np.ndarray:
        top = float(np.max(x))
        return x / top if top > 0 else x

    cost = (
        10.0 * window_mean(speech)
        + scaled(window_mean(energy))
        + 0.5 * scaled(window_mean(motion))
        + 0.5 * scaled(window_mean(openness))
    )
    start = int(np.argmin(cost))
    log.info(
        "template: %s frames %d..%d (%.1f s, speech %.0f%%)", clip.name, start, start + length,
        length / fps, 100 * float(window_mean(speech)[start]),
    )
    return range(start, start + length)


def lower_face_mask(
    templates: Sequence[TemplateFrame], resolution: int, margin_px: float = 0.0,
    chin_drop: float = 0.12,
) -> np.ndarray:
    """(R, R) float32 blend mask: where the rendered face replaces the body frame.

    The lower face (cheeks, mouth, jaw, chin) of every template, grown by `margin_px` (mask
    pixels) so that the compositor's inward feather still covers the whole jaw, and extended
    down by `chin_drop` x face height for a mouth opened wider than the template's.
    """
    r = int(resolution)
    mask = np.zeros((r, r), np.uint8)
    shift = 4
    for t in templates:
        lm = np.asarray(t.crop_landmarks, np.float64) * (r / t.size)
        face_h = float(lm[8, 1] - lm[27, 1])
        jaw = lm[1:16]
        centre = lm[[1, 15, 8, 30]].mean(axis=0)
        rel = jaw - centre
        dist = np.maximum(np.linalg.norm(rel, axis=1, keepdims=True), 1e-6)
        grown = jaw + rel / dist * margin_px
        dropped = grown.copy()
        weight = np.clip(1.0 - np.abs(np.arange(1, 16) - 8) / 6.0, 0.0, 1.0)
        dropped[:, 1] += weight * chin_drop * face_h
        top_lift = np.array([0.0, -0.25 * (lm[33, 1] - lm[29, 1]) - margin_px * 0.5])
        nose = np.array([lm[35] + top_lift, lm[29], lm[31] + top_lift])
        for outline in (grown, dropped):
            poly = np.concatenate([outline, nose])
            cv2.fillPoly(mask, [np.round(poly * (1 << shift)).astype(np.int32)], 255, cv2.LINE_AA, shift)
    out = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (3, 3), 0)
    return np.asarray(np.clip(out, 0.0, 1.0), np.float32)


def mask_margin(cfg: AnchorConfig, boxes: np.ndarray, resolution: int) -> float:
    """compose.feather_px in mask pixels (the box side maps to `resolution` pixels)."""
    side = float(np.mean(boxes[:, 2] - boxes[:, 0]))
    return float(cfg.compose.feather_px * resolution / max(side, 1.0))


def read_clip_frames(video: Path, frames: range, fps: int) -> np.ndarray:
    """Full video frames `frames` (RGB uint8) of a source video at the dataset frame rate."""
    from anchor.face.video import read_frames

    out = []
    for t, frame in enumerate(read_frames(video, fps)):
        if t >= frames.stop:
            break
        if t >= frames.start:
            out.append(frame)
    if len(out) != len(frames):
        raise AvatarError(f"{video}: got {len(out)} of the {len(frames)} template frames")
    return np.stack(out)


def save_parts(
    directory: Path, templates: Sequence[TemplateFrame], body: BodyTemplate, fps: int
) -> None:
    """templates.npz, body.npz (boxes, mask) and body.mp4 in the bundle's formats, atomically."""
    tmp = directory.parent / f".{directory.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        fields = _template_fields()
        stacked = {f: np.stack([np.asarray(getattr(t, f)) for t in templates]) for f in fields}
        stacked["edges"] = stacked["edges"].astype(np.uint8)
        np.savez_compressed(tmp / "templates.npz", **stacked)  # type: ignore[arg-type]
        np.savez_compressed(tmp / "body.npz", face_boxes=body.face_boxes, blend_mask=body.blend_mask)
        encode_body_video(body.frames, tmp / "body.mp4", fps)
        meta = {
            "templates": {"frames": len(templates), "size": int(stacked["edges"].shape[1])},
            "body": {"frames": body.n_frames, "width": body.width, "height": body.height},
            "resolution": int(body.blend_mask.shape[0]),
        }
        (tmp / "parts.json").write_text(json.dumps(meta) + "\n")
        if directory.exists():
            shutil.rmtree(directory)
        os.rename(tmp, directory)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def load_parts(directory: Path) -> tuple[list[TemplateFrame], BodyTemplate]:
    meta = json.loads((directory / "parts.json").read_text())
    templates = _load_templates(directory / "templates.npz", meta["templates"])
    body = _load_body(directory / "body.npz", directory / "body.mp4", meta["body"], meta["resolution"])
    return templates, body


def bundle_config(
    cfg: AnchorConfig, mouth_onnx: Path, renderer_checkpoint: Path | None = None
) -> AnchorConfig:
    """The config a bundle records: audio/mouth/streaming from the mouth model it ships, renderer
    sections from the renderer checkpoint, the rest from `cfg`."""
    from anchor.mouth.runtime import MouthOnnx

    mcfg = MouthOnnx(mouth_onnx).config
    out = dataclasses.replace(
        cfg, audio=mcfg.audio, mouth_model=mcfg.mouth_model, mouth_train=mcfg.mouth_train,
        streaming=mcfg.streaming,
    )
    if renderer_checkpoint is not None:
        from anchor.train.renderer import checkpoint_config, load_training_checkpoint

        rcfg = checkpoint_config(load_training_checkpoint(renderer_checkpoint))
        out = dataclasses.replace(out, renderer=rcfg.renderer, renderer_train=rcfg.renderer_train)
    return out


def mouth_pca_for(checkpoint: Path, dataset_hint: Path | None = None) -> Path:
    """The PCA basis a mouth model predicts in: pca.npz of the dataset it was trained on."""
    import torch

    if dataset_hint is not None and (dataset_hint / "pca.npz").is_file():
        return dataset_hint / "pca.npz"
    try:
        ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - one user-facing message for any unreadable file
        raise AvatarError(f"{checkpoint}: cannot read mouth checkpoint ({exc})") from exc
    ds = Path(str(ckpt.get("dataset", "")))
    if not (ds / "pca.npz").is_file():
        raise AvatarError(
            f"{checkpoint}: its training dataset {ds} has no pca.npz; pass --mouth-dataset DATASET"
        )
    return ds / "pca.npz"


# -- the build ------------------------------------------------------------------------------------


def build_avatar(
    video: str | Path,
    out: str | Path,
    cfg: AnchorConfig,
    *,
    template: str | Path | None = None,
    name: str | None = None,
    work: str | Path | None = None,
    resume: bool = False,
    mouth_checkpoint: str | Path | None = None,
    mouth_dataset: str | Path | None = None,
    template_seconds: float = TEMPLATE_SECONDS,
    progress: bool = True,
    gestures: str | Path | None = None,
    base_mouth: str | Path | None = None,
) -> Path:
    """Build an avatar bundle at `out` from one video (see the module docstring). `gestures`:
    a gesture spec (TOML: keyword -> start_s/end_s of VIDEO), checked before anything runs.
    `base_mouth`: a generic mouth checkpoint to fine-tune on VIDEO (the dataset is prepared in
    its PCA basis) instead of training one from scratch on a minute of speech."""
    from anchor.compose.motion import load_gesture_spec
    from anchor.train.dataset import load_dataset

    gesture_spec = None
    if gestures is not None:
        try:
            gesture_spec = load_gesture_spec(gestures)
        except AnchorError as exc:
            raise AvatarError(f"--gestures: {exc}") from None
    video = Path(video)
    out = Path(out)
    if not video.is_file():
        raise AvatarError(f"{video}: no such video")
    if template is not None and not Path(template).is_file():
        raise AvatarError(f"{template}: no such template video")
    if base_mouth is not None:
        if mouth_checkpoint is not None:
            raise AvatarError("give --mouth (use as is) or --base-mouth (fine-tune), not both")
        if not Path(base_mouth).is_file():
            raise AvatarError(f"{base_mouth}: base mouth model does not exist")
    work = Path(work) if work is not None else out.parent / f"{out.name}.work"
    work.mkdir(parents=True, exist_ok=True)
    name = name or video.stem
    dataset = work / "dataset"
    mouth_runs = work / "runs" / "mouth"
    renderer_runs = work / "runs" / "renderer"
    parts = work / PARTS_DIR
    mouth_ckpt = (
        Path(mouth_checkpoint) if mouth_checkpoint is not None
        else mouth_runs / cfg.mouth_model.kind / "checkpoint.pt"
    )
    renderer_ckpt = renderer_runs / "checkpoint.pt"

    def prepare() -> dict[str, Any]:
        from anchor.train.prepare import prepare_dataset

        if (dataset / "manifest.json").is_file():
            ds = load_dataset(dataset)
        else:
            videos = [video] + ([Path(template)] if template is not None else [])
            ds = prepare_dataset(videos, dataset, cfg, progress=progress, mouth_basis=base_mouth)
        return {"clips": [c.name for c in ds.clips], "frames": sum(c.frames for c in ds.clips)}

    def train_mouth_step() -> dict[str, Any]:
        if mouth_checkpoint is not None:
            if not mouth_ckpt.is_file():
                raise AvatarError(f"{mouth_ckpt}: mouth checkpoint does not exist")
            return {"checkpoint": str(mouth_ckpt), "trained": False}
        from anchor.train.mouth import train_mouth

        result = train_mouth(dataset, mouth_runs, cfg, resume=resume, progress=progress,
                             base=base_mouth)
        return {"checkpoint": str(result.checkpoint), "epoch": result.epoch,
                "val_loss": result.val_loss, "base": str(base_mouth) if base_mouth else None}

    def train_renderer_step() -> dict[str, Any]:
        from anchor.train.renderer import train_renderer

        ckpt = train_renderer(dataset, renderer_runs, cfg, resume=resume and renderer_ckpt.is_file(),
                              progress=progress)
        return {"checkpoint": str(ckpt)}

    def jaw_step() -> dict[str, Any]:
        from anchor.face.jaw import JawRegression
        from anchor.train.renderer import fit_jaw

        src = renderer_runs / "jaw.npz"
        if src.is_file():
            jaw = JawRegression.load(src)
        else:
            jaw = fit_jaw(load_dataset(dataset).clips, cfg)
        jaw.save(work / "jaw.npz")
        return {"jaw": str(work / "jaw.npz")}

    def export_step() -> dict[str, Any]:
        from anchor.mouth.export import export_mouth
        from anchor.render.export import export_renderer

        export_mouth(mouth_ckpt, work / "mouth.onnx")
        export_renderer(renderer_ckpt, work / "renderer.onnx")
        return {"mouth": str(work / "mouth.onnx"), "renderer": str(work / "renderer.onnx")}

    def templates_step() -> dict[str, Any]:
        from anchor.face.facial_map import template_frames_from_clip
        from anchor.mouth.features import MouthPca

        ds = load_dataset(dataset)
        speaking = ds.clips[0]
        if template is not None:
            clip = ds.clips[-1]
            frames = range(0, min(clip.frames, MAX_TEMPLATE_FRAMES))
        else:
            clip = speaking
            frames = quietest_stretch(clip, cfg, template_seconds)
        pca = MouthPca.load(dataset / "pca.npz")
        templates = template_frames_from_clip(clip, pca, list(frames))
        if clip is not speaking:
            # generated mouths are offsets from the speaking mean, not from an idle (closed) mean
            templates = [dataclasses.replace(t, mouth_mean=speaking.mouth_mean.astype(np.float64))
                         for t in templates]
        idx = np.asarray(frames)
        boxes = clip.boxes[idx]
        res = bundle_resolution(cfg, renderer_ckpt)
        mask = lower_face_mask(templates, res, mask_margin(cfg, boxes, res))
        body_frames = read_clip_frames(Path(clip.info["source"]), frames, cfg.video.fps)
        save_parts(parts, templates, BodyTemplate(boxes, mask, body_frames), cfg.video.fps)
        return {"clip": clip.name, "frames": [frames.start, frames.stop]}

    def bundle_step() -> dict[str, Any]:
        from anchor.face.jaw import JawRegression

        templates, body = load_parts(parts)
        pca_path = (
            mouth_pca_for(mouth_ckpt, Path(mouth_dataset) if mouth_dataset else None)
            if mouth_checkpoint is not None else dataset / "pca.npz"
        )
        gesture_set = None
        if gesture_spec is not None:
            from anchor.compose.motion import gestures_from_recording

            speaking = load_dataset(dataset).clips[0]
            try:
                gesture_set = gestures_from_recording(
                    gesture_spec, speaking.landmarks, speaking.boxes, cfg.video.fps, video.name
                )
            except AnchorError as exc:
                raise AvatarError(f"--gestures: {exc}") from None
        write_avatar(
            out, name=name, config=bundle_config(cfg, work / "mouth.onnx", renderer_ckpt),
            mouth_onnx=work / "mouth.onnx", renderer_onnx=work / "renderer.onnx",
            pca=pca_path, jaw=JawRegression.load(work / "jaw.npz"), templates=templates,
            body=body, body_video_file=parts / "body.mp4",
            description=f"built by anchor build-avatar from {video.name}", gestures=gesture_set,
            mouth_base=mouth_base_record(mouth_ckpt),
        )
        return {"bundle": str(out),
                "gestures": [g.name for g in gesture_set.gestures] if gesture_set else []}

    steps = [
        Step("prepare", prepare, f"{video.name} -> dataset"),
        Step("mouth", train_mouth_step, f"train the {cfg.mouth_model.kind} mouth model"),
        Step("renderer", train_renderer_step, f"train the {cfg.renderer.preset} renderer"),
        Step("jaw", jaw_step, "jaw regression"),
        Step("export", export_step, "mouth and renderer -> ONNX"),
        Step("templates", templates_step, "template frames, body frames, blend mask"),
        Step("bundle", bundle_step, f"-> {out}"),
    ]
    StepRunner(work, resume=resume, progress=progress).run(steps)
    return out


def generic_mouth_path(kind: str) -> Path:
    """Where the package keeps its generic (many-speaker) mouth checkpoint of `kind`."""
    return Path(__file__).resolve().parent.parent / "mouth" / "base" / f"generic-{kind}.pt"


def resolve_base_mouth(choice: str, cfg: AnchorConfig) -> Path | None:
    """--base-mouth: "generic" (the shipped model), "none" (from scratch), or a checkpoint path."""
    if choice == "none":
        return None
    if choice == "generic":
        path = generic_mouth_path(cfg.mouth_model.kind)
        if not path.is_file():
            log.warning("no generic %s mouth model ships with this anchor (%s); training the "
                        "mouth from scratch", cfg.mouth_model.kind, path)
            return None
        from anchor.config import from_dict
        from anchor.mouth.models import load_checkpoint

        shipped = from_dict(AnchorConfig, load_checkpoint(path)["config"]).mouth_model
        if shipped != cfg.mouth_model:
            log.warning("the generic mouth model's network differs from mouth_model in this "
                        "config; training the mouth from scratch")
            return None
        return path
    path = Path(choice)
    if not path.is_file():
        raise AvatarError(f"--base-mouth {choice}: no such mouth checkpoint")
    return path


def mouth_base_record(checkpoint: Path) -> dict[str, Any] | None:
    """[mouth_base] for the bundle: the generic model a fine-tuned mouth started from."""
    from anchor.mouth.models import load_checkpoint

    base = load_checkpoint(checkpoint).get("base")
    if not base:
        return None
    return {"name": Path(str(base["path"])).name, "sha256": str(base["sha256"]),
            "clips": len(base.get("clips") or [])}


def bundle_resolution(cfg: AnchorConfig, renderer_checkpoint: Path) -> int:
    if renderer_checkpoint.is_file():
        from anchor.train.renderer import checkpoint_config, load_training_checkpoint

        return int(checkpoint_config(load_training_checkpoint(renderer_checkpoint)).renderer.resolution)
    return int(cfg.renderer.resolution)



def replace_mouth(bundle: str | Path, mouth_checkpoint: str | Path, out: str | Path | None = None) -> Path:
    """The bundle with another mouth model: its ONNX export and the PCA basis it predicts in.
    Renderer, templates, body, jaw and gestures stay; templates and jaw hold no PCA features
    (a generated mouth is the template's mean mouth + the basis's inverse), so they fit any
    basis. Written atomically to `out` (default: in place)."""
    import tempfile

    from anchor.avatar.bundle import load_avatar
    from anchor.mouth.export import export_mouth
    from anchor.mouth.features import MouthPca
    from anchor.mouth.models import load_checkpoint

    src = load_avatar(bundle)
    basis = load_checkpoint(mouth_checkpoint).get("pca")
    if basis is None:
        raise AvatarError(f"{mouth_checkpoint}: the checkpoint records no PCA basis")
    comps = np.asarray(basis["components"], np.float32)
    pca = MouthPca(np.asarray(basis["mean"], np.float32), comps, np.zeros(len(comps), np.float32))
    video = src.manifest.get("files", {}).get("body_video")
    with tempfile.TemporaryDirectory(prefix="anchor-mouth-") as tmp:
        onnx = export_mouth(mouth_checkpoint, Path(tmp) / "mouth.onnx")
        renderer = Path(tmp) / "renderer.onnx"
        shutil.copyfile(src.renderer_onnx, renderer)  # `out` may be the source: copy first
        body_file = None
        if video is not None:
            body_file = Path(tmp) / "body.mp4"
            shutil.copyfile(src.path / video["path"], body_file)
        return write_avatar(
            Path(out) if out is not None else src.path, name=src.name,
            config=bundle_config(src.config, onnx), mouth_onnx=onnx, renderer_onnx=renderer,
            pca=pca, jaw=src.jaw, templates=src.templates, body=src.body,
            body_video_file=body_file, description=str(src.manifest.get("description", "")),
            gestures=src.gestures, mouth_base=src.manifest.get("mouth_base"),
        )
