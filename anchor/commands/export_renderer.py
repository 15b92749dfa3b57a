"""`anchor export renderer CHECKPOINT -o renderer.onnx`: facial map -> face, dynamic batch."""

from __future__ import annotations

import argparse

from anchor.config import AnchorConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="renderer checkpoint from `anchor train renderer`")
    parser.add_argument("-o", "--output", required=True, help="ONNX file to write")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (>= 18)")


def run(args: argparse.Namespace, cfg: AnchorConfig) -> int:
    from anchor.render.backends import OnnxRuntimeBackend
    from anchor.render.export import export_renderer

    path = export_renderer(args.checkpoint, args.output, opset=args.opset)
    rc = OnnxRuntimeBackend(path, cfg.backend).config  # what serving will read back
    assert rc is not None
    print(f"renderer {rc.preset} ({rc.resolution}x{rc.resolution}, ngf {rc.ngf}, "
          f"{rc.n_downsample} down, {rc.n_blocks} blocks) -> {path} "
          f"(opset {args.opset}, dynamic batch, verified against torch)")
    return 0
