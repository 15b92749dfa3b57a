"""`anchor export mouth CHECKPOINT -o mouth.onnx`: raw MFCC (B,200,13) -> raw PCA (B,50,10)."""

from __future__ import annotations

import argparse

from anchor.config import AnchorConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="runs/mouth/<kind>/checkpoint.pt")
    parser.add_argument("-o", "--output", required=True, help="ONNX file to write")


def run(args: argparse.Namespace, cfg: AnchorConfig) -> int:
    from anchor.mouth.export import export_mouth
    from anchor.mouth.runtime import MouthOnnx

    path = export_mouth(args.checkpoint, args.output)
    stored = MouthOnnx(path).config
    st = stored.streaming
    print(f"{stored.mouth_model.kind} -> {path} (opset 17, dynamic batch); streaming hop "
          f"{st.hop_frames} frames ({st.hop_ms:.0f} ms), lookahead {st.lookahead_ms:.0f} ms")
    return 0
