"""68-point face landmarks with dlib (HOG detector + the iBUG 68-point shape predictor).

HOG detection costs ~90 ms on a 512² frame, the shape predictor ~2 ms, so the detector runs only
every `FaceConfig.redetect_every` frames (on a downscaled copy of big frames) and whenever tracking
looks lost; in between, the predictor gets a box derived from the previous frame's landmarks.
The derived box keeps the detector's own framing: at each detection we remember how the detector
box sits relative to the landmark bounding box and apply the same relation while tracking, so the
predictor always sees boxes like the ones it was trained on.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

import numpy as np

from anchor.config import FaceConfig
from anchor.errors import FaceError

log = logging.getLogger(__name__)

PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"
DETECT_MAX_SIDE = 512  # frames larger than this are downscaled for the HOG detector
# Tracking is considered lost when the landmark box changes size or jumps this much in one frame.
TRACK_MAX_SCALE_CHANGE = 0.25
TRACK_MAX_SHIFT = 0.25  # fraction of the box size
# ...or when the landmark shape, after removing the best similarity transform, differs from the
# previous frame's by more than this (mean residual / RMS radius). Normal motion including speech
# stays below ~0.05; a predictor that has lost the face gives 0.15 and more.
TRACK_MAX_SHAPE_RESIDUAL = 0.1


def predictor_path() -> Path:
    """The 68-point predictor shipped in the `face_recognition_models` wheel.

    The package is located, not imported: its __init__ needs pkg_resources, which current
    setuptools no longer provides.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FaceError(
            "face_recognition_models is not installed (pip install face_recognition_models==0.3.0)"
        )
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / "models" / PREDICTOR_FILE
        if candidate.is_file():
            return candidate
    raise FaceError(f"{PREDICTOR_FILE} not found inside face_recognition_models")


def _to_gray(rgb: np.ndarray) -> np.ndarray:
    import cv2

    if rgb.ndim == 2:
        return np.ascontiguousarray(rgb, dtype=np.uint8)
    return cv2.cvtColor(np.ascontiguousarray(rgb, dtype=np.uint8), cv2.COLOR_RGB2GRAY)


def shape_residual(a: np.ndarray, b: np.ndarray) -> float:
    """Mean distance between point sets after similarity-aligning b to a, over a's RMS radius."""
    za = (a[:, 0] - a[:, 0].mean()) + 1j * (a[:, 1] - a[:, 1].mean())
    zb = (b[:, 0] - b[:, 0].mean()) + 1j * (b[:, 1] - b[:, 1].mean())
    denom = np.vdot(zb, zb).real
    radius = float(np.sqrt(np.mean(np.abs(za) ** 2)))
    if denom <= 0 or radius <= 0:
        return float("inf")
    s = np.vdot(zb, za) / denom
    return float(np.mean(np.abs(za - s * zb)) / radius)


def _bbox(points: np.ndarray) -> np.ndarray:
    """(cx, cy, w, h) of a point set."""
    lo = points.min(axis=0)
    hi = points.max(axis=0)
    return np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, hi[0] - lo[0], hi[1] - lo[1]])


def _anchor(points: np.ndarray) -> np.ndarray:
    """(x, y, size) from the rigid part of the face: the centroid of the eyes and nose (27..47)
    and the inter-ocular distance. Unlike the jaw contour, these do not drift while tracking."""
    left = points[36:42].mean(axis=0)
    right = points[42:48].mean(axis=0)
    centre = points[27:48].mean(axis=0)
    return np.array([centre[0], centre[1], max(float(np.hypot(*(right - left))), 1.0)])


class LandmarkDetector:
    """Per-frame 68-point landmarks for one video (stateful: call `reset()` between videos)."""

    def __init__(self, cfg: FaceConfig) -> None:
        import dlib

        self.cfg = cfg
        self._dlib: Any = dlib
        self._detector = dlib.get_frontal_face_detector()
        try:
            self._predictor = dlib.shape_predictor(str(predictor_path()))
        except RuntimeError as exc:
            raise FaceError(f"cannot load {predictor_path()}: {exc}") from exc
        self.detections = 0  # HOG detector runs (for logging/benchmarks)
        self.reset()

    def reset(self) -> None:
        self._frame = 0
        self._prev: np.ndarray | None = None
        self._velocity = np.zeros(2)  # landmark-box centre motion per frame, for the tracking box
        # detector box relative to the rigid anchor, in inter-ocular units: (dx, dy, w, h)
        self._relation: np.ndarray | None = None

    def _detect_box(self, gray: np.ndarray) -> tuple[float, float, float, float] | None:
        h, w = gray.shape
        scale = min(1.0, DETECT_MAX_SIDE / max(h, w))
        small = gray
        if scale < 1.0:
            import cv2

            small = cv2.resize(
                gray, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA
            )
        self.detections += 1
        rects = self._detector(small, self.cfg.upsample)
        if len(rects) == 0:
            return None
        # several faces: the presenter is the largest one
        r = max(rects, key=lambda r: r.width() * r.height())
        return (r.left() / scale, r.top() / scale, (r.right() + 1) / scale, (r.bottom() + 1) / scale)

    def face_areas(self, rgb: np.ndarray) -> list[float]:
        """Areas (px^2 of `rgb`) of every face the detector finds, largest first (stateless)."""
        gray = _to_gray(rgb)
        h, w = gray.shape
        scale = min(1.0, DETECT_MAX_SIDE / max(h, w))
        small = gray
        if scale < 1.0:
            import cv2

            small = cv2.resize(gray, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        rects = self._detector(small, self.cfg.upsample)
        return sorted((r.width() * r.height() / scale**2 for r in rects), reverse=True)

    def _predict(self, gray: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        rect = self._dlib.rectangle(
            int(round(box[0])), int(round(box[1])), int(round(box[2])), int(round(box[3]))
        )
        shape = self._predictor(gray, rect)
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)

    def _tracking_box(self, prev: np.ndarray) -> tuple[float, float, float, float]:
        ax, ay, size = _anchor(prev)
        ax, ay = ax + self._velocity[0], ay + self._velocity[1]  # constant-velocity guess
        if self._relation is None:
            cx, cy, w, h = _bbox(prev)
            return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
        dx, dy, bw, bh = self._relation * size
        return (ax + dx - bw / 2, ay + dy - bh / 2, ax + dx + bw / 2, ay + dy + bh / 2)

    def _plausible(self, prev: np.ndarray, new: np.ndarray, shape: tuple[int, ...]) -> bool:
        _, _, pw, ph = _bbox(prev)
        nb = _bbox(new)
        size = max(pw, ph, 1.0)
        ratio = max(nb[2], nb[3], 1.0) / size
        shift = float(np.hypot(*(nb[:2] - _bbox(prev)[:2]))) / size
        inside = (
            nb[0] > 0 and nb[1] > 0 and nb[0] < shape[1] and nb[1] < shape[0]
        )
        return (
            abs(ratio - 1.0) < TRACK_MAX_SCALE_CHANGE
            and shift < TRACK_MAX_SHIFT
            and inside
            and shape_residual(prev, new) < TRACK_MAX_SHAPE_RESIDUAL
        )

    def _accept(self, landmarks: np.ndarray) -> np.ndarray:
        if self._prev is not None:
            self._velocity = _anchor(landmarks)[:2] - _anchor(self._prev)[:2]
        else:
            self._velocity = np.zeros(2)
        self._prev = landmarks
        return landmarks

    def detect(self, rgb: np.ndarray) -> np.ndarray | None:
        """Landmarks (68, 2) float32 in pixel coordinates of `rgb`, or None when no face is found."""
        gray = _to_gray(rgb)
        frame = self._frame
        self._frame += 1
        every = max(1, int(self.cfg.redetect_every))
        if self._prev is not None and frame % every != 0:
            tracked = self._predict(gray, self._tracking_box(self._prev))
            if self._plausible(self._prev, tracked, gray.shape):
                return self._accept(tracked)
            log.debug("frame %d: tracking looks lost, re-detecting", frame)
        box = self._detect_box(gray)
        if box is None:
            self._prev = None
            self._velocity = np.zeros(2)
            return None
        landmarks = self._predict(gray, box)
        ax, ay, size = _anchor(landmarks)
        bw, bh = box[2] - box[0], box[3] - box[1]
        bcx, bcy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        self._relation = np.array([(bcx - ax) / size, (bcy - ay) / size, bw / size, bh / size])
        return self._accept(landmarks)
