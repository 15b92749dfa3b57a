"""`anchor render AUDIO [--avatar BUNDLE] -o out.mp4`: a talking-anchor MP4 (H.264 + AAC).

Runs the serving pipeline's own stages unpaced with a file source and an MP4 sink.
"""

from __future__ import annotations

import argparse
import json
import logging

from anchor.config import AnchorConfig, to_dict

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("audio", help="speech to lip-sync (any format PyAV decodes)")
    parser.add_argument("-o", "--out", required=True, help="output .mp4")
    parser.add_argument("--avatar", help="avatar bundle directory (default: the shipped avatar)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace, cfg: AnchorConfig) -> int:
    from anchor.pipeline.engine import load_models
    from anchor.pipeline.offline import render_file_to_mp4

    models = load_models(args.avatar, cfg)
    try:
        result = render_file_to_mp4(args.audio, args.out, models, progress=not args.no_progress)
    finally:
        models.engine.close()
    info = {
        "out": str(result.path),
        "frames": result.frames,
        "speech_frames": result.speech_frames,
        "duration_s": round(result.duration_s, 3),
        "elapsed_s": round(result.elapsed_s, 2),
        "render_fps": round(result.render_fps, 1),
        "lookahead_ms": result.lookahead_ms,
        "avatar": models.name,
    }
    if args.json:
        print(json.dumps({**info, "streaming": to_dict(models.streaming)}))
    else:
        print(
            f"wrote {info['out']}: {result.frames} frames ({result.duration_s:.2f} s, "
            f"{result.speech_frames} speaking) in {result.elapsed_s:.1f} s "
            f"({result.render_fps:.1f} fps), lookahead {result.lookahead_ms:.0f} ms"
        )
    return 0
