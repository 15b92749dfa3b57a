"""`anchor train mouth DATASET [--model K] [--out runs/mouth] [--resume] [--epochs N] [--base CKPT]`."""

from __future__ import annotations

import argparse

from anchor.config import AnchorConfig

KINDS = ("adversarial-tcn", "tcn", "lstm", "bilstm")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help="dataset directory written by `anchor prepare`")
    parser.add_argument("--model", choices=KINDS, default=None,
                        help="model kind (default: mouth_model.kind, adversarial-tcn)")
    parser.add_argument("--out", default="runs/mouth",
                        help="runs directory; the checkpoint goes to OUT/<kind>/checkpoint.pt")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    parser.add_argument("--epochs", type=int, default=None, help="total epochs (mouth_train.epochs)")
    parser.add_argument("--base", default=None, metavar="CHECKPOINT|generic",
                        help="fine-tune this mouth checkpoint (generic: the one anchor ships) "
                             "instead of training from scratch; DATASET must be prepared with "
                             "--mouth-basis of it")


def run(args: argparse.Namespace, cfg: AnchorConfig) -> int:
    from anchor.train.mouth import resolve_config, train_mouth

    cfg = resolve_config(cfg, kind=args.model, epochs=args.epochs)
    base = getattr(args, "base", None)
    if base == "generic":
        from anchor.build.avatar import generic_mouth_path

        base = generic_mouth_path(cfg.mouth_model.kind)
    result = train_mouth(args.dataset, args.out, cfg, resume=args.resume, base=base)
    print(f"{cfg.mouth_model.kind}: epoch {result.epoch}, held-out MSE {result.val_loss:.4g} "
          f"-> {result.checkpoint}")
    return 0
