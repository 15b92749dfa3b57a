"""The dataset that `anchor prepare` writes and every trainer reads.

Layout (all arrays per clip are indexed by 25 fps video frame t = 0..T-1)::

    DATASET/
      manifest.json        {"format": "anchor-dataset", "version": 1,
                            "config": {"audio": {...}, "video": {...}, "face": {...}},
                            "clips": [{"name", "source", "frames": T, "fps", "sample_rate",
                                       "width", "height", "mfcc_frames": M}],
                            "pca": {"dims": 10, "explained_variance_ratio": [...], "total": float}}
      pca.npz              mean (40,), components (10, 40), explained_variance_ratio (10,)
      clips/<name>/
        audio.npy          float32 (N,) 16 kHz mono
        features.npz       mfcc (M, 13) float32, M == 4 T (100 Hz rows; row 4t.. belongs to frame t)
                           landmarks (T, 68, 2) float32, full-frame pixels (dlib 68-point order)
                           boxes (T, 4) float32 square crop box x0, y0, x1, y1 in full-frame pixels
                           crop_landmarks (T, 68, 2) float32 in crop pixels (face.crop_size)
                           mouth (T, 40) float32 normalised mouth (points 48..67, x/y interleaved)
                           mouth_mean (40,) float32 the clip's mean normalised mouth
                           mouth_pca (T, 10) float32 PCA of (mouth - mouth_mean)
                           norm_center (T, 2), norm_angle (T,), norm_scale (T,) the similarity
                             that maps full-frame pixels to normalised mouth coordinates
        edges.npz          edges (T, S, S) uint8 {0, 255}: Canny edges of the face crop
        face.mp4           the face crops (S x S, 25 fps, near-lossless H.264), frame t = crop t

The manifest is written last, so a directory without one is an unfinished dataset.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from anchor.errors import DatasetError

FORMAT = "anchor-dataset"
VERSION = 1
FEATURE_KEYS = (
    "mfcc", "landmarks", "boxes", "crop_landmarks", "mouth", "mouth_mean", "mouth_pca",
    "norm_center", "norm_angle", "norm_scale",
)


@dataclass(frozen=True)
class ClipData:
    name: str
    path: Path
    frames: int
    mfcc: np.ndarray
    landmarks: np.ndarray
    boxes: np.ndarray
    crop_landmarks: np.ndarray
    mouth: np.ndarray
    mouth_mean: np.ndarray
    mouth_pca: np.ndarray
    norm_center: np.ndarray
    norm_angle: np.ndarray
    norm_scale: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    def split(self, val_fraction: float) -> tuple[range, range]:
        """(train, val) frame ranges: the last `val_fraction` of the clip is held out."""
        n_val = int(round(self.frames * val_fraction))
        return range(0, self.frames - n_val), range(self.frames - n_val, self.frames)

    def audio(self) -> np.ndarray:
        return np.load(self.path / "audio.npy")

    def edges(self) -> np.ndarray:
        with np.load(self.path / "edges.npz") as z:
            return z["edges"]

    def crops(self) -> np.ndarray:
        """Face crops (T, S, S, 3) uint8 RGB decoded from face.mp4."""
        import av

        out = []
        try:
            with av.open(str(self.path / "face.mp4")) as container:
                for frame in container.decode(video=0):
                    out.append(frame.to_ndarray(format="rgb24"))
        except (av.error.FFmpegError, OSError) as exc:
            raise DatasetError(f"{self.path / 'face.mp4'}: cannot decode face crops ({exc})") from exc
        if len(out) < self.frames:
            raise DatasetError(
                f"{self.path / 'face.mp4'}: {len(out)} crops for {self.frames} frames"
            )
        return np.stack(out[: self.frames])


@dataclass(frozen=True)
class Dataset:
    path: Path
    manifest: dict[str, Any]
    clips: list[ClipData]
    pca_mean: np.ndarray
    pca_components: np.ndarray
    pca_explained_variance_ratio: np.ndarray

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.manifest.get("config", {}))

    def clip(self, name: str) -> ClipData:
        for c in self.clips:
            if c.name == name:
                return c
        raise DatasetError(
            f"dataset {self.path} has no clip {name!r} (clips: {', '.join(c.name for c in self.clips)})"
        )

    def subset(self, names: Iterable[str]) -> Dataset:
        """The same dataset (PCA basis included) with only the named clips, in that order."""
        clips = [self.clip(n) for n in names]
        if not clips:
            raise DatasetError(f"dataset {self.path}: an empty subset of clips")
        return dataclasses.replace(self, clips=clips)


def load_dataset(path: str | Path) -> Dataset:
    root = Path(path)
    mpath = root / "manifest.json"
    if not root.is_dir():
        raise DatasetError(f"dataset {root} does not exist (run `anchor prepare VIDEO... -o {root}`)")
    if not mpath.is_file():
        raise DatasetError(f"dataset {root} has no manifest.json (unfinished or not a dataset)")
    try:
        manifest = json.loads(mpath.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{mpath} is not valid JSON: {exc}") from exc
    if manifest.get("format") != FORMAT:
        raise DatasetError(f"{mpath}: format is {manifest.get('format')!r}, expected {FORMAT!r}")
    if int(manifest.get("version", -1)) > VERSION:
        raise DatasetError(
            f"{mpath}: dataset version {manifest.get('version')} is newer than this anchor ({VERSION})"
        )
    try:
        with np.load(root / "pca.npz") as z:
            pca_mean, comps, evr = z["mean"], z["components"], z["explained_variance_ratio"]
    except (OSError, KeyError) as exc:
        raise DatasetError(f"{root / 'pca.npz'}: missing or incomplete ({exc})") from exc
    clips = []
    for info in manifest.get("clips", []):
        cdir = root / "clips" / info["name"]
        try:
            with np.load(cdir / "features.npz") as z:
                arrays = {k: z[k] for k in FEATURE_KEYS}
        except (OSError, KeyError) as exc:
            raise DatasetError(f"{cdir / 'features.npz'}: missing or incomplete ({exc})") from exc
        frames = int(info["frames"])
        if arrays["mouth_pca"].shape[0] != frames or arrays["mfcc"].shape[0] < 4 * frames:
            raise DatasetError(
                f"{cdir}: arrays disagree with manifest ({frames} frames, "
                f"mouth_pca {arrays['mouth_pca'].shape}, mfcc {arrays['mfcc'].shape})"
            )
        clips.append(ClipData(name=info["name"], path=cdir, frames=frames, info=info, **arrays))
    if not clips:
        raise DatasetError(f"dataset {root} has no clips")
    return Dataset(root, manifest, clips, pca_mean, comps, evr)
