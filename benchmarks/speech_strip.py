"""The README's picture: an avatar's face during loud speech and during silence.

    python -m benchmarks.speech_strip ../shared/media/speech/musetalk_eng.wav \\
        -o docs/default_avatar_speech_vs_silence.png [--avatar BUNDLE]

Renders AUDIO with `anchor render` (the same stages as the server), then tiles the face box of
every second frame of the loudest 0.6 s of speech (top) and of 0.6 s of silence (bottom).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

WINDOW = 15  # frames (0.6 s at 25 fps)
TILE = 150  # px


def loudest_and_quietest(rms: np.ndarray, window: int) -> tuple[int, int]:
    """Start frames of the loudest and the quietest `window`-frame stretches."""
    sums = np.convolve(rms, np.ones(window), "valid")
    return int(np.argmax(sums)), int(np.argmin(sums))


def main(argv: list[str] | None = None) -> int:
    import av

    from anchor.audio.decode import decode_audio
    from anchor.avatar.bundle import default_avatar_path, load_avatar

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("audio")
    parser.add_argument("-o", "--out", required=True)
    parser.add_argument("--avatar", default=None)
    args = parser.parse_args(argv)
    bundle = load_avatar(args.avatar or default_avatar_path())
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "out.mp4"
        cmd = [sys.executable, "-m", "anchor", "-q", "render", args.audio, "-o", str(video)]
        if args.avatar:
            cmd += ["--avatar", args.avatar]
        subprocess.run(cmd, check=True)
        with av.open(str(video)) as c:
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    samples = decode_audio(args.audio, 16000)
    n = min(len(frames), len(samples) // 640)
    rms = np.sqrt(np.mean(samples[: n * 640].reshape(n, 640).astype(np.float64) ** 2, axis=1))
    loud, quiet = loudest_and_quietest(rms, WINDOW)
    # The renderer's crop box holds hair and shoulders too: the middle 60 % of it is the face.
    bx0, by0, bx1, by1 = bundle.body.face_boxes[0]
    cx, cy, half = (bx0 + bx1) / 2, (by0 + by1) / 2, 0.3 * (bx1 - bx0)
    h, w = frames[0].shape[:2]
    x0, y0 = max(0, int(cx - half)), max(0, int(cy - half))
    x1, y1 = min(w, int(cx + half)), min(h, int(cy + half))
    rows = []
    for start, label in ((loud, f"speech frames {loud}-{loud + WINDOW - 1} (every 2nd)"),
                         (quiet, "silence")):
        tiles = [cv2.resize(frames[i][y0:y1, x0:x1], (TILE, TILE), interpolation=cv2.INTER_AREA)
                 for i in range(start, start + WINDOW, 2)]
        row = np.concatenate(tiles, axis=1)
        cv2.putText(row, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 0), 1, cv2.LINE_AA)
        rows.append(row)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR))
    print(f"{out}: loud stretch from frame {loud}, silence from frame {quiet}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
