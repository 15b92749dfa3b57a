"""Jaw correction (Zheng et al. 2021, §3.2.2).

A template frame's jawline belongs to the template's own mouth; when a generated mouth opens
wider than the template's, the chin must drop with it or the renderer is asked for an
impossible face. A multi-linear regression from mouth shape (width and height of the
normalised outer lip) to the jawline (points 0..16 in normalised coordinates, minus the clip's
mean jaw) predicts how the jaw moves with the mouth. At run time only the *difference* between
the prediction for the generated mouth and for the template's own mouth is added to the
template's jaw, so head pose and identity stay the template's.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anchor.errors import FaceError

JAW_SLICE = slice(0, 17)
N_JAW = 17
CHIN_Y = 2 * 8 + 1  # flattened output index of the chin's (point 8) vertical offset
FORMAT = "anchor-jaw-regression"
VERSION = 1


def mouth_shape(mouth: np.ndarray) -> np.ndarray:
    """(..., 40) normalised mouth (points 48..67, x/y interleaved) -> (..., 2) outer-lip width
    (corner 48 to corner 54) and height (51 top-centre to 57 bottom-centre)."""
    pts = np.asarray(mouth, dtype=np.float64).reshape(*np.shape(mouth)[:-1], 20, 2)
    width = np.linalg.norm(pts[..., 6, :] - pts[..., 0, :], axis=-1)
    height = np.linalg.norm(pts[..., 9, :] - pts[..., 3, :], axis=-1)
    return np.stack([width, height], axis=-1)


def _rotation(angle: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)  # (..., 2, 2)


def normalise_points(
    points: np.ndarray, center: np.ndarray, angle: np.ndarray | float, scale: np.ndarray | float
) -> np.ndarray:
    """Pixels -> normalised coordinates with the mouth normalisation's similarity.

    points (..., K, 2), center (..., 2), angle (...), scale (...): q = R(-angle) (p - center) / scale,
    the same map `anchor.mouth.features.normalise_mouth` applies to the mouth points.
    """
    p = np.asarray(points, dtype=np.float64)
    c = np.asarray(center, dtype=np.float64)[..., None, :]
    rot_t = np.swapaxes(_rotation(np.asarray(angle, dtype=np.float64)), -1, -2)[..., None, :, :]
    s = np.asarray(scale, dtype=np.float64)[..., None, None]
    return np.asarray((rot_t @ (p - c)[..., None])[..., 0] / s)


def denormalise_points(
    points: np.ndarray, center: np.ndarray, angle: np.ndarray | float, scale: np.ndarray | float
) -> np.ndarray:
    """Exact inverse of `normalise_points`: p = center + scale R(angle) q."""
    q = np.asarray(points, dtype=np.float64)
    c = np.asarray(center, dtype=np.float64)[..., None, :]
    rot = _rotation(np.asarray(angle, dtype=np.float64))[..., None, :, :]
    s = np.asarray(scale, dtype=np.float64)[..., None, None]
    return np.asarray((rot @ q[..., None])[..., 0] * s + c)


def _design(shapes: np.ndarray) -> np.ndarray:
    shapes = np.asarray(shapes, dtype=np.float64)
    ones = np.ones((*shapes.shape[:-1], 1))
    return np.concatenate([shapes, ones], axis=-1)  # (..., 3): width, height, 1


@dataclass(frozen=True)
class JawRegression:
    """jaw offsets (17, 2) = [width, height, 1] @ weights (3, 34)."""

    weights: np.ndarray  # (3, 34)

    @classmethod
    def fit(cls, shapes: np.ndarray, offsets: np.ndarray) -> JawRegression:
        """Least squares on shapes (N, 2) and jaw offsets (N, 17, 2) or (N, 34)."""
        x = _design(shapes)
        y = np.asarray(offsets, dtype=np.float64).reshape(len(x), -1)
        if y.shape[1] != 2 * N_JAW:
            raise FaceError(f"jaw regression: offsets have {y.shape[1]} values per frame, need 34")
        if len(x) < 3:
            raise FaceError(f"jaw regression: needs at least 3 frames to fit, got {len(x)}")
        weights, *_ = np.linalg.lstsq(x, y, rcond=None)
        return cls(weights)

    def predict(self, shapes: np.ndarray) -> np.ndarray:
        """(..., 2) mouth shapes -> (..., 17, 2) jaw offsets."""
        y = _design(shapes) @ self.weights
        return y.reshape(*y.shape[:-1], N_JAW, 2)

    def r2(
        self, shapes: np.ndarray, offsets: np.ndarray, outputs: Sequence[int] | None = None
    ) -> float:
        """Coefficient of determination over all 34 outputs (variance-weighted), or over the
        flattened `outputs` only (e.g. [CHIN_Y] for the chin's vertical position)."""
        y = np.asarray(offsets, dtype=np.float64).reshape(len(shapes), -1)
        pred = self.predict(shapes).reshape(len(shapes), -1)
        if outputs is not None:
            y, pred = y[:, list(outputs)], pred[:, list(outputs)]
        ss_res = float(np.sum((y - pred) ** 2))
        ss_tot = float(np.sum((y - y.mean(axis=0)) ** 2))
        return 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")

    def correct(
        self, template_jaw: np.ndarray, template_shape: np.ndarray, new_shape: np.ndarray
    ) -> np.ndarray:
        """Move a template's normalised jaw (17, 2) from its own mouth shape to `new_shape`."""
        delta = self.predict(np.asarray(new_shape)) - self.predict(np.asarray(template_shape))
        return np.asarray(template_jaw, dtype=np.float64) + delta

    def save(self, path: str | Path) -> None:
        """Write an .npz atomically (temp file + rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
        os.close(fd)
        try:
            np.savez(tmp, weights=self.weights, format=FORMAT, version=VERSION)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    @classmethod
    def load(cls, path: str | Path) -> JawRegression:
        path = Path(path)
        try:
            with np.load(path) as z:
                if str(z["format"]) != FORMAT:
                    raise FaceError(f"{path}: not a jaw regression (format {str(z['format'])!r})")
                weights = np.asarray(z["weights"], dtype=np.float64)
        except (OSError, KeyError, ValueError) as exc:
            raise FaceError(f"{path}: cannot read jaw regression ({exc})") from exc
        if weights.shape != (3, 2 * N_JAW):
            raise FaceError(f"{path}: jaw weights have shape {weights.shape}, expected (3, 34)")
        return cls(weights)


def jaw_training_data(
    landmarks: np.ndarray,
    mouth: np.ndarray,
    center: np.ndarray,
    angle: np.ndarray,
    scale: np.ndarray,
    mean_jaw: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One clip's regression data: (shapes (T, 2), jaw offsets (T, 17, 2), mean jaw (17, 2)).

    landmarks (T, 68, 2) pixels with the similarity (center, angle, scale) that normalised
    `mouth` (T, 40). Offsets are relative to `mean_jaw`, by default the mean over these frames.
    """
    jaw = normalise_points(np.asarray(landmarks)[:, JAW_SLICE], center, angle, scale)
    mean = jaw.mean(axis=0) if mean_jaw is None else np.asarray(mean_jaw, dtype=np.float64)
    return mouth_shape(mouth), jaw - mean, mean


def fit_jaw_regression(
    clips: Sequence[tuple[np.ndarray, np.ndarray]],
) -> JawRegression:
    """Fit one regression on several clips' (shapes, offsets), each relative to its own mean."""
    shapes = np.concatenate([s for s, _ in clips])
    offsets = np.concatenate([o.reshape(len(o), -1) for _, o in clips])
    return JawRegression.fit(shapes, offsets)
