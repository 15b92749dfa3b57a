"""The one `anchor` command.

Each subcommand lives in `anchor/commands/<name>.py` as a thin adapter exposing
`add_arguments(parser)` and `run(args, cfg) -> int`; heavy imports (torch, aiortc) happen inside
`run` so `anchor --help` stays fast. User-facing failures (`AnchorError`) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from anchor.config import load_config
from anchor.errors import AnchorError

# (command, sub-command or None, module, help)
COMMANDS: list[tuple[str, str | None, str, str]] = [
    ("serve", None, "anchor.commands.serve", "stream the anchor to browsers over WebRTC"),
    ("push", None, "anchor.commands.push", "stream a file or the microphone to a running server"),
    ("prepare", None, "anchor.commands.prepare", "videos -> dataset (MFCC, landmarks, mouth PCA, edges)"),
    ("train", "mouth", "anchor.commands.train_mouth", "train an audio-to-mouth model"),
    ("train", "renderer", "anchor.commands.train_renderer", "train the pix2pixHD face renderer"),
    ("eval", "mouth", "anchor.commands.eval_mouth", "evaluate every trained mouth model (Tables 1-2, Fig. 5)"),
    ("eval", "renderer", "anchor.commands.eval_renderer", "PSNR/SSIM of the renderer and jaw-regression R^2"),
    ("export", "mouth", "anchor.commands.export_mouth", "mouth model checkpoint -> ONNX"),
    ("export", "renderer", "anchor.commands.export_renderer", "renderer checkpoint -> ONNX (dynamic batch)"),
    ("build-engine", None, "anchor.commands.build_engine", "renderer ONNX -> cached TensorRT fp16 engine"),
    ("build-avatar", None, "anchor.commands.build_avatar", "video -> avatar bundle (prepare, train, export)"),
    ("render", None, "anchor.commands.render", "audio file -> talking-anchor MP4 (H.264 + AAC)"),
    ("bench", None, "anchor.commands.bench", "run a benchmark suite (JSON + PNG results)"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="anchor", description="Real-time streaming virtual news anchor."
    )
    parser.add_argument("--config", help="TOML config file (sections as in anchor/config.py)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
        help="override one config field, e.g. --set streaming.hop_frames=5 (repeatable)",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging: -v debug for anchor, -vv also for aiortc/aiohttp")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    groups: dict[str, argparse._SubParsersAction[argparse.ArgumentParser]] = {}
    for name, subname, module, help_text in COMMANDS:
        mod = importlib.import_module(module)
        if subname is None:
            p = sub.add_parser(name, help=help_text, description=help_text)
        else:
            if name not in groups:
                group_parser = sub.add_parser(name, help=f"{name} a model (mouth | renderer)")
                groups[name] = group_parser.add_subparsers(
                    dest="subcommand", metavar="WHAT", required=True
                )
            p = groups[name].add_parser(subname, help=help_text, description=help_text)
        mod.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


# Libraries that log every packet or connection at DEBUG/INFO: quiet unless -vv.
NOISY_LOGGERS = ("aiortc", "aioice", "aiohttp.access", "av", "PIL", "matplotlib")


def configure_logging(verbose: int, quiet: bool = False) -> int:
    """Root level INFO by default, WARNING with -q, DEBUG with -v; -vv also lets the noisy
    libraries log at DEBUG. Returns the anchor loggers' level."""
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        force=True)
    logging.getLogger("anchor").setLevel(level)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose >= 2 else logging.WARNING)
    return level


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose, args.quiet)
    try:
        cfg = load_config(args.config, args.overrides)
        module = importlib.import_module(args._module)
        return int(module.run(args, cfg) or 0)
    except AnchorError as exc:
        print(f"anchor: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("anchor: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
