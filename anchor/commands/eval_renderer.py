"""`anchor eval renderer DATASET --checkpoint CKPT [--clip NAME] [--jaw jaw.npz]`."""

from __future__ import annotations

import argparse

from anchor.config import AnchorConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help="dataset directory written by `anchor prepare`")
    parser.add_argument("--checkpoint", default="runs/renderer/checkpoint.pt",
                        help="renderer checkpoint (default: runs/renderer/checkpoint.pt)")
    parser.add_argument("--clip", action="append", default=None, metavar="NAME",
                        help="score this clip's held-out frames (repeatable; default: the "
                             "checkpoint's training clips)")
    parser.add_argument("--jaw", default=None,
                        help="jaw regression .npz (default: jaw.npz beside the checkpoint, "
                             "else fitted on the training frames)")


def run(args: argparse.Namespace, cfg: AnchorConfig) -> int:
    from anchor.render.evaluate import evaluate_renderer

    result = evaluate_renderer(args.dataset, args.checkpoint, clip=args.clip, jaw_path=args.jaw,
                               threads=cfg.renderer_train.threads)
    for line in result.lines():
        print(line)
    return 0
