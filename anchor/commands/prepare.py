"""`anchor prepare VIDEO... -o DATASET`: talking-head videos -> training dataset."""

from __future__ import annotations

import argparse

from anchor.config import AnchorConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("videos", nargs="+", metavar="VIDEO", help="talking-head videos with speech")
    parser.add_argument("-o", "--output", required=True, metavar="DATASET",
                        help="dataset directory to create")
    parser.add_argument("--skip-bad", action="store_true",
                        help="report unusable videos (no audio, no face, undecodable) and go on")
    parser.add_argument("--force", action="store_true", help="replace an existing dataset")


def run(args: argparse.Namespace, cfg: AnchorConfig) -> int:
    from anchor.train.prepare import prepare_dataset

    ds = prepare_dataset(args.videos, args.output, cfg, skip_bad=args.skip_bad, force=args.force)
    pca = ds.manifest.get("pca", {})
    frames = sum(c.frames for c in ds.clips)
    print(
        f"{ds.path}: {len(ds.clips)} clips, {frames} frames ({frames / cfg.video.fps:.1f} s); "
        f"mouth PCA {pca.get('dims')}-D explains {100 * float(pca.get('total', 0)):.2f}% "
        "of the variance"
    )
    skipped = ds.manifest.get("skipped", [])
    if skipped:
        print(f"skipped {len(skipped)} unusable video(s): {', '.join(skipped)}")
    return 0
