"""Renderer training data synthesised from one still portrait (the default avatar's source).

A single photograph has one mouth. To teach the renderer the person's face with every mouth, the
portrait's mouth and jaw are warped to many mouth shapes drawn from real speech (the mouth PCA
features of real clips): the 20 mouth landmarks are set to the shape, the jaw follows the lower
lip, and the face is warped piecewise-affinely over a Delaunay mesh of the 68 landmarks plus
fixed rings around the face (so the background never moves). Where the lips part, the inner
mouth is painted: the portrait's own upper teeth, attached to the upper lip, over a dark mouth.

Idle motion makes the body template: a short sequence of the portrait with a slight head sway
and breathing (a smooth displacement field that fades out away from the person) and one blink,
with zero velocity at both ends so it plays as a seamless ping-pong loop.

Everything is written as an ordinary dataset (anchor/train/dataset.py), so `anchor train
renderer` trains on it unchanged: clip "idle" (the idle sequence, neutral mouth; its frames are
also the avatar's template frames) and clip "talk" (warped mouths on random idle frames).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from anchor.config import AnchorConfig, to_dict
from anchor.errors import AvatarError
from anchor.mouth.features import MouthPca, denormalise_mouth, normalise_mouth
from anchor.progress import progress_bar
from anchor.train.dataset import FORMAT, VERSION, Dataset, load_dataset

log = logging.getLogger(__name__)

# dlib 68 indices
JAW = slice(0, 17)
INNER_UPPER = (61, 62, 63)
INNER_LOWER = (67, 66, 65)  # paired with INNER_UPPER
OUTER_UPPER = (49, 50, 51, 52, 53)
OUTER_LOWER = (59, 58, 57, 56, 55)  # paired with OUTER_UPPER
EYE_UPPER = (37, 38, 43, 44)
EYE_LOWER = (41, 40, 47, 46)  # paired with EYE_UPPER
# how much each jaw point follows the lower lip (chin fully, the ears not at all)
JAW_FOLLOW = np.array(
    [0, 0, 0, 0.05, 0.2, 0.4, 0.65, 0.85, 1.0, 0.85, 0.65, 0.4, 0.2, 0.05, 0, 0, 0]
)
MOUTH_DARK = np.array([52, 18, 22], np.float32)  # the inside of an open mouth
TONGUE = np.array([150, 72, 74], np.float32)
MIN_INNER_GAP = 0.25  # px: closed lips still keep the mesh triangles unflipped
MIN_LIP = 1.0  # px: lips never thinner than this


# -- geometry -----------------------------------------------------------------------------------


def portrait_image() -> np.ndarray:
    """scikit-image's public-domain NASA portrait of Eileen Collins (512 x 512 RGB)."""
    import skimage.data

    return np.ascontiguousarray(skimage.data.astronaut())


# A second face at least this fraction of the largest one's area makes a portrait ambiguous.
SECOND_FACE_RATIO = 0.2
MIN_PHOTO_SIDE = 128  # px


def load_photo(path: str | Path) -> np.ndarray:
    """A portrait photo (JPEG, PNG, ...) as RGB uint8, with a one-line error when unreadable."""
    path = Path(path)
    if not path.is_file():
        raise AvatarError(f"{path}: no such photo")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise AvatarError(f"{path}: not an image OpenCV can read (JPEG, PNG, WebP, ...)")
    if min(bgr.shape[:2]) < MIN_PHOTO_SIDE:
        raise AvatarError(f"{path}: {bgr.shape[1]}x{bgr.shape[0]} px is too small for a "
                          f"portrait (at least {MIN_PHOTO_SIDE} px a side)")
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def detect_portrait_landmarks(image: np.ndarray, cfg: AnchorConfig, what: str = "the portrait") -> np.ndarray:
    """68 landmarks (float64) of the one face in a still image, with the package's detector.
    No face, or several faces of similar size, is a one-line AvatarError naming `what`."""
    import dataclasses

    from anchor.face.landmarks import LandmarkDetector

    for upsample in (cfg.face.upsample, 1, 2):
        det = LandmarkDetector(dataclasses.replace(cfg.face, upsample=upsample))
        areas = det.face_areas(image)
        if not areas:
            continue
        others = [a for a in areas[1:] if a >= SECOND_FACE_RATIO * areas[0]]
        if others:
            raise AvatarError(f"{what} shows {1 + len(others)} faces; crop it to the one presenter")
        lm = det.detect(image)
        if lm is not None:
            return np.asarray(lm, dtype=np.float64)
    raise AvatarError(f"no face found in {what} (a frontal, well-lit portrait works best)")


def _signed_areas(pts: np.ndarray, tris: np.ndarray) -> np.ndarray:
    a, b, c = pts[tris[:, 0]], pts[tris[:, 1]], pts[tris[:, 2]]
    return 0.5 * ((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]))


class FaceMesh:
    """Piecewise-affine warps of an image driven by its 68 landmarks.

    Mesh vertices: the landmarks, two rings of fixed points around the face and the image corners;
    triangles from a Delaunay triangulation of the source vertices.
    """

    def __init__(self, image: np.ndarray, landmarks: np.ndarray) -> None:
        from scipy.spatial import Delaunay

        self.image = image
        self.landmarks = np.asarray(landmarks, dtype=np.float64)
        h, w = image.shape[:2]
        lo, hi = self.landmarks.min(axis=0), self.landmarks.max(axis=0)
        centre, half = (lo + hi) / 2, (hi - lo) / 2
        ang = np.linspace(0, 2 * np.pi, 20, endpoint=False)
        rings = []
        # rx, ry above, ry below: generous below so the neck can absorb a dropping chin
        for rx, ry_up, ry_down in ((1.45, 1.5, 1.9), (2.5, 2.4, 2.9)):
            ry = np.where(np.sin(ang) > 0, ry_down, ry_up)
            rings.append(centre + np.stack([np.cos(ang) * rx * half[0], np.sin(ang) * ry * half[1]], 1))
        corners = np.array([[-2, -2], [w + 1, -2], [-2, h + 1], [w + 1, h + 1]], np.float64)
        self.fixed = np.concatenate([*rings, corners])
        self.source = np.concatenate([self.landmarks, self.fixed])
        self.triangles = Delaunay(self.source).simplices.astype(np.int64)
        # orient every triangle counter-clockwise (positive area) in the source
        areas = _signed_areas(self.source, self.triangles)
        flip = areas < 0
        self.triangles[flip] = self.triangles[flip][:, ::-1]
        self.grid_x, self.grid_y = np.meshgrid(
            np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)
        )

    def target_points(self, landmarks: np.ndarray) -> np.ndarray:
        return np.concatenate([np.asarray(landmarks, dtype=np.float64), self.fixed])

    def safe_landmarks(self, landmarks: np.ndarray) -> np.ndarray:
        """Shrink a deformation towards the source until no triangle flips."""
        target = np.asarray(landmarks, dtype=np.float64)
        for alpha in (1.0, 0.8, 0.6, 0.4, 0.2, 0.0):
            lm = self.landmarks + alpha * (target - self.landmarks)
            if np.all(_signed_areas(self.target_points(lm), self.triangles) > -1e-9):
                if alpha < 1.0:
                    log.debug("mouth deformation shrunk to %.0f%% to avoid a fold", 100 * alpha)
                return lm
        return self.landmarks.copy()

    def backward_map(self, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(map_x, map_y) float32: for each output pixel, where to sample the source image."""
        dst = self.target_points(landmarks)
        src = self.source
        moved = np.any(np.abs(dst - src) > 1e-6, axis=1)
        map_x, map_y = self.grid_x.copy(), self.grid_y.copy()
        tris = self.triangles[np.any(moved[self.triangles], axis=1)]
        if len(tris) == 0:
            return map_x, map_y
        h, w = map_x.shape
        pts = dst[tris].reshape(-1, 2)
        x0, y0 = (max(0, int(v) - 1) for v in np.floor(pts.min(axis=0)))
        x1 = min(w, int(np.ceil(pts[:, 0].max())) + 2)
        y1 = min(h, int(np.ceil(pts[:, 1].max())) + 2)
        if x1 <= x0 or y1 <= y0:
            return map_x, map_y
        ids = np.full((y1 - y0, x1 - x0), -1, np.int32)
        affines = np.zeros((len(tris), 2, 3), np.float64)
        shift = 4
        for j, tri in enumerate(tris):
            d = dst[tri]
            affines[j] = cv2.getAffineTransform(d.astype(np.float32), src[tri].astype(np.float32))
            poly = np.round((d - (x0, y0)) * (1 << shift)).astype(np.int32)
            cv2.fillConvexPoly(ids, poly, j, lineType=cv2.LINE_8, shift=shift)
        inside = ids >= 0
        a = affines[ids[inside]]
        gx = self.grid_x[y0:y1, x0:x1][inside]
        gy = self.grid_y[y0:y1, x0:x1][inside]
        sub_x = map_x[y0:y1, x0:x1]
        sub_y = map_y[y0:y1, x0:x1]
        sub_x[inside] = a[:, 0, 0] * gx + a[:, 0, 1] * gy + a[:, 0, 2]
        sub_y[inside] = a[:, 1, 0] * gx + a[:, 1, 1] * gy + a[:, 1, 2]
        return map_x, map_y

    def warp(self, landmarks: np.ndarray) -> np.ndarray:
        map_x, map_y = self.backward_map(landmarks)
        return cv2.remap(
            self.image, map_x, map_y, interpolation=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REFLECT101,
        )


def _face_frame(landmarks: np.ndarray) -> tuple[np.ndarray, float]:
    """(nose centre, eye-line angle): rotating by -angle about the centre makes the face upright."""
    norm = normalise_mouth(np.asarray(landmarks, dtype=np.float64)[None])
    return norm.center[0].astype(np.float64), float(norm.angle[0])


def _rotate(points: np.ndarray, centre: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    return (np.asarray(points, dtype=np.float64) - centre) @ rot.T + centre


def mouth_landmarks(
    base: np.ndarray, mouth_norm: np.ndarray
) -> np.ndarray:
    """The portrait's landmarks with the mouth set to `mouth_norm` (40,) (normalised) and the jaw
    following the lower lip; lips are kept from crossing."""
    lm = np.asarray(base, dtype=np.float64).copy()
    norm = normalise_mouth(lm[None])
    mouth = np.asarray(
        denormalise_mouth(mouth_norm, norm.center[0], norm.angle[0], norm.scale[0]), np.float64
    ).reshape(20, 2)
    centre, angle = _face_frame(lm)
    upright = _rotate(mouth, centre, -angle)  # y grows downwards in the face's own frame
    full = np.zeros((68, 2))
    full[48:68] = upright
    for up, low in zip(INNER_UPPER, INNER_LOWER, strict=True):
        gap = full[low, 1] - full[up, 1]
        if gap < MIN_INNER_GAP:
            mid = (full[low, 1] + full[up, 1]) / 2
            full[up, 1], full[low, 1] = mid - MIN_INNER_GAP / 2, mid + MIN_INNER_GAP / 2
    for up, low in zip(OUTER_UPPER, OUTER_LOWER, strict=True):
        full[up, 1] = min(full[up, 1], full[_nearest_inner(up), 1] - MIN_LIP)
        full[low, 1] = max(full[low, 1], full[_nearest_inner(low), 1] + MIN_LIP)
    mouth = _rotate(full[48:68], centre, angle)
    delta = mouth[57 - 48] - lm[57]
    lm[JAW] = lm[JAW] + JAW_FOLLOW[:, None] * delta[None, :]
    lm[48:68] = mouth
    return lm


def _nearest_inner(i: int) -> int:
    return {49: 61, 50: 61, 51: 62, 52: 63, 53: 63, 59: 67, 58: 67, 57: 66, 56: 65, 55: 65}[i]


def blink_landmarks(landmarks: np.ndarray, amount: float) -> np.ndarray:
    """Eyelids closed by `amount` in [0, 1]: upper lids come down, lower lids rise a little."""
    lm = np.asarray(landmarks, dtype=np.float64).copy()
    if amount <= 0:
        return lm
    for up, low in zip(EYE_UPPER, EYE_LOWER, strict=True):
        a, b = lm[up].copy(), lm[low].copy()
        lm[up] = a + amount * 0.85 * (b - a)
        lm[low] = b + amount * 0.15 * (a - b)
    return lm


def paint_inner_mouth(
    image: np.ndarray, source: np.ndarray, base_lm: np.ndarray, target_lm: np.ndarray
) -> np.ndarray:
    """Fill the parted lips of `image` (already warped to `target_lm`): the portrait's upper teeth
    attached to the upper lip, over a dark mouth with a hint of tongue at the bottom."""
    inner = target_lm[60:68]
    area = abs(_signed_areas(inner, np.array([[0, i, i + 1] for i in range(1, 7)])).sum())
    out = image.copy()
    h, w = image.shape[:2]
    lo = np.floor(target_lm[48:68].min(axis=0) - 4).astype(int)
    hi = np.ceil(target_lm[48:68].max(axis=0) + 4).astype(int)
    x0, y0 = max(0, lo[0]), max(0, lo[1])
    x1, y1 = min(w, hi[0]), min(h, hi[1])
    if x1 <= x0 or y1 <= y0:
        return out
    shift = 4
    roi = out[y0:y1, x0:x1].astype(np.float32)
    if area < 1.0:
        # closed lips: a faint dark line where they meet
        line = np.round((target_lm[[60, 61, 62, 63, 64]] - (x0, y0)) * (1 << shift)).astype(np.int32)
        m = _aa_mask(roi.shape[:2], [line], filled=False)
        roi = np.asarray(roi * (1 - 0.35 * m[..., None]) + MOUTH_DARK * (0.35 * m[..., None]), np.float32)
        out[y0:y1, x0:x1] = np.clip(roi + 0.5, 0, 255).astype(np.uint8)
        return out
    # teeth: the source's inner-mouth pixels, scaled with the mouth width, pinned to lip point 62
    s = float(np.linalg.norm(target_lm[64] - target_lm[60])) / max(
        float(np.linalg.norm(base_lm[64] - base_lm[60])), 1e-6
    )
    t = target_lm[62] - s * base_lm[62]
    m_teeth = np.array([[s, 0, t[0] - x0], [0, s, t[1] - y0]], np.float64)
    teeth = cv2.warpAffine(source, m_teeth, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REFLECT101).astype(np.float32)
    src_poly = np.round(base_lm[60:68] * (1 << shift)).astype(np.int32)
    src_mask = _aa_mask(source.shape[:2], [src_poly])
    teeth_mask = cv2.warpAffine(src_mask, m_teeth, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR)
    # teeth only near the upper lip: fade them out over the portrait's own teeth height
    base_gap = max(float(base_lm[66, 1] - base_lm[62, 1]), 1.0)
    yy = np.arange(y0, y1, dtype=np.float32)[:, None] - (target_lm[62, 1])
    teeth_mask *= np.clip(1.2 - yy / (base_gap * s), 0, 1)
    # the dark mouth, lighter (tongue) towards the lower lip
    top, bottom = target_lm[62, 1], target_lm[66, 1]
    frac = np.clip((np.arange(y0, y1, dtype=np.float32) - top) / max(bottom - top, 1.0), 0, 1)
    tongue = np.clip((frac - 0.55) / 0.45, 0, 1)[:, None, None] * 0.45
    shade = (0.75 + 0.25 * frac)[:, None, None]  # darker up under the teeth
    dark = (MOUTH_DARK * shade) * (1 - tongue) + TONGUE * tongue
    dark = np.broadcast_to(dark, roi.shape)
    fill = teeth * teeth_mask[..., None] + dark * (1 - teeth_mask[..., None])
    poly = _aa_mask(roi.shape[:2], [np.round((inner - (x0, y0)) * (1 << shift)).astype(np.int32)])
    roi = roi * (1 - poly[..., None]) + fill * poly[..., None]
    out[y0:y1, x0:x1] = np.clip(roi + 0.5, 0, 255).astype(np.uint8)
    return out


def _aa_mask(shape: tuple[int, ...], polys: list[np.ndarray], filled: bool = True) -> np.ndarray:
    """Anti-aliased polygon mask in [0, 1] (cv2 anti-aliases only 8-bit images); 4-bit shift."""
    m = np.zeros(shape[:2], np.uint8)
    if filled:
        cv2.fillPoly(m, polys, 255, cv2.LINE_AA, 4)
    else:
        cv2.polylines(m, polys, False, 255, 1, cv2.LINE_AA, 4)
    return m.astype(np.float32) * (1.0 / 255.0)


# -- idle motion --------------------------------------------------------------------------------


@dataclass(frozen=True)
class IdlePose:
    angle_deg: float  # head roll
    dx: float  # head shift, px
    dy: float
    breath: float  # body rise, px
    blink: float  # 0 open .. 1 closed


def idle_poses(n_frames: int, seed: int = 0) -> list[IdlePose]:
    """Smooth idle motion with zero velocity at both ends (so a ping-pong loop has no kink):
    sums of cos(k pi u), u = 0..1, plus one blink a little after the middle."""
    rng = np.random.default_rng(seed)
    u = np.linspace(0.0, 1.0, n_frames)
    ph = rng.choice([-1.0, 1.0], size=4)

    def wave(amps: tuple[float, ...]) -> np.ndarray:
        return sum(a * np.cos((k + 1) * np.pi * u) for k, a in enumerate(amps))  # type: ignore[return-value]

    angle = ph[0] * wave((0.45, 0.0, 0.12))
    dx = ph[1] * wave((0.9, 0.25))
    dy = ph[2] * wave((0.0, 0.35))
    breath = wave((0.0, 0.6))
    blink = np.zeros(n_frames)
    if n_frames >= 12:
        centre = int(round(0.6 * (n_frames - 1)))
        for off, amt in zip(range(-2, 4), (0.35, 0.85, 1.0, 0.75, 0.4, 0.12), strict=True):
            if 0 <= centre + off < n_frames:
                blink[centre + off] = amt
    return [
        IdlePose(float(a), float(x), float(y), float(b), float(k))
        for a, x, y, b, k in zip(angle, dx, dy, breath, blink, strict=True)
    ]


class IdleField:
    """Forward displacement fields of idle poses: the head (rotating about the neck and shifting)
    fades out away from the face; the body rises with the breath below the chin."""

    def __init__(self, landmarks: np.ndarray, shape: tuple[int, int]) -> None:
        h, w = shape
        lm = np.asarray(landmarks, dtype=np.float64)
        lo, hi = lm.min(axis=0), lm.max(axis=0)
        face_h = hi[1] - lo[1]
        self.head_centre = np.array([(lo[0] + hi[0]) / 2, lo[1] + 0.35 * face_h])
        self.pivot = np.array([lm[8, 0], lm[8, 1] + 0.35 * face_h])
        gx, gy = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
        self.gx, self.gy = gx, gy
        r = np.hypot((gx - self.head_centre[0]) / 1.0, (gy - self.head_centre[1]) / 1.1)
        r0, r1 = 0.95 * face_h, 1.9 * face_h
        self.w_head = _smoothstep(1 - (r - r0) / (r1 - r0))
        chin = lm[8, 1]
        body_x = np.abs(gx - lm[8, 0])
        self.w_body = _smoothstep((gy - chin) / (0.5 * face_h)) * _smoothstep(
            1 - (body_x - 1.6 * face_h) / (0.8 * face_h)
        )
        self.w_body = np.maximum(self.w_body, 0) * (1 - self.w_head) + self.w_head * 0  # head moves itself

    def forward(self, pose: IdlePose) -> tuple[np.ndarray, np.ndarray]:
        """Displacement (fx, fy) (H, W) that the pose applies to each source pixel."""
        a = math.radians(pose.angle_deg)
        c, s = math.cos(a), math.sin(a)
        px, py = self.gx - self.pivot[0], self.gy - self.pivot[1]
        hx = self.pivot[0] + c * px - s * py + pose.dx - self.gx
        hy = self.pivot[1] + s * px + c * py + pose.dy - self.gy
        fx = self.w_head * hx
        fy = self.w_head * (hy - pose.breath) + self.w_body * (-pose.breath)
        return fx, fy

    def apply(self, image: np.ndarray, pose: IdlePose) -> np.ndarray:
        """The posed image: out(q) = image(q - F(q)) (first-order inverse of a small smooth field)."""
        fx, fy = self.forward(pose)
        map_x = (self.gx - fx).astype(np.float32)
        map_y = (self.gy - fy).astype(np.float32)
        return cv2.remap(image, map_x, map_y, interpolation=cv2.INTER_CUBIC,
                         borderMode=cv2.BORDER_REFLECT101)

    def move_points(self, points: np.ndarray, pose: IdlePose) -> np.ndarray:
        """Where source points end up: q = p + F(p) (bilinear lookup of the field)."""
        fx, fy = self.forward(pose)
        p = np.asarray(points, dtype=np.float64)
        dx = _bilinear(fx, p)
        dy = _bilinear(fy, p)
        return p + np.stack([dx, dy], axis=1)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _bilinear(field: np.ndarray, pts: np.ndarray) -> np.ndarray:
    h, w = field.shape
    x = np.clip(pts[:, 0], 0, w - 1.001)
    y = np.clip(pts[:, 1], 0, h - 1.001)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    return (
        field[y0, x0] * (1 - fx) * (1 - fy) + field[y0, x0 + 1] * fx * (1 - fy)
        + field[y0 + 1, x0] * (1 - fx) * fy + field[y0 + 1, x0 + 1] * fx * fy
    )


# -- the portrait model -------------------------------------------------------------------------


class PortraitSynth:
    """Frames of one portrait with any mouth shape, idle pose and blink."""

    def __init__(self, image: np.ndarray, landmarks: np.ndarray, cfg: AnchorConfig) -> None:
        self.image = np.ascontiguousarray(image)
        self.landmarks = np.asarray(landmarks, dtype=np.float64)
        self.cfg = cfg
        self.mesh = FaceMesh(self.image, self.landmarks)
        self.field = IdleField(self.landmarks, self.image.shape[:2])
        self.mouth_mean = normalise_mouth(self.landmarks[None]).mouth[0].astype(np.float64)
        lo, hi = self.landmarks.min(axis=0), self.landmarks.max(axis=0)
        self.box_side = float(cfg.face.crop_scale * (hi - lo).max())
        self.box_centre = (lo + hi) / 2

    def still(self, mouth_norm: np.ndarray | None, blink: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """(image, landmarks) in the portrait's own pose with a mouth shape and eyelids."""
        lm = self.landmarks if mouth_norm is None else mouth_landmarks(self.landmarks, mouth_norm)
        lm = blink_landmarks(lm, blink)
        if np.allclose(lm, self.landmarks):
            return self.image.copy(), lm
        lm = self.mesh.safe_landmarks(lm)
        img = self.mesh.warp(lm)
        if mouth_norm is not None:
            img = paint_inner_mouth(img, self.image, self.landmarks, lm)
        return img, lm

    def frame(
        self, mouth_norm: np.ndarray | None, pose: IdlePose
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(full frame, landmarks, crop box) for a mouth shape (None = the portrait's) in a pose."""
        img, lm = self.still(mouth_norm, pose.blink)
        return self.field.apply(img, pose), self.field.move_points(lm, pose), self.box(pose)

    def box(self, pose: IdlePose) -> np.ndarray:
        """The crop box of a pose: the portrait's box, carried along with the head."""
        c = self.field.move_points(self.box_centre[None], pose)[0]
        half = self.box_side / 2
        return np.array([c[0] - half, c[1] - half, c[0] + half, c[1] + half], np.float32)


# -- dataset writing ----------------------------------------------------------------------------


class _Mp4:
    def __init__(self, path: Path, size: int, fps: int, crf: int = 12) -> None:
        import av

        self._av = av
        self._c = av.open(str(path), "w")
        self._s = self._c.add_stream("libx264", rate=fps)
        self._s.width = self._s.height = size
        self._s.pix_fmt = "yuv420p"
        self._s.options = {"crf": str(crf), "preset": "fast"}
        self._tb = Fraction(1, fps)
        self._n = 0

    def write(self, rgb: np.ndarray) -> None:
        f = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        f.pts, f.time_base = self._n, self._tb
        self._n += 1
        for p in self._s.encode(f):
            self._c.mux(p)

    def close(self) -> None:
        for p in self._s.encode(None):
            self._c.mux(p)
        self._c.close()


def _write_clip(
    clip_dir: Path,
    frames: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    mouth_pca: np.ndarray,
    mouth_mean: np.ndarray,
    cfg: AnchorConfig,
) -> dict[str, object]:
    """One dataset clip from (full frame, landmarks, box) triples; silent audio."""
    from anchor.audio.mfcc import silence_mfcc
    from anchor.train.prepare import crop_face

    size = cfg.face.crop_size
    clip_dir.mkdir(parents=True)
    n = len(frames)
    writer = _Mp4(clip_dir / "face.mp4", size, cfg.video.fps)
    edges = np.zeros((n, size, size), np.uint8)
    landmarks = np.zeros((n, 68, 2), np.float32)
    boxes = np.zeros((n, 4), np.float32)
    try:
        for t, (img, lm, box) in enumerate(frames):
            crop = crop_face(img, box, size)
            writer.write(crop)
            edges[t] = cv2.Canny(
                cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY), cfg.face.canny_low, cfg.face.canny_high
            )
            landmarks[t], boxes[t] = lm, box
    finally:
        writer.close()
    side = boxes[:, 2] - boxes[:, 0]
    crop_lm = (landmarks - boxes[:, None, :2]) * (size / side)[:, None, None]
    norm = normalise_mouth(landmarks)
    samples = np.zeros(n * cfg.audio.sample_rate // cfg.video.fps, np.float32)
    mfcc = np.tile(silence_mfcc(cfg.audio)[None], (cfg.video.mfcc_per_frame * n, 1))
    np.save(clip_dir / "audio.npy", samples)
    np.savez_compressed(clip_dir / "edges.npz", edges=edges)
    np.savez(
        clip_dir / "features.npz",
        mfcc=mfcc.astype(np.float32), landmarks=landmarks, boxes=boxes,
        crop_landmarks=crop_lm.astype(np.float32), mouth=norm.mouth,
        mouth_mean=mouth_mean.astype(np.float32), mouth_pca=mouth_pca.astype(np.float32),
        norm_center=norm.center, norm_angle=norm.angle, norm_scale=norm.scale,
    )
    h, w = frames[0][0].shape[:2]
    return {
        "name": clip_dir.name, "source": "skimage.data.astronaut (synthesised)", "frames": n,
        "fps": cfg.video.fps, "sample_rate": cfg.audio.sample_rate, "width": w, "height": h,
        "mfcc_frames": int(mfcc.shape[0]), "crop_size": size, "synthetic": True,
    }


def sample_mouth_features(dataset: Dataset, n: int, seed: int = 0) -> np.ndarray:
    """n rows of real mouth PCA features (uniform over every frame of every clip)."""
    rows = np.concatenate([c.mouth_pca for c in dataset.clips])
    rng = np.random.default_rng(seed)
    return rows[rng.integers(0, len(rows), n)].astype(np.float32)


def synthesise_portrait_dataset(
    out: str | Path,
    cfg: AnchorConfig,
    pca: MouthPca,
    features: np.ndarray,
    *,
    image: np.ndarray | None = None,
    landmarks: np.ndarray | None = None,
    idle_frames: int = 75,
    seed: int = 0,
    progress: bool = True,
) -> tuple[Dataset, np.ndarray]:
    """Write the portrait's renderer dataset to `out`; returns (dataset, idle body frames).

    Clip "idle": `idle_frames` frames of idle motion with the portrait's own mouth (features 0);
    clip "talk": one frame per row of `features` (T, dims), each on a random idle pose. The PCA
    (the mouth model's basis) is stored as the dataset's pca.npz.
    """
    out = Path(out)
    if features.ndim != 2 or features.shape[1] != pca.dims:
        raise AvatarError(f"features must be (T, {pca.dims}), got {features.shape}")
    image = portrait_image() if image is None else image
    lm = detect_portrait_landmarks(image, cfg) if landmarks is None else landmarks
    synth = PortraitSynth(image, lm, cfg)
    poses = idle_poses(idle_frames, seed)
    rng = np.random.default_rng(seed + 1)

    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "clips").mkdir(parents=True)
    try:
        idle = [synth.frame(None, p) for p in progress_bar(poses, desc="idle frames", disable=not progress)]
        body = np.stack([f[0] for f in idle])
        infos = [
            _write_clip(tmp / "clips" / "idle", idle,
                        np.zeros((idle_frames, pca.dims), np.float32), synth.mouth_mean, cfg)
        ]
        del idle
        talk = []
        for f in progress_bar(features, desc="talking frames", disable=not progress):
            mouth = synth.mouth_mean + pca.inverse_transform(f[None])[0]
            talk.append(synth.frame(mouth, poses[int(rng.integers(0, idle_frames))]))
        infos.append(_write_clip(tmp / "clips" / "talk", talk, features, synth.mouth_mean, cfg))
        del talk
        pca.save(tmp / "pca.npz")
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "config": {"audio": to_dict(cfg.audio), "video": to_dict(cfg.video),
                       "face": to_dict(cfg.face)},
            "clips": infos,
            "pca": {
                "dims": pca.dims,
                "explained_variance_ratio": [float(r) for r in pca.explained_variance_ratio],
                "total": float(np.sum(pca.explained_variance_ratio)),
                "source": "mouth model's dataset",
            },
            "synthetic": {"portrait_landmarks": np.asarray(lm).round(3).tolist(), "seed": seed},
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.rename(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return load_dataset(out), body


def synthetic_landmarks(size: float, open_mouth: float = 0.0) -> np.ndarray:
    """A plausible frontal dlib-68 face filling a size x size square (float64 (68, 2))."""
    pts = np.zeros((68, 2))
    k = np.arange(17) / 16
    pts[0:17] = np.stack([0.5 - 0.32 * np.cos(np.pi * k), 0.45 + 0.35 * np.sin(np.pi * k)], 1)
    for first, x0 in ((17, 0.25), (22, 0.55)):
        xs = x0 + np.linspace(0, 0.2, 5)
        pts[first : first + 5] = np.stack([xs, 0.33 - 0.03 * np.sin(np.linspace(0, np.pi, 5))], 1)
    pts[27:31] = np.stack([np.full(4, 0.5), np.linspace(0.38, 0.55, 4)], 1)
    pts[31:36] = np.stack([np.linspace(0.44, 0.56, 5), np.full(5, 0.58)], 1)
    eye_angles = np.deg2rad([180, 120, 60, 0, -60, -120])
    for first, cx in ((36, 0.36), (42, 0.64)):
        pts[first : first + 6] = np.stack(
            [cx + 0.05 * np.cos(eye_angles), 0.42 - 0.02 * np.sin(eye_angles)], 1
        )
    outer = np.deg2rad([180, 150, 120, 90, 60, 30, 0, -30, -60, -90, -120, -150])
    pts[48:60] = np.stack([0.5 + 0.1 * np.cos(outer), 0.68 - 0.035 * np.sin(outer)], 1)
    inner = np.deg2rad([180, 120, 90, 60, 0, -60, -90, -120])
    gap = 0.002 + 0.03 * open_mouth
    pts[60:68] = np.stack([0.5 + 0.07 * np.cos(inner), 0.68 - gap * np.sin(inner)], 1)
    return pts * size
