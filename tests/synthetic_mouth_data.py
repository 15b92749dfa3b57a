"""A tiny dataset in the `anchor prepare` format whose mouth is a smooth function of the MFCC:
what the mouth-model tests (training, leave-speaker-out, fine-tuning, build-avatar) learn from."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def write_synthetic_dataset(root: Path, clips: int = 3, frames: int = 300, seed: int = 0) -> Path:
    """A dataset in the anchor/train/dataset.py format whose mouth is a smooth function of the MFCC."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((13, 10)).astype(np.float32) * 0.02
    infos = []
    for c in range(clips):
        name = f"clip{c}"
        cdir = root / "clips" / name
        cdir.mkdir(parents=True)
        m = 4 * frames
        # Smooth "speech-like" MFCC: low-passed noise with an offset, as real MFCC have.
        raw = rng.standard_normal((m + 40, 13)).astype(np.float32)
        kernel = np.ones(20, np.float32) / 20
        mfcc = np.stack([np.convolve(raw[:, j], kernel, "valid")[:m] for j in range(13)], 1) * 4 + 3
        per_frame = mfcc.reshape(frames, 4, 13).mean(1)
        ahead = np.concatenate([per_frame[2:], per_frame[-2:]])  # mouth anticipates speech a little
        pca = np.tanh((0.6 * per_frame + 0.4 * ahead - 3) @ w * 5).astype(np.float32) * 0.05
        t = frames
        np.savez(
            cdir / "features.npz",
            mfcc=mfcc.astype(np.float32), landmarks=np.zeros((t, 68, 2), np.float32),
            boxes=np.zeros((t, 4), np.float32), crop_landmarks=np.zeros((t, 68, 2), np.float32),
            mouth=np.zeros((t, 40), np.float32), mouth_mean=np.zeros(40, np.float32),
            mouth_pca=pca, norm_center=np.zeros((t, 2), np.float32),
            norm_angle=np.zeros(t, np.float32), norm_scale=np.ones(t, np.float32),
        )
        np.save(cdir / "audio.npy", np.zeros(640 * t, np.float32))
        infos.append({"name": name, "source": f"{name}.mp4", "frames": t, "fps": 25,
                      "sample_rate": 16000, "width": 64, "height": 64, "mfcc_frames": m})
    np.savez(root / "pca.npz", mean=np.zeros(40, np.float32), components=np.eye(10, 40, dtype=np.float32),
             explained_variance_ratio=np.full(10, 0.1, np.float32))
    manifest = {"format": "anchor-dataset", "version": 1, "config": {}, "clips": infos,
                "pca": {"dims": 10, "explained_variance_ratio": [0.1] * 10, "total": 1.0}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def with_lips(root: Path) -> Path:
    """The synthetic dataset, with a PCA basis that moves the inner lips and mouths that match
    their PCA features, so the inner-lip gap is measurable."""
    rng = np.random.default_rng(3)
    comps = np.linalg.qr(rng.standard_normal((40, 10)))[0].T.astype(np.float32)  # (10, 40)
    np.savez(root / "pca.npz", mean=np.zeros(40, np.float32), components=comps,
             explained_variance_ratio=np.full(10, 0.1, np.float32))
    for f in sorted((root / "clips").glob("*/features.npz")):
        with np.load(f) as z:
            arrays = dict(z)
        arrays["mouth"] = (arrays["mouth_pca"] @ comps).astype(np.float32)
        np.savez(f, **arrays)
    return root
