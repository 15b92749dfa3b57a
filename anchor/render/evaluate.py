"""Renderer evaluation: PSNR and SSIM on held-out frames, and the jaw regression's R^2.

Held-out frames are the last `renderer_train.val_fraction` of each clip the checkpoint was
trained on (the split saved in its config), rendered from their own facial maps and compared
with the real crops at the renderer's resolution.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from anchor.errors import RenderError
from anchor.face.jaw import JawRegression
from anchor.render.networks import load_generator
from anchor.train.dataset import Dataset, load_dataset
from anchor.train.renderer import (
    JAW_FILE,
    build_pairs,
    checkpoint_config,
    dataset_pca,
    fit_jaw,
    jaw_r2,
    load_training_checkpoint,
    select_clips,
    to_images,
    to_tensor,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RendererEvaluation:
    clips: tuple[str, ...]
    frames: int  # held-out frames scored
    psnr: float  # dB, mean over frames
    ssim: float  # mean over frames
    jaw_r2_train: float  # whole jawline, training frames
    jaw_r2_val: float  # whole jawline, held-out frames
    chin_r2_train: float  # the chin's vertical position only
    chin_r2_val: float
    jaw_source: str  # the jaw.npz used, or "fitted" when none was beside the checkpoint

    def lines(self) -> list[str]:
        return [
            f"clips: {', '.join(self.clips)}",
            f"held-out frames: {self.frames}",
            f"PSNR: {self.psnr:.2f} dB",
            f"SSIM: {self.ssim:.4f}",
            f"jaw regression R^2 (jawline): train {self.jaw_r2_train:.3f}, held-out "
            f"{self.jaw_r2_val:.3f}; chin height: train {self.chin_r2_train:.3f}, held-out "
            f"{self.chin_r2_val:.3f} ({self.jaw_source})",
        ]


def image_metrics(rendered: np.ndarray, real: np.ndarray) -> tuple[float, float]:
    """Mean PSNR (dB) and SSIM over (N, R, R, 3) uint8 image pairs."""
    if len(rendered) == 0:
        return float("nan"), float("nan")
    psnr, ssim = [], []
    for f, r in zip(rendered, real, strict=True):
        p = peak_signal_noise_ratio(r, f, data_range=255)
        psnr.append(p if math.isfinite(p) else 100.0)
        ssim.append(structural_similarity(r, f, channel_axis=-1, data_range=255))
    return float(np.mean(psnr)), float(np.mean(ssim))


def evaluate_renderer(
    dataset: str | Path | Dataset,
    checkpoint: str | Path,
    *,
    clip: str | Sequence[str] | None = None,
    jaw_path: str | Path | None = None,
    threads: int = 2,
    batch_size: int = 8,
) -> RendererEvaluation:
    """Score a renderer checkpoint on the held-out frames of `clip` (default: its own clips)."""
    torch.set_num_threads(max(1, threads))
    checkpoint = Path(checkpoint)
    ckpt = load_training_checkpoint(checkpoint)
    cfg = checkpoint_config(ckpt)
    ds = dataset if isinstance(dataset, Dataset) else load_dataset(dataset)
    if clip is None:
        names = [c.name for c in ds.clips]
        clip = [n for n in ckpt.get("clips", names) if n in names] or names
    clips = select_clips(ds, clip)

    jaw_file = Path(jaw_path) if jaw_path is not None else checkpoint.parent / JAW_FILE
    if jaw_file.is_file():
        jaw, source = JawRegression.load(jaw_file), str(jaw_file)
    elif jaw_path is not None:
        raise RenderError(f"{jaw_file}: jaw regression does not exist")
    else:
        jaw, source = fit_jaw(clips, cfg), "fitted"
    scores = jaw_r2(jaw, clips, cfg)

    _, val = build_pairs(clips, cfg, dataset_pca(ds), jaw, train=False)
    generator, _ = load_generator(checkpoint)
    rendered = []
    with torch.no_grad():
        for i in range(0, len(val), batch_size):
            rendered.append(to_images(generator(to_tensor(val.maps[i : i + batch_size]))))
    fake = np.concatenate(rendered) if rendered else np.zeros_like(val.targets)
    psnr, ssim = image_metrics(fake, val.targets)
    log.info("renderer %s: PSNR %.2f dB, SSIM %.4f on %d frames", checkpoint, psnr, ssim, len(val))
    return RendererEvaluation(
        clips=tuple(c.name for c in clips), frames=len(val), psnr=psnr, ssim=ssim,
        jaw_r2_train=scores.train, jaw_r2_val=scores.val, chin_r2_train=scores.chin_train,
        chin_r2_val=scores.chin_val, jaw_source=source,
    )
