"""`anchor prepare VIDEO... -o DATASET`: talking-head videos -> training dataset."""

from __future__ import annotations

import argparse
import dataclasses

from anchor.config import AnchorConfig
from anchor.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("videos", nargs="+", metavar="VIDEO", help="talking-head videos with speech")
    parser.add_argument("-o", "--output", required=True, metavar="DATASET",
                        help="dataset directory to create")
    parser.add_argument("--skip-bad", action="store_true",
                        help="report unusable videos (no audio, no face, undecodable) and go on")
    parser.add_argument("--force", action="store_true", help="replace an existing dataset")
    parser.add_argument(
        "--av-offset", type=_av_offset, default=None, metavar="auto|off|MS",
        help="A/V offset correction: auto = shift the audio by each clip's estimated offset when "
        "it is confident and more than one frame; off = never; MS = a fixed shift in "
        "milliseconds, positive when the audio is late (default: the config's face.av_offset, "
        "auto). The estimate is logged and stored per clip in the manifest either way",
    )

    parser.add_argument(
        "--mouth-basis", default=None, metavar="FILE",
        help="use this mouth PCA basis (a pca.npz, a mouth checkpoint.pt, or generic: the "
        "shipped generic model's) instead of fitting one: a dataset to fine-tune a mouth model "
        "on must share its basis",
    )


def _av_offset(text: str) -> str:
    from anchor.train.av_offset import parse_av_offset

    try:
        parse_av_offset(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return text.strip().lower()


def run(args: argparse.Namespace, cfg: AnchorConfig) -> int:
    from anchor.train.prepare import prepare_dataset

    if getattr(args, "av_offset", None) is not None:
        cfg = dataclasses.replace(cfg, face=dataclasses.replace(cfg.face, av_offset=args.av_offset))
    ds = prepare_dataset(args.videos, args.output, cfg, skip_bad=args.skip_bad, force=args.force,
                         mouth_basis=_basis(getattr(args, "mouth_basis", None), cfg))
    pca = ds.manifest.get("pca", {})
    frames = sum(c.frames for c in ds.clips)
    print(
        f"{ds.path}: {len(ds.clips)} clips, {frames} frames ({frames / cfg.video.fps:.1f} s); "
        f"mouth PCA {pca.get('dims')}-D explains {100 * float(pca.get('total', 0)):.2f}% "
        "of the variance"
    )
    shifted = [
        f"{c.name} {c.info['av_offset']['applied_ms']:+.0f} ms"
        for c in ds.clips
        if c.info.get("av_offset", {}).get("applied_ms")
    ]
    if shifted:
        print(f"audio shifted to match the lips (positive: was late): {', '.join(shifted)}")
    skipped = ds.manifest.get("skipped", [])
    if skipped:
        print(f"skipped {len(skipped)} unusable video(s): {', '.join(skipped)}")
    return 0


def _basis(choice: str | None, cfg: AnchorConfig) -> str | None:
    if choice != "generic":
        return choice
    from anchor.build.avatar import generic_mouth_path

    return str(generic_mouth_path(cfg.mouth_model.kind))
