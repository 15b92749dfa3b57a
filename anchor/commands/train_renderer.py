"""`anchor train renderer DATASET [--preset cpu-small|paper-512] [--clip NAME] [--out runs/renderer]
[--resume] [--epochs N]`."""

from __future__ import annotations

import argparse
from pathlib import Path

from anchor.config import AnchorConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help="dataset directory written by `anchor prepare`")
    parser.add_argument("--preset", default=None,
                        help="renderer preset: cpu-small, gpu-256, paper-512 (default: the "
                             "config's renderer section, or the checkpoint's with --resume)")
    parser.add_argument("--clip", action="append", default=None, metavar="NAME",
                        help="train on this clip only (repeatable; default: every clip)")
    parser.add_argument("--out", default="runs/renderer",
                        help="output directory: checkpoint.pt, jaw.npz, grid PNGs per epoch")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    parser.add_argument("--epochs", type=int, default=None,
                        help="total epochs (renderer_train.epochs)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available)")


def run(args: argparse.Namespace, cfg: AnchorConfig) -> int:
    from anchor.train.renderer import (
        CHECKPOINT,
        load_training_checkpoint,
        resolve_config,
        train_renderer,
    )

    out = Path(args.out)
    cfg = resolve_config(
        cfg, preset=args.preset, overrides=getattr(args, "overrides", []), epochs=args.epochs,
        resume_from=out / CHECKPOINT if args.resume else None,
    )
    ckpt = train_renderer(args.dataset, out, cfg, clip=args.clip, resume=args.resume,
                          device=args.device)
    last = load_training_checkpoint(ckpt).get("history", [])
    summary = ", ".join(f"{k} {v:.4f}" for k, v in (last[-1] if last else {}).items() if k != "epoch")
    print(f"renderer {cfg.renderer.preset}: epoch {cfg.renderer_train.epochs} ({summary}) -> {ckpt}")
    print(f"grid -> {out / 'grid.png'}; jaw regression -> {out / 'jaw.npz'}")
    return 0
