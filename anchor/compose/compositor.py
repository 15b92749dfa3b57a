"""The rendered face -> body template frame (paper Fig. 9), with no seam.

Per template index the geometry is fixed, so it is computed once and cached: the region of the
body frame the face box covers, the warp of the face crop into it, the feathered alpha (the blend
mask eroded by `feather_px` and blurred by as much, never reaching outside the blend mask), and
the "ring" of pixels around the mask boundary where colour statistics are compared. Per frame the
work is one small warp, one Lab colour transfer over the face box and one blend.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import cv2
import numpy as np

from anchor.compose.body import BodyTemplate
from anchor.compose.chroma import (
    DEFAULT_STUDIO_COLOUR,
    KEYS,
    parse_background,
    replace_background,
    suppress_spill,
)
from anchor.config import ComposeConfig
from anchor.errors import ComposeError

log = logging.getLogger(__name__)

STD_RATIO_LIMITS = (0.5, 2.0)  # colour transfer never stretches contrast beyond this


@dataclass(frozen=True)
class _Paste:
    """Cached geometry of one template index."""

    y0: int
    y1: int
    x0: int
    x1: int
    sx: float  # face-box pixels per face-crop pixel
    sy: float
    tx: float  # translation of the face crop inside the region (pixel-centre convention)
    ty: float
    alpha: np.ndarray  # (h, w, 1) float32 in [0, 1]
    ring: np.ndarray  # flat indices into the (h*w) region
    base_lab_mean: np.ndarray  # (3,) of the base frame inside the ring
    base_lab_std: np.ndarray  # (3,)


def _lab8(rgb: np.ndarray) -> np.ndarray:
    """8-bit Lab (cv2's LUT path: an order of magnitude faster than float, ~1 level of error)."""
    return np.asarray(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2LAB))


def ring_stats(rgb: np.ndarray, ring: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lab (8-bit scale) mean and std of the `ring` pixels (flat indices) of an RGB uint8 image."""
    pixels = rgb.reshape(-1, 3)[ring].reshape(-1, 1, 3)
    lab = _lab8(pixels).reshape(-1, 3).astype(np.float32)
    return lab.mean(axis=0), lab.std(axis=0)


def colour_transfer(
    face: np.ndarray,
    ring: np.ndarray,
    target_mean: np.ndarray,
    target_std: np.ndarray,
) -> np.ndarray:
    """Match the face's Lab mean/std over `ring` pixels to the target's (RGB uint8 in and out)."""
    mean, std = ring_stats(face, ring)
    ratio = np.clip(target_std / np.maximum(std, 1e-3), *STD_RATIO_LIMITS).astype(np.float32)
    offset = (target_mean - mean * ratio).astype(np.float32)
    lab = _lab8(face).astype(np.float32)
    lab = lab * ratio + offset
    out = np.clip(lab + 0.5, 0, 255).astype(np.uint8)
    return np.asarray(cv2.cvtColor(out, cv2.COLOR_LAB2RGB))


def feathered_alpha(mask: np.ndarray, feather_px: int) -> np.ndarray:
    """Soft alpha from a (soft) mask: eroded by feather_px, blurred by feather_px, and never above
    the mask itself, so nothing outside the mask changes."""
    m = np.asarray(mask, dtype=np.float32)
    if feather_px <= 0:
        return m
    hard = (m >= 0.5).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * feather_px + 1, 2 * feather_px + 1))
    eroded = cv2.erode(hard, kernel).astype(np.float32)
    # a Gaussian truncated at radius feather_px: its support stays inside the un-eroded mask
    soft = cv2.GaussianBlur(eroded, (2 * feather_px + 1, 2 * feather_px + 1), feather_px / 2.0)
    return np.minimum(soft, m)


class Compositor:
    """Pastes rendered face crops into body template frames.

    `compose(face, i)` returns a new (H, W, 3) uint8 RGB frame; `base_frame(i)` is body frame i
    after chroma keying / background replacement (what the idle loop shows).
    """

    def __init__(
        self, cfg: ComposeConfig, body: BodyTemplate, background: np.ndarray | None = None
    ) -> None:
        if cfg.chroma_key not in KEYS:
            raise ComposeError(
                f"compose.chroma_key {cfg.chroma_key!r} unknown (known: {', '.join(KEYS)})"
            )
        if cfg.feather_px < 0:
            raise ComposeError(f"compose.feather_px must be >= 0, got {cfg.feather_px}")
        self.cfg = cfg
        self.body = body
        h, w = body.height, body.width
        if background is not None:
            if background.shape != (h, w, 3):
                raise ComposeError(f"background {background.shape} does not match body {(h, w, 3)}")
            self._background: np.ndarray | None = background
        else:
            self._background = parse_background(cfg.background, w, h)
        if self._background is not None and cfg.chroma_key == "none":
            log.warning(
                "compose.background is set but compose.chroma_key is 'none': there is no matte, "
                "so the template's own background is kept"
            )
            self._background = None
        if self._background is None and cfg.chroma_key != "none":
            self._background = np.broadcast_to(
                np.array(DEFAULT_STUDIO_COLOUR, np.uint8), (h, w, 3)
            ).copy()
        self._base: dict[int, np.ndarray] = {}
        self._paste: dict[tuple[int, int], _Paste] = {}

    # -- per template index (cached) ----------------------------------------------------------

    def base_frame(self, index: int) -> np.ndarray:
        """Body frame `index` with the background replaced (read-only; copy before editing)."""
        i = index % self.body.n_frames
        frame = self._base.get(i)
        if frame is None:
            raw = self.body.frame(i)
            if self.cfg.chroma_key != "none":
                assert self._background is not None
                frame = replace_background(
                    raw, self._background, self.cfg.chroma_key, self.cfg.key_threshold
                )
            else:
                frame = np.ascontiguousarray(raw)
            frame.setflags(write=False)
            self._base[i] = frame
        return frame

    def _geometry(self, index: int, face_size: int) -> _Paste | None:
        i = index % self.body.n_frames
        key = (i, face_size)
        cached = self._paste.get(key)
        if cached is not None:
            return cached
        bx0, by0, bx1, by1 = (float(v) for v in self.body.face_boxes[i])
        h, w = self.body.height, self.body.width
        x0, y0 = max(0, math.floor(bx0)), max(0, math.floor(by0))
        x1, y1 = min(w, math.ceil(bx1)), min(h, math.ceil(by1))
        if x1 <= x0 or y1 <= y0:
            return None  # the face box lies outside the frame: nothing to paste
        # pixel centres: face pixel u (centre u + 0.5) lands at frame x = bx0 + (u + 0.5) sx
        sx, sy = (bx1 - bx0) / face_size, (by1 - by0) / face_size
        tx, ty = bx0 - x0 + 0.5 * sx - 0.5, by0 - y0 + 0.5 * sy - 0.5
        rw, rh = x1 - x0, y1 - y0
        mask = self.body.blend_mask
        ms = mask.shape[0]
        msx, msy = (bx1 - bx0) / ms, (by1 - by0) / ms
        mt = np.array(
            [[msx, 0, bx0 - x0 + 0.5 * msx - 0.5], [0, msy, by0 - y0 + 0.5 * msy - 0.5]],
            dtype=np.float64,
        )
        warped = cv2.warpAffine(
            mask, mt, (rw, rh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
        )
        feather = self.cfg.feather_px
        alpha = feathered_alpha(warped, feather)
        hard = (warped >= 0.5).astype(np.uint8)
        r = max(2, feather)
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        ring_mask = np.logical_and(cv2.dilate(hard, kernel) > 0, cv2.erode(hard, kernel) == 0)
        ring = np.flatnonzero(ring_mask.reshape(-1))
        if ring.size >= 16:
            mean, std = ring_stats(np.ascontiguousarray(self.base_frame(i)[y0:y1, x0:x1]), ring)
        else:
            mean, std = np.zeros(3, np.float32), np.ones(3, np.float32)
        geo = _Paste(
            y0, y1, x0, x1, sx, sy, tx, ty, alpha[..., None].astype(np.float32), ring,
            mean.astype(np.float32), std.astype(np.float32),
        )
        self._paste[key] = geo
        return geo

    # -- per frame ----------------------------------------------------------------------------

    def warp_face(self, face: np.ndarray, geo: _Paste) -> np.ndarray:
        """The face crop resampled into the paste region (h, w, 3) uint8."""
        rw, rh = geo.x1 - geo.x0, geo.y1 - geo.y0
        sx, sy, tx, ty = geo.sx, geo.sy, geo.tx, geo.ty
        src = face
        if min(sx, sy) < 1.0:
            # shrink with area averaging first (warpAffine would alias), then place sub-pixel
            n = face.shape[0]
            nw, nh = max(1, round(n * sx)), max(1, round(n * sy))
            src = cv2.resize(face, (nw, nh), interpolation=cv2.INTER_AREA)
            sx2, sy2 = sx * n / nw, sy * n / nh
            tx, ty = tx + 0.5 * (sx2 - sx), ty + 0.5 * (sy2 - sy)
            sx, sy = sx2, sy2
        m = np.array([[sx, 0, tx], [0, sy, ty]], dtype=np.float64)
        return cv2.warpAffine(
            src, m, (rw, rh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )

    def compose(self, face: np.ndarray, template_index: int) -> np.ndarray:
        """Paste `face` (S, S, 3) uint8 RGB into body frame `template_index`."""
        if face.ndim != 3 or face.shape[2] != 3 or face.shape[0] != face.shape[1]:
            raise ComposeError(f"face must be (S, S, 3) uint8 RGB, got {face.shape}")
        base = self.base_frame(template_index)
        out = base.copy()
        geo = self._geometry(template_index, int(face.shape[0]))
        if geo is None:
            return out
        if face.dtype != np.uint8:
            face = np.clip(face, 0, 255).astype(np.uint8)
        if self.cfg.chroma_key != "none":
            face = suppress_spill(face, self.cfg.chroma_key)
        warped = self.warp_face(face, geo)
        if self.cfg.color_match and geo.ring.size >= 16:
            warped = colour_transfer(warped, geo.ring, geo.base_lab_mean, geo.base_lab_std)
        region = base[geo.y0 : geo.y1, geo.x0 : geo.x1].astype(np.float32)
        blended = region + geo.alpha * (warped.astype(np.float32) - region)
        out[geo.y0 : geo.y1, geo.x0 : geo.x1] = (blended + 0.5).astype(np.uint8)
        return out

    def compose_many(self, faces: np.ndarray, template_indices: np.ndarray | list[int]) -> list[np.ndarray]:
        return [self.compose(f, int(i)) for f, i in zip(faces, template_indices, strict=True)]

    @staticmethod
    def crossfade(a: np.ndarray, b: np.ndarray, w: float) -> np.ndarray:
        """(1 - w) a + w b for two frames of the same size (idle-loop dissolve)."""
        if w <= 0.0:
            return a.copy()
        if w >= 1.0:
            return b.copy()
        return cv2.addWeighted(a, 1.0 - w, b, w, 0.0)
