"""Helpers for the renderer tests: tiny configs and trainer-format checkpoints."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from anchor.config import AnchorConfig, RendererConfig, to_dict


def tiny_renderer_config(**changes: object) -> RendererConfig:
    """A few-thousand-parameter pix2pixHD shape that runs in milliseconds."""
    base = RendererConfig(
        preset="test-tiny", resolution=32, ngf=4, n_downsample=2, n_blocks=1,
        ndf=8, n_layers_d=2, num_d=2,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def save_checkpoint(rcfg: RendererConfig, path: Path, seed: int = 0) -> Path:
    """A checkpoint in the trainer's format: {"config": AnchorConfig dict, "generator": state}."""
    import torch

    from anchor.render.networks import build_generator

    torch.manual_seed(seed)
    generator = build_generator(rcfg)
    cfg = dataclasses.replace(AnchorConfig(), renderer=rcfg)
    torch.save({"config": to_dict(cfg), "generator": generator.state_dict()}, path)
    return path
