"""`anchor build-engine RENDERER.onnx [--max-batch N] [--engines-dir engines]`: cached TensorRT
fp16 engine keyed by GPU name + TensorRT version + ONNX sha256 (needs TensorRT and a CUDA GPU)."""

from __future__ import annotations

import argparse

from anchor.config import AnchorConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("onnx", help="renderer ONNX from `anchor export renderer`")
    parser.add_argument("--max-batch", type=int, default=None,
                        help="largest batch the engine accepts (default backend.max_batch)")
    parser.add_argument("--engines-dir", default=None,
                        help="engine cache directory (default backend.engines_dir)")
    parser.add_argument("--force", action="store_true", help="rebuild even when cached")
    parser.add_argument("--fp32", action="store_true", help="build without the fp16 flag")


def run(args: argparse.Namespace, cfg: AnchorConfig) -> int:
    import time

    from anchor.render.tensorrt import build_engine, import_tensorrt

    import_tensorrt()  # fail first, in one line, where TensorRT is missing
    max_batch = args.max_batch if args.max_batch is not None else cfg.backend.max_batch
    engines_dir = args.engines_dir or cfg.backend.engines_dir
    t0 = time.perf_counter()
    path = build_engine(args.onnx, engines_dir, max_batch, fp16=not args.fp32, force=args.force)
    print(f"TensorRT engine (batch 1..{max_batch}, {'fp32' if args.fp32 else 'fp16'}): {path} "
          f"({time.perf_counter() - t0:.1f} s)")
    return 0
