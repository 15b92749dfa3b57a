"""`anchor build-avatar VIDEO [--template CLIP] [--gestures FILE.toml] -o BUNDLE [--name NAME]
[--work DIR] [--resume] [--base-mouth generic|none|CHECKPOINT]`,
`anchor build-avatar --photo FILE.jpg -o BUNDLE` (any frontal portrait) and
`anchor build-avatar --default --mouth CHECKPOINT --clips DATASET` (the shipped avatar)."""

from __future__ import annotations

import argparse

from anchor.config import AnchorConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from anchor.build.default_avatar import add_default_arguments

    parser.add_argument("video", nargs="?", help="talking-head training video (with audio)")
    parser.add_argument("--template", default=None, metavar="CLIP",
                        help="idle footage for the body template (default: the quietest >= 2 s "
                             "stretch of VIDEO)")
    parser.add_argument("-o", "--out", default=None, metavar="BUNDLE",
                        help="bundle directory to write (--default: anchor/avatar/default)")
    parser.add_argument("--name", default=None, help="the avatar's name (default: VIDEO's stem)")
    parser.add_argument("--work", default=None,
                        help="work directory for intermediate results (default: BUNDLE.work)")
    parser.add_argument("--resume", action="store_true",
                        help="continue a previous build in --work, skipping finished steps")
    parser.add_argument("--template-seconds", type=float, default=3.0,
                        help="length of the automatically chosen template stretch (>= 2)")
    parser.add_argument("--gestures", default=None, metavar="FILE.toml",
                        help="keyword gestures cut from VIDEO: [[gesture]] tables with name, "
                             "keywords, start_s, end_s (optionally probability, ramp_in_s, "
                             "hold_s, ramp_out_s)")
    parser.add_argument("--photo", default=None, metavar="FILE.jpg",
                        help="build from one frontal portrait instead of a video: warped mouths, "
                             "idle sway and blinks, as the default avatar (mouth: --mouth, or the "
                             "generic model)")
    parser.add_argument("--default", action="store_true",
                        help="rebuild the default avatar from the astronaut portrait instead")
    group = parser.add_argument_group("pre-trained mouth model / --default")
    add_default_arguments(group)  # type: ignore[arg-type]
    group.add_argument(
        "--base-mouth", default="generic", metavar="CHECKPOINT|generic|none",
        help="the mouth model to fine-tune on VIDEO: generic = the many-speaker model anchor "
        "ships (default), a mouth checkpoint.pt, or none = train from scratch on VIDEO alone",
    )
    group.add_argument("--mouth-dataset", default=None, metavar="DATASET",
                       help="with --mouth for VIDEO: the dataset that model was trained on "
                            "(its PCA basis; default: read from the checkpoint)")


def run(args: argparse.Namespace, cfg: AnchorConfig) -> int:
    from anchor.errors import AvatarError

    if args.default:
        from anchor.build.default_avatar import build_default_avatar

        if args.clips is None:
            raise AvatarError("--default needs --clips DATASET (the mouth model's dataset)")
        facts = build_default_avatar(
            cfg, clips=args.clips, mouth_checkpoint=args.mouth_checkpoint,
            mouth_onnx=args.mouth_onnx, out=args.out, work=args.work or "data/default_avatar_work",
            frames=args.frames, idle_frames=args.idle_frames, epochs=args.epochs,
            bake_idle=args.bake_idle, resume=args.resume,
        )
        ev = facts.get("eval", {})
        b = facts["bundle"]
        print(f"default avatar -> {b['bundle']} ({b['bytes'] / 1e6:.1f} MB); renderer PSNR "
              f"{ev.get('psnr_db')} dB, SSIM {ev.get('ssim')}; strip {ev.get('strip')}")
        return 0

    if args.photo is not None:
        return _photo(args, cfg)

    from anchor.avatar.bundle import bundle_size
    from anchor.build.avatar import build_avatar

    if args.video is None or args.out is None:
        raise AvatarError("build-avatar needs VIDEO and -o BUNDLE (or --default)")
    if args.mouth_onnx is not None:
        raise AvatarError("--mouth-onnx is only for --default; give --mouth CHECKPOINT")
    from anchor.build.avatar import resolve_base_mouth

    base = None if args.mouth_checkpoint is not None else resolve_base_mouth(args.base_mouth, cfg)
    out = build_avatar(
        args.video, args.out, cfg, template=args.template, name=args.name, work=args.work,
        resume=args.resume, mouth_checkpoint=args.mouth_checkpoint,
        mouth_dataset=args.mouth_dataset, template_seconds=args.template_seconds,
        gestures=args.gestures, base_mouth=base,
    )
    print(f"avatar bundle -> {out} ({bundle_size(out) / 1e6:.1f} MB)")
    return 0


def _photo(args: argparse.Namespace, cfg: AnchorConfig) -> int:
    from pathlib import Path

    from anchor.avatar.bundle import bundle_size
    from anchor.build.avatar import generic_mouth_path
    from anchor.build.default_avatar import build_default_avatar
    from anchor.errors import AvatarError

    if args.out is None or args.video is not None:
        raise AvatarError("build-avatar --photo FILE needs -o BUNDLE and no VIDEO")
    mouth = args.mouth_checkpoint
    if mouth is None and args.mouth_onnx is None:
        mouth = generic_mouth_path(cfg.mouth_model.kind)
        if not mouth.is_file():
            raise AvatarError(f"no generic mouth model at {mouth}; give --mouth CHECKPOINT")
    out = Path(args.out)
    facts = build_default_avatar(
        cfg, clips=args.clips, mouth_checkpoint=mouth, mouth_onnx=args.mouth_onnx, out=out,
        work=args.work or out.parent / f"{out.name}.work", frames=args.frames,
        idle_frames=args.idle_frames, epochs=args.epochs, bake_idle=args.bake_idle,
        resume=args.resume, photo=args.photo, name=args.name or Path(args.photo).stem,
    )
    ev = facts.get("eval", {})
    print(f"avatar bundle -> {out} ({bundle_size(out) / 1e6:.1f} MB); renderer PSNR "
          f"{ev.get('psnr_db')} dB, SSIM {ev.get('ssim')} on held-out synthetic pairs; "
          f"strip {ev.get('strip')}")
    return 0
