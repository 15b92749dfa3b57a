"""Mouth features: 20 mouth landmarks normalised for pose and size, and their PCA (paper §3.1).

Normalisation (per frame) is a similarity transform estimated from the rigid upper face:

- angle: the in-plane rotation of the eye line, from the centre of points 36..41 (the eye on the
  image's left) to the centre of points 42..47;
- scale: the inter-ocular distance, i.e. the distance between those two eye centres;
- center: the nose centre, the mean of points 27..35 (bridge and base of the nose). The nose does
  not move when the jaw and lips do, so mouth motion is not leaked into the reference point.

`normalise_mouth` maps points p of 48..67 to m = R(-angle) (p - center) / scale, flattened as
(x48, y48, x49, y49, ...). `denormalise_mouth` is its exact inverse. Because every part of the
transform is estimated from the same landmarks, rotating, scaling and translating a face gives
the same normalised mouth.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anchor.errors import MouthError

MOUTH_SLICE = slice(48, 68)
MOUTH_POINTS = 20
LEFT_EYE = slice(36, 42)  # the eye on the image's left (the subject's right eye)
RIGHT_EYE = slice(42, 48)
NOSE = slice(27, 36)


@dataclass(frozen=True)
class NormalisedMouth:
    """mouth (T, 40); center (T, 2), angle (T,) radians, scale (T,) pixels: the similarity
    that maps image pixels to normalised mouth coordinates."""

    mouth: np.ndarray
    center: np.ndarray
    angle: np.ndarray
    scale: np.ndarray


def _rotation(angle: np.ndarray) -> np.ndarray:
    """(..., 2, 2) rotation matrices by `angle` radians (image axes: x right, y down)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([np.stack([c, -s], axis=-1), np.stack([s, c], axis=-1)], axis=-2)


def normalise_mouth(landmarks: np.ndarray) -> NormalisedMouth:
    """(T, 68, 2) landmarks -> pose- and size-free mouth shapes (T, 40) and the transform used."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim != 3 or lm.shape[1:] != (68, 2):
        raise MouthError(f"normalise_mouth expects (T, 68, 2) landmarks, got {lm.shape}")
    left = lm[:, LEFT_EYE].mean(axis=1)
    right = lm[:, RIGHT_EYE].mean(axis=1)
    eye = right - left
    angle = np.arctan2(eye[:, 1], eye[:, 0])
    scale = np.hypot(eye[:, 0], eye[:, 1])
    if np.any(scale <= 1e-6):
        raise MouthError("normalise_mouth: eye centres coincide (degenerate landmarks)")
    center = lm[:, NOSE].mean(axis=1)
    rel = lm[:, MOUTH_SLICE] - center[:, None, :]
    # R(-angle) p as a row-vector product: p @ R(-angle)^T = p @ R(angle)
    mouth = np.einsum("tpi,tij->tpj", rel, _rotation(angle)) / scale[:, None, None]
    t = lm.shape[0]
    return NormalisedMouth(
        mouth=mouth.reshape(t, 2 * MOUTH_POINTS).astype(np.float32),
        center=center.astype(np.float32),
        angle=angle.astype(np.float32),
        scale=scale.astype(np.float32),
    )


def denormalise_mouth(
    mouth: np.ndarray, center: np.ndarray, angle: np.ndarray | float, scale: np.ndarray | float
) -> np.ndarray:
    """Inverse of `normalise_mouth`: (..., 40) -> (..., 20, 2) pixel points.

    p = scale R(angle) m + center; `center` (..., 2), `angle` and `scale` (...) broadcast
    against the leading dimensions of `mouth`.
    """
    m = np.asarray(mouth, dtype=np.float64)
    if m.shape[-1] != 2 * MOUTH_POINTS:
        raise MouthError(f"denormalise_mouth expects (..., 40) mouth features, got {m.shape}")
    pts = m.reshape(*m.shape[:-1], MOUTH_POINTS, 2)
    a = np.asarray(angle, dtype=np.float64)
    s = np.asarray(scale, dtype=np.float64)
    c = np.asarray(center, dtype=np.float64)
    # out_pj = sum_i R(angle)_ji pts_pi; the leading (...) dims broadcast
    out = np.einsum("...pi,...ji->...pj", pts, _rotation(a))
    out = out * s[..., None, None] + c[..., None, :]
    return out.astype(np.float32)


@dataclass(frozen=True)
class MouthPca:
    """PCA of normalised mouth shapes (numpy SVD). `explained_variance_ratio` (dims,) is each
    component's share of the TOTAL variance of the fitted data, so it sums to at most 1."""

    mean: np.ndarray  # (40,)
    components: np.ndarray  # (dims, 40), orthonormal rows
    explained_variance_ratio: np.ndarray  # (dims,)

    @property
    def dims(self) -> int:
        return int(self.components.shape[0])

    @classmethod
    def fit(cls, x: np.ndarray, dims: int) -> MouthPca:
        data = np.asarray(x, dtype=np.float64)
        if data.ndim != 2 or data.shape[0] < 2:
            raise MouthError(f"MouthPca.fit needs (N >= 2, D) data, got {data.shape}")
        if not 1 <= dims <= min(data.shape):
            raise MouthError(f"MouthPca.fit: dims={dims} outside 1..{min(data.shape)}")
        mean = data.mean(axis=0)
        _, sing, vt = np.linalg.svd(data - mean, full_matrices=False)
        var = sing**2
        total = float(var.sum())
        ratio = var[:dims] / total if total > 0 else np.zeros(dims)
        # fix the sign of each component (largest |loading| positive) so refits are comparable
        comps = vt[:dims]
        signs = np.sign(comps[np.arange(dims), np.abs(comps).argmax(axis=1)])
        comps = comps * np.where(signs == 0, 1.0, signs)[:, None]
        return cls(
            mean=mean.astype(np.float32),
            components=comps.astype(np.float32),
            explained_variance_ratio=ratio.astype(np.float32),
        )

    def transform(self, x: np.ndarray) -> np.ndarray:
        """(..., 40) -> (..., dims)."""
        return ((np.asarray(x, dtype=np.float32) - self.mean) @ self.components.T).astype(np.float32)

    def inverse_transform(self, z: np.ndarray) -> np.ndarray:
        """(..., dims) -> (..., 40)."""
        return (np.asarray(z, dtype=np.float32) @ self.components + self.mean).astype(np.float32)

    def save(self, path: str | Path) -> None:
        np.savez(
            path, mean=self.mean, components=self.components,
            explained_variance_ratio=self.explained_variance_ratio,
        )

    @classmethod
    def load(cls, path: str | Path) -> MouthPca:
        try:
            with np.load(path) as z:
                return cls(
                    mean=z["mean"].astype(np.float32),
                    components=z["components"].astype(np.float32),
                    explained_variance_ratio=z["explained_variance_ratio"].astype(np.float32),
                )
        except (OSError, KeyError, ValueError) as exc:
            raise MouthError(f"{path}: not a mouth PCA file ({exc})") from exc
