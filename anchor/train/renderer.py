"""Face renderer training (Zheng et al. 2021, §3.2; pix2pixHD objective).

Pairs: the facial map of frame t, drawn from frame t's own landmarks, edges and PCA mouth
(exactly what inference draws, but with the real mouth), and the real face crop of frame t at
the renderer's resolution. The last `renderer_train.val_fraction` of every clip is held out.

Losses (pix2pixHD): LSGAN on a conditional multi-scale PatchGAN + discriminator feature
matching + L1 to the target, plus an LSGAN (and feature matching) on a mouth crop seen by its own
small discriminator. Adam(lr, beta1). AMP on CUDA only. Every epoch writes `checkpoint.pt` (the
full config, the networks, the optimisers, the epoch) and a PNG grid (map | rendered | real) of
held-out frames; `--resume` continues from the checkpoint, and because shuffling and
augmentation are seeded per epoch, a resumed run matches an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from anchor.config import AnchorConfig, from_dict, to_dict
from anchor.errors import DatasetError, RenderError
from anchor.face.facial_map import FacialMapBuilder, template_frames_from_clip
from anchor.face.jaw import CHIN_Y, JawRegression, fit_jaw_regression, jaw_training_data
from anchor.mouth.features import MouthPca
from anchor.progress import progress_bar
from anchor.render.losses import discriminator_loss, feature_matching_loss, lsgan_loss
from anchor.render.networks import (
    MouthCropDiscriminator,
    MultiscaleDiscriminator,
    build_generator,
    crop_regions,
    mouth_crop_size,
    renderer_config_from_checkpoint,
)
from anchor.train.dataset import ClipData, Dataset, load_dataset

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
JAW_FILE = "jaw.npz"
FORMAT = "anchor-renderer"
VERSION = 1
GRID_ROWS = 4


# -- data ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RendererPairs:
    """Training/evaluation pairs at the renderer's resolution R."""

    maps: np.ndarray  # (N, R, R, 3) uint8 facial maps
    targets: np.ndarray  # (N, R, R, 3) uint8 RGB face crops
    mouth_centers: np.ndarray  # (N, 2) float32 mouth centre (x, y) in map pixels
    clips: tuple[str, ...]  # (N,) clip of each pair
    frames: np.ndarray  # (N,) frame index inside its clip

    def __len__(self) -> int:
        return len(self.maps)

    @staticmethod
    def concat(parts: Sequence[RendererPairs]) -> RendererPairs:
        return RendererPairs(
            maps=np.concatenate([p.maps for p in parts]),
            targets=np.concatenate([p.targets for p in parts]),
            mouth_centers=np.concatenate([p.mouth_centers for p in parts]),
            clips=tuple(c for p in parts for c in p.clips),
            frames=np.concatenate([p.frames for p in parts]),
        )


def dataset_pca(dataset: Dataset) -> MouthPca:
    return MouthPca.load(dataset.path / "pca.npz")


def select_clips(dataset: Dataset, clip: str | Sequence[str] | None) -> list[ClipData]:
    if clip is None:
        return list(dataset.clips)
    names = [clip] if isinstance(clip, str) else list(clip)
    return [dataset.clip(n) for n in names]


def clip_frames(clip: ClipData, cfg: AnchorConfig) -> tuple[range, range]:
    """(train, held-out) frame ranges of a clip: max_frames first, then the last val_fraction."""
    tc = cfg.renderer_train
    n = min(clip.frames, tc.max_frames) if tc.max_frames > 0 else clip.frames
    n_val = int(round(n * tc.val_fraction))
    if n - n_val < 1:
        raise DatasetError(f"{clip.path}: {n} frames leave nothing to train on")
    return range(0, n - n_val), range(n - n_val, n)


def clip_pairs(
    clip: ClipData, frames: Sequence[int], builder: FacialMapBuilder, crops: np.ndarray | None = None
) -> RendererPairs:
    """Pairs for `frames` of one clip: each frame's map from its own landmarks and PCA mouth."""
    r = builder.size
    frames = list(frames)
    templates = template_frames_from_clip(clip, builder.pca, frames)
    crops = clip.crops() if crops is None else crops
    maps, targets, centers = [], [], []
    for t, tmpl in zip(frames, templates, strict=True):
        feats = clip.mouth_pca[t]
        maps.append(builder.build(tmpl, feats))
        crop = crops[t]
        if crop.shape[0] != r:
            interp = cv2.INTER_AREA if crop.shape[0] > r else cv2.INTER_CUBIC
            crop = cv2.resize(crop, (r, r), interpolation=interp)
        targets.append(crop)
        centers.append(builder.mouth_points(tmpl, feats).mean(axis=0) * r / tmpl.size)
    return RendererPairs(
        maps=np.stack(maps) if maps else np.zeros((0, r, r, 3), np.uint8),
        targets=np.stack(targets) if targets else np.zeros((0, r, r, 3), np.uint8),
        mouth_centers=np.asarray(centers, dtype=np.float32).reshape(-1, 2),
        clips=(clip.name,) * len(frames),
        frames=np.asarray(frames, dtype=np.int64),
    )


def fit_jaw(clips: Sequence[ClipData], cfg: AnchorConfig) -> JawRegression:
    """The jaw regression fitted on the training frames of `clips`."""
    data = []
    for clip in clips:
        train, _ = clip_frames(clip, cfg)
        idx = np.asarray(train)
        shapes, offsets, _ = jaw_training_data(
            clip.landmarks[idx], clip.mouth[idx], clip.norm_center[idx],
            clip.norm_angle[idx], clip.norm_scale[idx],
        )
        data.append((shapes, offsets))
    return fit_jaw_regression(data)


@dataclass(frozen=True)
class JawScores:
    """R^2 of a jaw regression on a dataset's training and held-out frames: over the whole
    jawline, and for the chin's vertical position alone (what the correction mostly moves)."""

    train: float
    val: float
    chin_train: float
    chin_val: float


def jaw_r2(jaw: JawRegression, clips: Sequence[ClipData], cfg: AnchorConfig) -> JawScores:
    """Scores of a jaw regression; offsets are relative to each clip's training-frame mean."""
    parts: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {"train": [], "val": []}
    for clip in clips:
        train, val = clip_frames(clip, cfg)
        mean = None
        for name, frames in (("train", train), ("val", val)):
            idx = np.asarray(frames)
            if len(idx) == 0:
                continue
            shapes, offsets, m = jaw_training_data(
                clip.landmarks[idx], clip.mouth[idx], clip.norm_center[idx],
                clip.norm_angle[idx], clip.norm_scale[idx], mean_jaw=mean,
            )
            mean = m
            parts[name].append((shapes, offsets))
    scores: dict[str, float] = {}
    for name in ("train", "val"):
        if sum(len(s) for s, _ in parts[name]) < 2:
            scores[name] = scores[f"chin_{name}"] = float("nan")
            continue
        shapes = np.concatenate([s for s, _ in parts[name]])
        offsets = np.concatenate([o.reshape(len(o), -1) for _, o in parts[name]])
        scores[name] = jaw.r2(shapes, offsets)
        scores[f"chin_{name}"] = jaw.r2(shapes, offsets, [CHIN_Y])
    return JawScores(**scores)


def build_pairs(
    clips: Sequence[ClipData], cfg: AnchorConfig, pca: MouthPca, jaw: JawRegression | None,
    *, train: bool = True, val: bool = True,
) -> tuple[RendererPairs, RendererPairs]:
    """(train pairs, held-out pairs) of `clips` at cfg.renderer.resolution."""
    builder = FacialMapBuilder(cfg.renderer.resolution, pca, jaw)
    tr, va = [], []
    for clip in clips:
        train_frames, val_frames = clip_frames(clip, cfg)
        crops = clip.crops()
        tr.append(clip_pairs(clip, train_frames if train else [], builder, crops))
        va.append(clip_pairs(clip, val_frames if val else [], builder, crops))
    return RendererPairs.concat(tr), RendererPairs.concat(va)


def to_tensor(images: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """(N, R, R, 3) uint8 -> (N, 3, R, R) float in [-1, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    return t.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def to_images(x: torch.Tensor) -> np.ndarray:
    """(N, 3, R, R) in [-1, 1] -> (N, R, R, 3) uint8."""
    y = ((x.detach().float().clamp(-1, 1) + 1.0) * 127.5).round().byte()
    return y.permute(0, 2, 3, 1).cpu().numpy()


def shift_batch(
    maps: torch.Tensor, targets: torch.Tensor, centers: torch.Tensor, max_shift: int,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Light augmentation: the same random integer shift (reflect-padded) of map and target."""
    if max_shift <= 0:
        return maps, targets, centers
    r = maps.shape[-1]
    pad = (max_shift,) * 4
    pm = F.pad(maps, pad, mode="reflect")
    pt = F.pad(targets, pad, mode="reflect")
    out_m, out_t, out_c = [], [], []
    for i in range(maps.shape[0]):
        dx, dy = (int(v) for v in rng.integers(-max_shift, max_shift + 1, size=2))
        x0, y0 = max_shift - dx, max_shift - dy
        out_m.append(pm[i, :, y0 : y0 + r, x0 : x0 + r])
        out_t.append(pt[i, :, y0 : y0 + r, x0 : x0 + r])
        out_c.append(centers[i] + torch.tensor([dx, dy], dtype=centers.dtype, device=centers.device))
    return torch.stack(out_m), torch.stack(out_t), torch.stack(out_c)


# -- networks + one optimisation step ------------------------------------------------------------


class RendererTrainer:
    """The generator, both discriminators, their optimisers and one pix2pixHD step."""

    def __init__(self, cfg: AnchorConfig, device: torch.device | str = "cpu") -> None:
        self.cfg = cfg
        self.device = torch.device(device)
        rc, tc = cfg.renderer, cfg.renderer_train
        self.generator = build_generator(rc).to(self.device)
        self.discriminator = MultiscaleDiscriminator(rc).to(self.device)
        self.mouth_discriminator: nn.Module | None = (
            MouthCropDiscriminator(rc).to(self.device) if rc.mouth_discriminator else None
        )
        self.mouth_size = mouth_crop_size(rc.resolution)
        betas = (tc.beta1, 0.999)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=tc.lr, betas=betas)
        d_params = list(self.discriminator.parameters())
        if self.mouth_discriminator is not None:
            d_params += list(self.mouth_discriminator.parameters())
        self.opt_d = torch.optim.Adam(d_params, lr=tc.lr, betas=betas)
        self.amp = bool(tc.amp and self.device.type == "cuda")
        self.scaler_g = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.scaler_d = torch.amp.GradScaler("cuda", enabled=self.amp)

    def _autocast(self) -> Any:
        return torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp)

    def train_step(
        self, maps: torch.Tensor, targets: torch.Tensor, centers: torch.Tensor
    ) -> dict[str, float]:
        """One generator and one discriminator update on a batch (tensors on self.device)."""
        rc, tc = self.cfg.renderer, self.cfg.renderer_train
        self.generator.train()
        with self._autocast():
            fake = self.generator(maps)
            real_in = torch.cat([maps, targets], 1)
            pred_real = self.discriminator(real_in)
            pred_fake = self.discriminator(torch.cat([maps, fake], 1))
            g_gan = lsgan_loss(pred_fake, True)
            g_feat = feature_matching_loss(pred_fake, pred_real, rc.num_d, rc.n_layers_d)
            l1 = F.l1_loss(fake.float(), targets.float())
            loss_g = g_gan + tc.feat_weight * g_feat + tc.l1_weight * l1
            if self.mouth_discriminator is not None:
                m_real_in = crop_regions(real_in, centers, self.mouth_size)
                m_fake_in = crop_regions(torch.cat([maps, fake], 1), centers, self.mouth_size)
                m_pred_real = self.mouth_discriminator(m_real_in)
                m_pred_fake = self.mouth_discriminator(m_fake_in)
                n_layers = len(m_pred_fake) - 2
                g_mouth = lsgan_loss(m_pred_fake, True) + tc.feat_weight * feature_matching_loss(
                    m_pred_fake, m_pred_real, 1, n_layers
                )
                loss_g = loss_g + tc.mouth_weight * g_mouth
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler_g.scale(loss_g).backward()
        self.scaler_g.step(self.opt_g)
        self.scaler_g.update()

        # D sees the same fake (detached); its real predictions from above still hold its graph
        with self._autocast():
            fake_d = fake.detach()
            loss_d = discriminator_loss(pred_real, self.discriminator(torch.cat([maps, fake_d], 1)))
            if self.mouth_discriminator is not None:
                m_fake_d = crop_regions(torch.cat([maps, fake_d], 1), centers, self.mouth_size)
                loss_d = loss_d + tc.mouth_weight * discriminator_loss(
                    m_pred_real, self.mouth_discriminator(m_fake_d)
                )
        self.opt_d.zero_grad(set_to_none=True)
        self.scaler_d.scale(loss_d).backward()
        self.scaler_d.step(self.opt_d)
        self.scaler_d.update()
        out = {"g_gan": g_gan.item(), "g_feat": g_feat.item(), "l1": l1.item(), "d": loss_d.item()}
        if self.mouth_discriminator is not None:
            out["g_mouth"] = g_mouth.item()
        return out

    @torch.no_grad()
    def generate(self, maps: np.ndarray, batch_size: int = 8) -> np.ndarray:
        """(N, R, R, 3) uint8 maps -> (N, R, R, 3) uint8 rendered faces (eval mode)."""
        self.generator.eval()
        out = []
        for i in range(0, len(maps), batch_size):
            with self._autocast():
                y = self.generator(to_tensor(maps[i : i + batch_size], self.device))
            out.append(to_images(y))
        return np.concatenate(out) if out else np.zeros_like(maps)

    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "mouth_discriminator": (
                self.mouth_discriminator.state_dict() if self.mouth_discriminator is not None else None
            ),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "scaler_g": self.scaler_g.state_dict(),
            "scaler_d": self.scaler_d.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        if self.mouth_discriminator is not None:
            if state.get("mouth_discriminator") is None:
                raise RenderError("checkpoint has no mouth discriminator but the config wants one")
            self.mouth_discriminator.load_state_dict(state["mouth_discriminator"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        if state.get("scaler_g"):
            self.scaler_g.load_state_dict(state["scaler_g"])
        if state.get("scaler_d"):
            self.scaler_d.load_state_dict(state["scaler_d"])


# -- outputs -------------------------------------------------------------------------------------


def grid_image(maps: np.ndarray, rendered: np.ndarray, real: np.ndarray) -> np.ndarray:
    """Rows of map | rendered | real, (rows*R, 3R, 3) uint8 RGB."""
    rows = [np.concatenate([m, f, r], axis=1) for m, f, r in zip(maps, rendered, real, strict=True)]
    return np.concatenate(rows, axis=0)


def write_png(path: Path, rgb: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".png")
    os.close(fd)
    try:
        if not cv2.imwrite(tmp, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
            raise RenderError(f"{path}: cannot write PNG")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".pt")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_training_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise RenderError(f"{path}: no checkpoint to resume from")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is one user-facing message
        raise RenderError(f"{path}: cannot read checkpoint ({exc.__class__.__name__}: {exc})") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or "epoch" not in ckpt:
        raise RenderError(f"{path}: not a renderer training checkpoint")
    return ckpt


def checkpoint_config(ckpt: dict[str, Any]) -> AnchorConfig:
    """The full AnchorConfig saved in a renderer checkpoint."""
    renderer_config_from_checkpoint(ckpt)  # clear error when the renderer section is missing
    return from_dict(AnchorConfig, ckpt["config"])


def _device(device: str | None) -> torch.device:
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _seed_everything(seed: int, epoch: int) -> np.random.Generator:
    # per-epoch seeds: a resumed run reproduces the rest of an uninterrupted one
    torch.manual_seed(seed * 100_003 + epoch)
    return np.random.default_rng([seed, epoch])


# -- the training loop ---------------------------------------------------------------------------


def train_renderer(
    dataset: str | Path | Dataset,
    out: str | Path,
    cfg: AnchorConfig,
    *,
    clip: str | Sequence[str] | None = None,
    resume: bool = False,
    device: str | None = None,
    progress: bool = True,
) -> Path:
    """Train the renderer on `clip` (or every clip) of a dataset; returns the checkpoint path.

    Writes into `out`: checkpoint.pt (every epoch), jaw.npz (the jaw regression fitted on the
    training frames), grid_epochNNN.png and grid.png (the latest).
    """
    ds = dataset if isinstance(dataset, Dataset) else load_dataset(dataset)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / CHECKPOINT
    tc, rc = cfg.renderer_train, cfg.renderer
    torch.set_num_threads(max(1, tc.threads))
    dev = _device(device)

    clips = select_clips(ds, clip)
    pca = dataset_pca(ds)
    jaw = fit_jaw(clips, cfg)
    jaw.save(out / JAW_FILE)
    train_pairs, val_pairs = build_pairs(clips, cfg, pca, jaw)
    log.info(
        "renderer %s (%d px) on %s: %d training pairs, %d held out, device %s%s",
        rc.preset, rc.resolution, ", ".join(c.name for c in clips), len(train_pairs),
        len(val_pairs), dev, " (AMP)" if tc.amp and dev.type == "cuda" else "",
    )

    torch.manual_seed(tc.seed)  # the initial weights
    trainer = RendererTrainer(cfg, dev)
    start_epoch = 0
    history: list[dict[str, float]] = []
    if resume:
        ckpt = load_training_checkpoint(ckpt_path)
        saved = renderer_config_from_checkpoint(ckpt, str(ckpt_path))
        if saved != rc:
            raise RenderError(
                f"{ckpt_path}: trained with renderer preset {saved.preset!r} "
                f"({saved.resolution} px, ngf {saved.ngf}); the current config differs"
            )
        trainer.load_state_dict(ckpt)
        start_epoch = int(ckpt["epoch"])
        history = list(ckpt.get("history", []))
        log.info("resuming from %s after epoch %d", ckpt_path, start_epoch)

    maps_t = to_tensor(train_pairs.maps)
    targets_t = to_tensor(train_pairs.targets)
    centers_t = torch.from_numpy(train_pairs.mouth_centers)
    max_shift = int(round(tc.shift_fraction * rc.resolution))
    grid_idx = np.linspace(0, len(val_pairs) - 1, min(GRID_ROWS, len(val_pairs))).round().astype(int)
    grid_src = val_pairs if len(val_pairs) else train_pairs
    if not len(val_pairs):
        grid_idx = np.arange(min(GRID_ROWS, len(train_pairs)))

    n = len(train_pairs)
    steps = max(1, (n + tc.batch_size - 1) // tc.batch_size)
    for epoch in range(start_epoch, tc.epochs):
        rng = _seed_everything(tc.seed, epoch)
        perm = rng.permutation(n)
        sums: dict[str, float] = {}
        bar = progress_bar(range(steps), desc=f"renderer epoch {epoch + 1}/{tc.epochs}", disable=not progress,
                   leave=False)
        for s in bar:
            idx = torch.from_numpy(perm[s * tc.batch_size : (s + 1) * tc.batch_size])
            m, t, c = shift_batch(maps_t[idx], targets_t[idx], centers_t[idx], max_shift, rng)
            losses = trainer.train_step(m.to(dev), t.to(dev), c.to(dev))
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.set_postfix(l1=f"{losses['l1']:.3f}", d=f"{losses['d']:.3f}")
        record = {k: v / steps for k, v in sums.items()}
        record["epoch"] = float(epoch + 1)
        if len(val_pairs):
            rendered = trainer.generate(val_pairs.maps)
            record["val_l1"] = float(
                np.abs(rendered.astype(np.float32) - val_pairs.targets.astype(np.float32)).mean()
                / 127.5
            )
            grid = grid_image(val_pairs.maps[grid_idx], rendered[grid_idx], val_pairs.targets[grid_idx])
        else:
            rendered = trainer.generate(grid_src.maps[grid_idx])
            grid = grid_image(grid_src.maps[grid_idx], rendered, grid_src.targets[grid_idx])
        history.append(record)
        write_png(out / f"grid_epoch{epoch + 1:03d}.png", grid)
        write_png(out / "grid.png", grid)
        payload = {
            "format": FORMAT,
            "version": VERSION,
            "config": to_dict(cfg),
            "epoch": epoch + 1,
            "clips": [c.name for c in clips],
            "dataset": str(ds.path),
            "history": history,
            **trainer.state_dict(),
        }
        save_checkpoint(ckpt_path, payload)
        log.info(
            "epoch %d/%d: %s", epoch + 1, tc.epochs,
            " ".join(f"{k}={v:.4f}" for k, v in record.items() if k != "epoch"),
        )
    if start_epoch >= tc.epochs:
        log.info("%s already trained for %d epochs (renderer_train.epochs=%d)", ckpt_path,
                 start_epoch, tc.epochs)
    return ckpt_path


def resolve_config(
    cfg: AnchorConfig,
    *,
    preset: str | None = None,
    overrides: Sequence[str] = (),
    epochs: int | None = None,
    resume_from: Path | None = None,
) -> AnchorConfig:
    """The training config: a named renderer preset (with any `--set renderer.*` re-applied on
    top), or when resuming without one the checkpoint's own renderer; `epochs` replaces
    renderer_train.epochs."""
    from anchor.config import apply_overrides
    from anchor.render.presets import renderer_preset

    if preset is not None:
        cfg = dataclasses.replace(cfg, renderer=renderer_preset(preset))
        mine = [o for o in overrides if o.strip().startswith("renderer.")]
        if mine:
            cfg = apply_overrides(cfg, mine)
    elif resume_from is not None and resume_from.is_file():
        saved = renderer_config_from_checkpoint(load_training_checkpoint(resume_from), str(resume_from))
        cfg = dataclasses.replace(cfg, renderer=saved)
    if epochs is not None:
        if epochs < 1:
            raise RenderError(f"--epochs must be >= 1, got {epochs}")
        cfg = dataclasses.replace(cfg, renderer_train=dataclasses.replace(cfg.renderer_train, epochs=epochs))
    return cfg
