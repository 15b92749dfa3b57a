"""pix2pixHD losses: least-squares GAN and discriminator feature matching.

Discriminator outputs come in three shapes and every loss accepts all of them:
- a tensor (a bare patch prediction),
- a list of feature tensors, last = prediction (one PatchGAN, e.g. MouthCropDiscriminator),
- a list of such lists (MultiscaleDiscriminator, one per scale).
The L1 loss to the target image is the trainer's (weighted by renderer_train.l1_weight).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F

DiscOutput = torch.Tensor | Sequence[torch.Tensor] | Sequence[Sequence[torch.Tensor]]


def _per_scale(preds: DiscOutput) -> list[list[torch.Tensor]]:
    if isinstance(preds, torch.Tensor):
        return [[preds]]
    items = list(preds)
    if not items:
        raise ValueError("empty discriminator output")
    if isinstance(items[0], torch.Tensor):
        return [items]  # type: ignore[list-item]
    return [list(scale) for scale in items]  # type: ignore[arg-type]


def lsgan_loss(preds: DiscOutput, target_is_real: bool) -> torch.Tensor:
    """Mean squared distance of each scale's patch prediction to 1 (real) or 0 (fake), summed
    over scales (as pix2pixHD does)."""
    total: torch.Tensor | None = None
    for scale in _per_scale(preds):
        pred = scale[-1]
        target = torch.ones_like(pred) if target_is_real else torch.zeros_like(pred)
        loss = F.mse_loss(pred, target)
        total = loss if total is None else total + loss
    assert total is not None
    return total


def feature_matching_loss(
    fake_feats: DiscOutput, real_feats: DiscOutput, num_d: int, n_layers: int
) -> torch.Tensor:
    """L1 between the discriminator's intermediate activations on fake and real inputs.

    Every feature but the final prediction counts, weighted 4 / (n_layers + 1) per layer and
    1 / num_d per scale (pix2pixHD's weighting); real features are detached so only the
    generator learns from it. Multiply by renderer_train.feat_weight in the trainer.
    """
    fake, real = _per_scale(fake_feats), _per_scale(real_feats)
    if len(fake) != len(real):
        raise ValueError(f"fake has {len(fake)} scales, real has {len(real)}")
    layer_w = 4.0 / (n_layers + 1)
    scale_w = 1.0 / num_d
    total = fake[0][0].new_zeros(())
    for f_scale, r_scale in zip(fake, real, strict=True):
        for f, r in zip(f_scale[:-1], r_scale[:-1], strict=True):
            total = total + scale_w * layer_w * F.l1_loss(f, r.detach())
    return total


def discriminator_loss(real_preds: DiscOutput, fake_preds: DiscOutput) -> torch.Tensor:
    """The usual pix2pixHD D objective: 0.5 * (LSGAN(real, 1) + LSGAN(fake, 0))."""
    return 0.5 * (lsgan_loss(real_preds, True) + lsgan_loss(fake_preds, False))
