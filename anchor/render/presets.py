"""Named renderer shapes.

`cpu-small` is sized to stream >= 25 fps on a 2-core CPU with onnxruntime (2 threads, batch 1);
it is what `RendererConfig()` defaults to. Measure it with benchmarks/renderer_cpu.py.
`cpu-256` is the 256-pixel CPU shape; `gpu-256` and `paper-512` (the seed paper's pix2pixHD
global generator) are for TensorRT / torch-cuda.
"""

from __future__ import annotations

import dataclasses

from anchor.config import RendererConfig
from anchor.errors import ConfigError

_PRESETS: dict[str, RendererConfig] = {
    # The default CPU preset: streams at 25 fps on a 2-core CPU with most of the machine left for
    # the rest of the live pipeline (MFCC, TCN, maps, compositing, VP8 encoding): ~8 ms of CPU
    # per frame with onnxruntime (benchmarks/renderer_cpu.py). Face crops are scaled 256 -> 128.
    "cpu-small": RendererConfig(
        preset="cpu-small", resolution=128, ngf=16, n_downsample=3, n_blocks=3,
        local_enhancer=False, ndf=16, n_layers_d=3, num_d=3,
    ),
    # The largest 16/3/3 shape whose renderer alone still fits a 25 fps budget on a 2-core CPU
    # (~32 ms of CPU per frame), at the dataset's native 256 crop; it leaves little for the rest
    # of a live pipeline on the same two cores, and trains ~4x slower than cpu-small.
    "cpu-256": RendererConfig(
        preset="cpu-256", resolution=256, ngf=16, n_downsample=3, n_blocks=3,
        local_enhancer=False, ndf=16, n_layers_d=3, num_d=3,
    ),
    # A GPU middle ground: paper widths at a 256^2 face crop (TensorRT fp16 runs it in a few ms).
    "gpu-256": RendererConfig(
        preset="gpu-256", resolution=256, ngf=64, n_downsample=4, n_blocks=9,
        local_enhancer=False, ndf=64, n_layers_d=3, num_d=3,
    ),
    # Zheng et al. 2021 / pix2pixHD global generator at 512^2.
    "paper-512": RendererConfig(
        preset="paper-512", resolution=512, ngf=64, n_downsample=4, n_blocks=9,
        local_enhancer=False, ndf=64, n_layers_d=3, num_d=3,
    ),
}


def preset_names() -> list[str]:
    return sorted(_PRESETS)


def renderer_preset(name: str, **overrides: object) -> RendererConfig:
    """The RendererConfig of a named preset, optionally with some fields replaced."""
    try:
        cfg = _PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown renderer preset {name!r} (known: {', '.join(preset_names())})"
        ) from None
    return dataclasses.replace(cfg, **overrides) if overrides else cfg  # type: ignore[arg-type]
