"""Rebuild the default avatar shipped in anchor/avatar/default/.

    python -m anchor.build.default_avatar --mouth runs/mouth/adversarial-tcn/checkpoint.pt \\
        --clips data/clips_ds [--work data/default_avatar_work] [--resume]

(also `anchor build-avatar --default ...`). Sources: scikit-image's public-domain `astronaut`
portrait (read from the installed package) and an audio-to-mouth model trained on real clips,
whose dataset (`--clips`) supplies the mouth PCA basis and the distribution of mouth shapes the
portrait is warped to. Steps (each resumable, markers in WORK/steps/):

1. synth      the portrait dataset: idle-motion clip + warped-mouth clip (anchor.build.synth),
              with the clips dataset's PCA basis and mouth shapes
2. renderer   `anchor train renderer` on it (cpu-small preset, 128 px)
3. jaw        the jaw regression fitted by the renderer training
4. export     renderer -> ONNX
5. templates  template frames, body frames, face boxes, blend mask from the idle clip
6. eval       PSNR/SSIM on held-out synthetic pairs, and a PNG strip (closed | mid | open mouths)
7. mouth      export the mouth checkpoint to ONNX (or copy `--mouth-onnx`)
8. bundle     write the bundle (checked to be <= 30 MB)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from anchor.avatar.bundle import bundle_size, default_avatar_path, write_avatar
from anchor.build.avatar import (
    Step,
    StepRunner,
    bundle_config,
    load_parts,
    lower_face_mask,
    mask_margin,
    save_parts,
)
from anchor.compose.body import BodyTemplate
from anchor.compose.motion import Gesture, GestureSet, drawn_gesture
from anchor.config import AnchorConfig
from anchor.errors import AnchorError, AvatarError

log = logging.getLogger(__name__)

MAX_BUNDLE_BYTES = 30 * 1024 * 1024
DEFAULT_FRAMES = 1500  # warped-mouth training frames
DEFAULT_IDLE_FRAMES = 75  # 3 s of idle motion (a 6 s ping-pong loop)
DEFAULT_EPOCHS = 16  # ~5700 steps: ~12 min on an idle 2-core CPU (0.12 s per batch of 4)
NAME = "astronaut"
RENDERER_PRESET = "cpu-small"


def default_config(cfg: AnchorConfig, epochs: int) -> AnchorConfig:
    """The cpu-small renderer (128 px), `epochs` epochs, and the rest of `cfg`.

    The portrait's face box is ~180 px of a 512 px picture, so a 128 px renderer already sees
    almost all the detail there is; the 256 px cpu-256 would cost ~4x the training time for
    upsampled pixels.
    """
    from anchor.render.presets import renderer_preset

    return dataclasses.replace(
        cfg,
        renderer=renderer_preset(RENDERER_PRESET),
        renderer_train=dataclasses.replace(cfg.renderer_train, epochs=epochs),
    )


def default_gestures(fps: int) -> GestureSet:
    """Drawn keyword gestures for the default avatar (a photo has no recorded ones): a nod on
    assent, a head tilt on a turn of the argument, a lean towards the camera on urgency."""
    return GestureSet.of([
        Gesture("nod", ("yes", "agreed", "confirmed", "indeed", "welcome", "thank you"),
                drawn_gesture("nod", 1.4, fps), probability=0.8, source="drawn: nod"),
        Gesture("tilt", ("however", "but", "perhaps", "meanwhile", "question"),
                drawn_gesture("tilt", 1.4, fps), probability=0.6, source="drawn: tilt"),
        Gesture("lean", ("breaking", "urgent", "important", "tonight", "developing"),
                drawn_gesture("lean", 1.4, fps), probability=1.0, ramp_in_s=0.6, hold_s=0.5,
                source="drawn: lean to camera"),
    ])


def build_default_avatar(
    cfg: AnchorConfig,
    *,
    clips: str | Path | None = None,
    mouth_checkpoint: str | Path | None = None,
    mouth_onnx: str | Path | None = None,
    out: str | Path | None = None,
    work: str | Path = "data/default_avatar_work",
    frames: int = DEFAULT_FRAMES,
    idle_frames: int = DEFAULT_IDLE_FRAMES,
    epochs: int = DEFAULT_EPOCHS,
    seed: int = 0,
    bake_idle: bool = True,
    resume: bool = False,
    progress: bool = True,
    photo: str | Path | None = None,
    name: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Run the steps above; returns each step's recorded facts.

    `photo`: any frontal portrait instead of the astronaut (`build-avatar --photo`); it is read
    and its one face found before any work starts. `clips` None: the mouth shapes to warp come
    from the mouth checkpoint's own statistics (`generic-<kind>.shapes.npz` beside it) and its
    PCA basis from the checkpoint.

    `bake_idle` replaces the lower face of every body frame by the renderer's own rest face
    (template mouth, features 0), so idle and speaking frames show the same rendered face and
    nothing pops when speech starts or stops.
    """
    from anchor.build.synth import detect_portrait_landmarks, load_photo
    from anchor.train.dataset import load_dataset

    if (mouth_checkpoint is None) == (mouth_onnx is None):
        raise AvatarError("give exactly one of --mouth CHECKPOINT and --mouth-onnx FILE")
    if clips is None and mouth_checkpoint is None:
        raise AvatarError("--mouth-onnx needs --clips DATASET (the mouth model's PCA basis and shapes)")
    image = landmarks = None
    if photo is not None:  # every check on the photo before anything is written
        image = load_photo(photo)
        landmarks = detect_portrait_landmarks(image, cfg, str(photo))
    clips = Path(clips) if clips is not None else None
    out = Path(out) if out is not None else default_avatar_path()
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    cfg = default_config(cfg, epochs)
    synth_ds = work / "synth_ds"
    renderer_runs = work / "runs" / "renderer"
    renderer_ckpt = renderer_runs / "checkpoint.pt"
    parts = work / "parts"

    def mouth_step() -> dict[str, Any]:
        if mouth_onnx is not None:
            shutil.copyfile(mouth_onnx, work / "mouth.onnx")
        else:
            from anchor.mouth.export import export_mouth

            if not Path(mouth_checkpoint).is_file():  # type: ignore[arg-type]
                raise AvatarError(f"{mouth_checkpoint}: mouth checkpoint does not exist")
            export_mouth(mouth_checkpoint, work / "mouth.onnx")  # type: ignore[arg-type]
        return {"mouth": str(work / "mouth.onnx"), "source": str(mouth_checkpoint or mouth_onnx)}

    def synth_step() -> dict[str, Any]:
        from anchor.build.synth import sample_mouth_features, synthesise_portrait_dataset
        from anchor.mouth.features import MouthPca

        if clips is not None:
            shutil.copyfile(clips / "pca.npz", work / "pca.npz")
            pca = MouthPca.load(work / "pca.npz")
            feats = sample_mouth_features(load_dataset(clips), frames, seed)
        else:
            pca, feats = checkpoint_mouth_shapes(Path(mouth_checkpoint), frames, seed)  # type: ignore[arg-type]
            pca.save(work / "pca.npz")
        np.save(work / "mouth_features.npy", feats)
        _, body = synthesise_portrait_dataset(
            synth_ds, cfg, pca, feats, image=image, landmarks=landmarks, idle_frames=idle_frames,
            seed=seed, progress=progress,
        )
        np.save(work / "body_frames.npy", body)
        return {"dataset": str(synth_ds), "talk_frames": frames, "idle_frames": idle_frames}

    def renderer_step() -> dict[str, Any]:
        from anchor.train.renderer import train_renderer

        ckpt = train_renderer(synth_ds, renderer_runs, cfg, resume=resume and renderer_ckpt.is_file(),
                              progress=progress)
        return {"checkpoint": str(ckpt), "epochs": cfg.renderer_train.epochs}

    def jaw_step() -> dict[str, Any]:
        from anchor.face.jaw import JawRegression

        JawRegression.load(renderer_runs / "jaw.npz").save(work / "jaw.npz")
        return {"jaw": str(work / "jaw.npz")}

    def export_step() -> dict[str, Any]:
        from anchor.render.export import export_renderer

        export_renderer(renderer_ckpt, work / "renderer.onnx")
        return {"renderer": str(work / "renderer.onnx")}

    def templates_step() -> dict[str, Any]:
        from anchor.face.facial_map import template_frames_from_clip
        from anchor.mouth.features import MouthPca

        ds = load_dataset(synth_ds)
        idle = ds.clip("idle")
        templates = template_frames_from_clip(idle, MouthPca.load(work / "pca.npz"))
        body_frames = np.load(work / "body_frames.npy")
        res = cfg.renderer.resolution
        mask = lower_face_mask(templates, res, mask_margin(cfg, idle.boxes, res))
        body = BodyTemplate(idle.boxes, mask, body_frames)
        if bake_idle:
            body = bake_rendered_idle(body, templates, cfg, work)
        save_parts(parts, templates, body, cfg.video.fps)
        return {"templates": len(templates), "baked_idle": bake_idle}

    def eval_step() -> dict[str, Any]:
        from anchor.render.evaluate import evaluate_renderer

        ev = evaluate_renderer(synth_ds, renderer_ckpt)
        strip = work / "default_avatar_strip.png"
        write_strip(strip, cfg, work)
        facts = {"psnr_db": round(ev.psnr, 2), "ssim": round(ev.ssim, 4), "frames": ev.frames,
                 "jaw_r2_val": ev.jaw_r2_val, "strip": str(strip)}
        (work / "eval.json").write_text(json.dumps(facts, indent=2) + "\n")
        return facts

    def bundle_step() -> dict[str, Any]:
        from anchor.face.jaw import JawRegression

        templates, body = load_parts(parts)
        write_avatar(
            out, name=name or NAME, config=bundle_config(cfg, work / "mouth.onnx", renderer_ckpt),
            mouth_onnx=work / "mouth.onnx", renderer_onnx=work / "renderer.onnx",
            pca=work / "pca.npz", jaw=JawRegression.load(work / "jaw.npz"), templates=templates,
            body=body, body_video_file=parts / "body.mp4", gestures=default_gestures(cfg.video.fps),
            description=(
                f"built by anchor build-avatar --photo from {Path(photo).name}; mouths "
                "synthesised by anchor.build.synth" if photo is not None else
                "Default avatar: scikit-image's public-domain NASA astronaut portrait (Eileen "
                "Collins), mouths synthesised by anchor.build.synth; rebuild with "
                "`python -m anchor.build.default_avatar`"
            ),
        )
        size = bundle_size(out)
        if size > MAX_BUNDLE_BYTES:
            raise AvatarError(f"{out}: {size / 1e6:.1f} MB exceeds the 30 MB budget")
        return {"bundle": str(out), "bytes": size}

    # the mouth model is only needed at the end, so a build can start while it still trains
    steps = [
        Step("synth", synth_step, f"portrait dataset ({idle_frames} idle + {frames} talking frames)"),
        Step("renderer", renderer_step, f"train the {RENDERER_PRESET} renderer ({epochs} epochs)"),
        Step("jaw", jaw_step, "jaw regression"),
        Step("export", export_step, "renderer -> ONNX"),
        Step("templates", templates_step, "templates, body, blend mask"),
        Step("eval", eval_step, "PSNR/SSIM on held-out synthetic pairs, PNG strip"),
        Step("mouth", mouth_step, "mouth model -> ONNX"),
        Step("bundle", bundle_step, f"-> {out}"),
    ]
    return StepRunner(work, resume=resume, progress=progress).run(steps)


def bake_rendered_idle(
    body: BodyTemplate, templates: list[Any], cfg: AnchorConfig, work: Path
) -> BodyTemplate:
    """Body frames with the rendered rest face composited in (see `bake_idle`)."""
    from anchor.compose.compositor import Compositor
    from anchor.face.facial_map import FacialMapBuilder
    from anchor.face.jaw import JawRegression
    from anchor.mouth.features import MouthPca
    from anchor.render.backends import create_backend

    pca = MouthPca.load(work / "pca.npz")
    builder = FacialMapBuilder(cfg.renderer.resolution, pca, JawRegression.load(work / "jaw.npz"))
    backend = create_backend(cfg.backend, work / "renderer.onnx")
    plain = dataclasses.replace(cfg.compose, chroma_key="none", background="")
    comp = Compositor(plain, body)
    rest = np.zeros(pca.dims, np.float32)
    frames = np.stack([
        comp.compose(backend.infer(builder.build(t, rest)[None])[0], k)
        for k, t in enumerate(templates)
    ])
    backend.close()
    return BodyTemplate(body.face_boxes, body.blend_mask, frames)


def checkpoint_mouth_shapes(checkpoint: Path, n: int, seed: int) -> tuple[Any, np.ndarray]:
    """(its PCA basis, n mouth-feature rows) for a mouth checkpoint without its dataset: rows
    drawn from the Gaussian of real mouth shapes stored beside it (mean and covariance of the
    training clips' PCA features, written by `anchor.build.generic_mouth --install`)."""
    from anchor.mouth.features import MouthPca
    from anchor.mouth.models import load_checkpoint

    basis = load_checkpoint(checkpoint).get("pca")
    shapes = checkpoint.with_suffix(".shapes.npz")
    if basis is None or not shapes.is_file():
        raise AvatarError(
            f"{checkpoint}: no PCA basis or mouth-shape statistics ({shapes.name}) beside it; "
            "give --clips DATASET (the model's training dataset)"
        )
    comps = np.asarray(basis["components"], np.float32)
    pca = MouthPca(np.asarray(basis["mean"], np.float32), comps, np.zeros(len(comps), np.float32))
    with np.load(shapes) as z:
        mean, cov = z["mean"].astype(np.float64), z["cov"].astype(np.float64)
    rows = np.random.default_rng(seed).multivariate_normal(mean, cov, n)
    return pca, rows.astype(np.float32)


def write_strip(path: Path, cfg: AnchorConfig, work: Path) -> None:
    """A PNG: for a few idle poses, the face crop with a closed, a mid and a wide-open mouth,
    rendered by the exported renderer and composited (what the server shows)."""
    import cv2

    from anchor.avatar.bundle import AvatarBundle
    from anchor.face.jaw import JawRegression
    from anchor.mouth.features import MouthPca
    from anchor.render.backends import create_backend
    from anchor.render.engine import AvatarEngine

    templates, body = load_parts(work / "parts")
    pca = MouthPca.load(work / "pca.npz")
    bundle = AvatarBundle(
        path=work, name=NAME, fps=cfg.video.fps, face_resolution=cfg.renderer.resolution,
        lookahead_ms=cfg.streaming.lookahead_ms, config=cfg, mouth_onnx=work / "mouth.onnx",
        renderer_onnx=work / "renderer.onnx", pca=pca, jaw=JawRegression.load(work / "jaw.npz"),
        templates=templates, body=body,
    )
    backend = create_backend(cfg.backend, work / "renderer.onnx")
    engine = AvatarEngine(bundle, cfg, backend)
    rows = np.load(work / "mouth_features.npy")  # the mouth shapes the renderer learned
    order = np.argsort(rows[:, 0])
    picks = [rows[order[int(q * (len(order) - 1))]] for q in (0.02, 0.5, 0.98)]
    tiles = []
    for ti in (0, len(templates) // 2):
        idx = [ti] * (len(picks) + 1)
        feats = np.stack([np.zeros(pca.dims, np.float32), *picks])
        frames = engine.render_frames(feats, idx)
        x0, y0, x1, y1 = body.face_boxes[ti].astype(int)
        row = [body.frames[ti][y0:y1, x0:x1]] + [f[y0:y1, x0:x1] for f in frames]
        tiles.append(np.concatenate([cv2.resize(t, (256, 256)) for t in row], axis=1))
    engine.close()
    image = np.concatenate(tiles, axis=0)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def add_default_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mouth", dest="mouth_checkpoint", default=None, metavar="CHECKPOINT",
                        help="mouth checkpoint (runs/mouth/adversarial-tcn/checkpoint.pt)")
    parser.add_argument("--mouth-onnx", default=None, help="an exported mouth.onnx instead")
    parser.add_argument("--clips", default=None, metavar="DATASET",
                        help="the mouth model's dataset (its pca.npz and mouth shapes)")
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES,
                        help=f"warped-mouth training frames (default {DEFAULT_FRAMES})")
    parser.add_argument("--idle-frames", type=int, default=DEFAULT_IDLE_FRAMES,
                        help=f"idle-motion frames (default {DEFAULT_IDLE_FRAMES})")
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS,
                        help=f"renderer epochs (default {DEFAULT_EPOCHS})")
    parser.add_argument("--no-bake-idle", dest="bake_idle", action="store_false",
                        help="keep the portrait's own lower face in idle frames (default: the "
                             "renderer's rest face, so nothing pops when speech starts)")


def main(argv: list[str] | None = None) -> int:
    from anchor.config import load_config

    parser = argparse.ArgumentParser(prog="python -m anchor.build.default_avatar",
                                     description=__doc__.splitlines()[0] if __doc__ else None)
    add_default_arguments(parser)
    parser.add_argument("-o", "--out", default=None, help="bundle (default: anchor/avatar/default)")
    parser.add_argument("--work", default="data/default_avatar_work", help="work directory")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted build")
    parser.add_argument("--config", default=None, help="TOML config file")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="SECTION.FIELD=VALUE")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.clips is None:
            raise AvatarError("--clips DATASET is required (the mouth model's training dataset)")
        cfg = load_config(args.config, args.overrides)
        facts = build_default_avatar(
            cfg, clips=args.clips, mouth_checkpoint=args.mouth_checkpoint,
            mouth_onnx=args.mouth_onnx, out=args.out, work=args.work, frames=args.frames,
            idle_frames=args.idle_frames, epochs=args.epochs, bake_idle=args.bake_idle,
            resume=args.resume,
        )
    except AnchorError as exc:
        print(f"build_default: error: {exc}", file=sys.stderr)
        return 2
    ev = facts.get("eval", {})
    print(f"default avatar -> {facts['bundle']['bundle']} ({facts['bundle']['bytes'] / 1e6:.1f} MB); "
          f"renderer PSNR {ev.get('psnr_db')} dB, SSIM {ev.get('ssim')}; strip {ev.get('strip')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
