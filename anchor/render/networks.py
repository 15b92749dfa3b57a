"""pix2pixHD networks (Wang et al. 2018) in plain modern PyTorch, configured by `RendererConfig`.

Generators map a facial map (B, input_nc, R, R) in [-1, 1] to a face (B, output_nc, R, R) in
[-1, 1] (tanh). Discriminators are conditional: they see the map and the image concatenated on
channels, and return every intermediate activation so the trainer can compute the
feature-matching loss (the last entry of each list is the patch prediction).

Normalisation is instance norm without affine parameters and padding is reflection, as in the
original; nothing here touches a device: move modules with `.to(device)`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from anchor.config import RendererConfig, from_dict
from anchor.errors import RenderError

# Conv widths of the discriminators never exceed this (as in pix2pixHD).
MAX_DISC_CHANNELS = 512


def _norm(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


def validate_renderer_config(cfg: RendererConfig) -> None:
    """Raise RenderError when the shape cannot work (resolution not divisible, zero widths...)."""
    if cfg.ngf < 1 or cfg.n_blocks < 0 or cfg.n_downsample < 0:
        raise RenderError(
            f"renderer config: ngf ({cfg.ngf}) must be >= 1, n_blocks ({cfg.n_blocks}) and "
            f"n_downsample ({cfg.n_downsample}) >= 0"
        )
    factor = 2 ** (cfg.n_downsample + (1 if cfg.local_enhancer else 0))
    if cfg.resolution < factor or cfg.resolution % factor:
        raise RenderError(
            f"renderer config: resolution {cfg.resolution} must be a multiple of {factor} "
            f"(2^n_downsample{' x 2 for the local enhancer' if cfg.local_enhancer else ''})"
        )


class ResnetBlock(nn.Module):
    """x + (pad, conv3, norm, relu, pad, conv3, norm)(x); width preserved."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, kernel_size=3),
            _norm(channels),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, kernel_size=3),
            _norm(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


def _stem(in_nc: int, ngf: int) -> list[nn.Module]:
    return [nn.ReflectionPad2d(3), nn.Conv2d(in_nc, ngf, kernel_size=7), _norm(ngf), nn.ReLU(True)]


def _down(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), _norm(c_out), nn.ReLU(True)]


def _up(c_in: int, c_out: int) -> list[nn.Module]:
    return [
        nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=1),
        _norm(c_out),
        nn.ReLU(True),
    ]


def _head(ngf: int, out_nc: int) -> list[nn.Module]:
    return [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_nc, kernel_size=7), nn.Tanh()]


class GlobalGenerator(nn.Module):
    """Stem, n_downsample stride-2 convs, n_blocks residual blocks, mirrored transposed convs, tanh.

    Widths: ngf at full resolution, doubling per downsampling (ngf * 2^n_downsample at the
    bottleneck). `ngf` and `with_head` are overridable so the LocalEnhancer can reuse it as its
    coarse branch.
    """

    def __init__(
        self, cfg: RendererConfig, *, ngf: int | None = None, with_head: bool = True
    ) -> None:
        super().__init__()
        validate_renderer_config(cfg)
        ngf = cfg.ngf if ngf is None else ngf
        layers: list[nn.Module] = _stem(cfg.input_nc, ngf)
        for i in range(cfg.n_downsample):
            layers += _down(ngf * 2**i, ngf * 2 ** (i + 1))
        bottleneck = ngf * 2**cfg.n_downsample
        layers += [ResnetBlock(bottleneck) for _ in range(cfg.n_blocks)]
        for i in range(cfg.n_downsample, 0, -1):
            layers += _up(ngf * 2**i, ngf * 2 ** (i - 1))
        if with_head:
            layers += _head(ngf, cfg.output_nc)
        self.model = nn.Sequential(*layers)
        self.out_channels = ngf

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, input_nc, R, R) -> (B, output_nc, R, R), or (B, ngf, R, R) without the head
        return self.model(x)


def _half(x: torch.Tensor) -> torch.Tensor:
    # pix2pixHD's image pyramid: 3x3 average, stride 2, padding not counted
    return F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)


class LocalEnhancer(nn.Module):
    """One pix2pixHD local enhancer around a global generator that runs at half resolution.

    The global branch is twice as wide (2 * ngf) and drops its output head; its features are
    added to the enhancer's own downsampled full-resolution features, then residual blocks
    (n_blocks_local = 3, as in pix2pixHD), one transposed conv back to R and the tanh head.
    """

    n_blocks_local = 3

    def __init__(self, cfg: RendererConfig) -> None:
        super().__init__()
        validate_renderer_config(cfg)
        ngf = cfg.ngf
        self.global_branch = GlobalGenerator(cfg, ngf=2 * ngf, with_head=False)
        self.downsample = nn.Sequential(*_stem(cfg.input_nc, ngf), *_down(ngf, 2 * ngf))
        self.upsample = nn.Sequential(
            *[ResnetBlock(2 * ngf) for _ in range(self.n_blocks_local)],
            *_up(2 * ngf, ngf),
            *_head(ngf, cfg.output_nc),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        coarse = self.global_branch(_half(x))  # (B, 2 ngf, R/2, R/2)
        return self.upsample(self.downsample(x) + coarse)


def build_generator(cfg: RendererConfig) -> nn.Module:
    """GlobalGenerator, or LocalEnhancer when cfg.local_enhancer."""
    return LocalEnhancer(cfg) if cfg.local_enhancer else GlobalGenerator(cfg)


class NLayerDiscriminator(nn.Module):
    """PatchGAN: 4x4 convs (n_layers with stride 2 then one stride 1) and a 1-channel patch map.

    `forward` returns the n_layers + 2 intermediate activations; the last is the prediction.
    """

    def __init__(self, input_nc: int, ndf: int, n_layers: int) -> None:
        super().__init__()
        if n_layers < 1:
            raise RenderError(f"discriminator n_layers must be >= 1, got {n_layers}")
        pad = math.ceil((4 - 1) / 2)
        stages: list[nn.Sequential] = [
            nn.Sequential(nn.Conv2d(input_nc, ndf, 4, stride=2, padding=pad), nn.LeakyReLU(0.2, True))
        ]
        nf = ndf
        for n in range(1, n_layers + 1):
            nf_prev, nf = nf, min(nf * 2, MAX_DISC_CHANNELS)
            stride = 2 if n < n_layers else 1
            stages.append(
                nn.Sequential(
                    nn.Conv2d(nf_prev, nf, 4, stride=stride, padding=pad),
                    _norm(nf),
                    nn.LeakyReLU(0.2, True),
                )
            )
        stages.append(nn.Sequential(nn.Conv2d(nf, 1, 4, stride=1, padding=pad)))
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats: list[torch.Tensor] = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


class MultiscaleDiscriminator(nn.Module):
    """cfg.num_d PatchGANs on an image pyramid (full, 1/2, 1/4, ...).

    Input: (B, input_nc, R, R), normally cat(map, image) so input_nc = cfg.input_nc +
    cfg.output_nc (the default). Output: one list of features per scale, finest scale first.
    """

    def __init__(self, cfg: RendererConfig, input_nc: int | None = None) -> None:
        super().__init__()
        if cfg.num_d < 1:
            raise RenderError(f"renderer config: num_d must be >= 1, got {cfg.num_d}")
        in_nc = cfg.input_nc + cfg.output_nc if input_nc is None else input_nc
        self.num_d = cfg.num_d
        self.n_layers = cfg.n_layers_d
        self.scales = nn.ModuleList(
            NLayerDiscriminator(in_nc, cfg.ndf, cfg.n_layers_d) for _ in range(cfg.num_d)
        )

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        results: list[list[torch.Tensor]] = []
        for i, disc in enumerate(self.scales):
            if i:
                x = _half(x)
            results.append(disc(x))
        return results


class MouthCropDiscriminator(nn.Module):
    """A small PatchGAN on the mouth crop (the part-attention idea: extra adversarial focus on
    the region that moves with speech).

    Input: cat(map crop, image crop) (B, input_nc + output_nc, C, C); crops come from
    `crop_regions`. Two stride-2 layers keep it meaningful for crops down to ~32 px.
    Output: list of features, last = patch prediction (same form as one scale of the
    MultiscaleDiscriminator, so `lsgan_loss` / `feature_matching_loss` accept it wrapped in a list).
    """

    n_layers = 2

    def __init__(self, cfg: RendererConfig) -> None:
        super().__init__()
        self.disc = NLayerDiscriminator(cfg.input_nc + cfg.output_nc, cfg.ndf, self.n_layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.disc(x)


def mouth_crop_size(resolution: int) -> int:
    """Side of the square mouth crop for a renderer resolution: a quarter of the face, >= 32 px."""
    return max(32, (resolution // 4 + 7) // 8 * 8)


def crop_regions(x: torch.Tensor, centers: torch.Tensor, size: int) -> torch.Tensor:
    """Square crops of side `size` centred on `centers` (B, 2) as (x, y) pixels, clamped inside.

    (B, C, H, W) -> (B, C, size, size). Plain slicing, so gradients flow to `x`.
    """
    b, _, h, w = x.shape
    if size > h or size > w:
        raise RenderError(f"mouth crop {size} px does not fit a {h}x{w} image")
    crops = []
    for i in range(b):
        cx, cy = (int(round(float(v))) for v in centers[i])
        x0 = min(max(cx - size // 2, 0), w - size)
        y0 = min(max(cy - size // 2, 0), h - size)
        crops.append(x[i, :, y0 : y0 + size, x0 : x0 + size])
    return torch.stack(crops)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def load_checkpoint_dict(checkpoint_path: str | Path) -> dict[str, Any]:
    """torch.load a renderer checkpoint (weights only) and check the keys everyone relies on."""
    path = Path(checkpoint_path)
    if not path.is_file():
        raise RenderError(f"{path}: renderer checkpoint does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is one user-facing message
        raise RenderError(f"{path}: cannot read renderer checkpoint ({exc.__class__.__name__}: {exc})") from exc
    if not isinstance(ckpt, dict) or "generator" not in ckpt or "config" not in ckpt:
        raise RenderError(f"{path}: not a renderer checkpoint (needs keys 'config' and 'generator')")
    return ckpt


def renderer_config_from_checkpoint(ckpt: dict[str, Any], where: str = "checkpoint") -> RendererConfig:
    config = ckpt.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("renderer"), dict):
        raise RenderError(f"{where}: checkpoint config has no 'renderer' section")
    return from_dict(RendererConfig, config["renderer"])


def generator_from_checkpoint(
    ckpt: dict[str, Any], where: str = "checkpoint"
) -> tuple[nn.Module, RendererConfig]:
    """The generator (eval mode, CPU, fp32) and its RendererConfig from a loaded checkpoint dict."""
    cfg = renderer_config_from_checkpoint(ckpt, where)
    generator = build_generator(cfg)
    try:
        generator.load_state_dict(ckpt["generator"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise RenderError(
            f"{where}: generator weights do not match its renderer config ({first})"
        ) from exc
    generator.eval()
    return generator, cfg


def load_generator(checkpoint_path: str | Path) -> tuple[nn.Module, RendererConfig]:
    """The trained generator (eval mode, CPU, fp32) and its RendererConfig from a checkpoint.

    Checkpoint contract (written by anchor/train/renderer.py): a torch.save dict with "config"
    (the full AnchorConfig as a dict; the generator shape under ["config"]["renderer"]) and
    "generator" (the state_dict).
    """
    return generator_from_checkpoint(load_checkpoint_dict(checkpoint_path), str(checkpoint_path))
