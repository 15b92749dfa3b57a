"""Facial maps (Zheng et al. 2021, §3.2.1): what the renderer is asked to turn into a face.

One map per output frame, drawn at the renderer's resolution R from a template frame and a
10-D PCA mouth:

- R channel: the template's Canny edges (hair, eyes, clothes, background), with the lower face
  (below the nose, inside the jaw) blanked so old lip and chin edges do not fight the new mouth;
- G channel: the template's landmark polylines: eyebrows, eyes, nose;
- B channel: the generated mouth (outer and inner lip outlines, lip area and inner mouth filled
  at two grey levels) and the jawline, moved by the jaw regression to fit that mouth.

Three channels keep the three sources apart for the renderer. `FacialMapBuilder.build` is a
pure function of (template frame, mouth features).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from anchor.errors import DatasetError
from anchor.face.jaw import (
    JAW_SLICE,
    JawRegression,
    denormalise_points,
    mouth_shape,
    normalise_points,
)
from anchor.mouth.features import MouthPca, denormalise_mouth

if TYPE_CHECKING:  # building only: serving never imports the training code
    from anchor.train.dataset import ClipData

# dlib 68-point groups drawn from the template (G channel): (first, last, closed)
TEMPLATE_POLYLINES: tuple[tuple[int, int, bool], ...] = (
    (17, 21, False),  # right eyebrow (image left)
    (22, 26, False),  # left eyebrow
    (27, 30, False),  # nose bridge down to the tip
    (31, 35, False),  # nose base
    (36, 41, True),  # right eye
    (42, 47, True),  # left eye
)
# Mouth point indices inside the 20-point mouth (points 48..67)
OUTER_LIP = slice(0, 12)
INNER_LIP = slice(12, 20)
LIP_FILL = 80  # B level of the lips (between outer and inner outline)
INNER_FILL = 160  # B level of the open mouth (teeth / tongue / dark)
LINE = 255
_SHIFT = 4  # cv2 sub-pixel drawing: coordinates in 1/16 px so slow mouth motion stays smooth


@dataclass(frozen=True)
class TemplateFrame:
    """What a facial map needs from one template frame, in crop pixels (S x S).

    mouth_center/angle/scale: the normalisation similarity of this frame expressed in crop
    pixels (denormalise_mouth(m, center, angle, scale) gives crop pixels); mouth_mean: the
    template clip's mean normalised mouth, added to the inverse PCA of generated features.
    """

    edges: np.ndarray  # (S, S) uint8 {0, 255}
    crop_landmarks: np.ndarray  # (68, 2) float crop pixels
    mouth_center: np.ndarray  # (2,)
    mouth_angle: float
    mouth_scale: float
    mouth_mean: np.ndarray  # (40,)

    @property
    def size(self) -> int:
        return int(self.edges.shape[0])


def _fixed(points: np.ndarray, k: float) -> np.ndarray:
    """Float pixels (scaled by k) -> int32 cv2 points with _SHIFT fractional bits."""
    return np.round(np.asarray(points, dtype=np.float64) * k * (1 << _SHIFT)).astype(np.int32)


def _lower_face_polygon(landmarks: np.ndarray, jaw: np.ndarray) -> np.ndarray:
    """Jaw 2..14 (cheek, chin, cheek) closed along the nose base (35..31): the lower face."""
    return np.concatenate([jaw[2:15], landmarks[35:30:-1]])


class FacialMapBuilder:
    """Draws (R, R, 3) uint8 facial maps at R = `size` from S x S template frames."""

    def __init__(self, size: int, pca: MouthPca, jaw: JawRegression | None = None) -> None:
        self.size = int(size)
        self.pca = pca
        self.jaw = jaw
        self.line_width = max(1, round(self.size / 256))
        # blank a little beyond the old jawline too, so its edge disappears with the lower face
        margin = max(1, round(self.size / 48))
        self._dilate = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1))

    # -- geometry (crop pixels) -------------------------------------------------------------

    def mouth_normalised(self, template: TemplateFrame, features: np.ndarray) -> np.ndarray:
        """(40,) normalised mouth of the generated features on this template."""
        f = np.asarray(features, dtype=np.float64).reshape(1, -1)
        return np.asarray(template.mouth_mean, dtype=np.float64) + self.pca.inverse_transform(f)[0]

    def mouth_points(self, template: TemplateFrame, features: np.ndarray) -> np.ndarray:
        """(20, 2) generated mouth points 48..67 in crop pixels."""
        m = self.mouth_normalised(template, features)
        return np.asarray(
            denormalise_mouth(m, template.mouth_center, template.mouth_angle, template.mouth_scale),
            dtype=np.float64,
        ).reshape(20, 2)

    def jaw_points(self, template: TemplateFrame, features: np.ndarray) -> np.ndarray:
        """(17, 2) jawline in crop pixels: the template's, moved to fit the generated mouth."""
        jaw = np.asarray(template.crop_landmarks[JAW_SLICE], dtype=np.float64)
        if self.jaw is None:
            return jaw
        sim = (template.mouth_center, template.mouth_angle, template.mouth_scale)
        jaw_n = normalise_points(jaw, *sim)
        own_mouth = normalise_points(template.crop_landmarks[48:68], *sim).reshape(40)
        new = self.jaw.correct(jaw_n, mouth_shape(own_mouth), mouth_shape(self.mouth_normalised(template, features)))
        return denormalise_points(new, *sim)

    # -- drawing ------------------------------------------------------------------------------

    def _edges(self, template: TemplateFrame, jaw: np.ndarray, k: float) -> np.ndarray:
        r = self.size
        edges = np.asarray(template.edges, dtype=np.uint8)
        out: np.ndarray
        if edges.shape[0] == r:
            out = edges.copy()
        elif edges.shape[0] > r:
            # area averaging thins 1-px edges to grey; scale back so an edge stays near full
            gain = edges.shape[0] / r
            small = cv2.resize(edges, (r, r), interpolation=cv2.INTER_AREA).astype(np.float32)
            out = np.clip(small * gain, 0, 255).astype(np.uint8)
        else:
            out = cv2.resize(edges, (r, r), interpolation=cv2.INTER_LINEAR)
        mask: np.ndarray = np.zeros((r, r), np.uint8)
        lm = template.crop_landmarks
        # one fillPoly per polygon: a single call would XOR where the two overlap
        for jawline in (lm[JAW_SLICE], jaw):
            poly = _fixed(_lower_face_polygon(lm, jawline), k)
            cv2.fillPoly(mask, [poly], 255, cv2.LINE_8, _SHIFT)
        mask = cv2.dilate(mask, self._dilate)
        out[mask > 0] = 0
        return out

    def _polylines(self, img: np.ndarray, pts: np.ndarray, closed: bool, value: int) -> None:
        cv2.polylines(img, [pts], closed, value, self.line_width, cv2.LINE_AA, _SHIFT)

    def build(self, template: TemplateFrame, features: np.ndarray) -> np.ndarray:
        """(R, R, 3) uint8 map for `features` (10,) on `template`. Pure and deterministic."""
        r = self.size
        k = r / template.size
        mouth = self.mouth_points(template, features)
        jaw = self.jaw_points(template, features)

        red = self._edges(template, jaw, k)

        green = np.zeros((r, r), np.uint8)
        lm = template.crop_landmarks
        for first, last, closed in TEMPLATE_POLYLINES:
            self._polylines(green, _fixed(lm[first : last + 1], k), closed, LINE)

        blue = np.zeros((r, r), np.uint8)
        outer, inner = _fixed(mouth[OUTER_LIP], k), _fixed(mouth[INNER_LIP], k)
        cv2.fillPoly(blue, [outer], LIP_FILL, cv2.LINE_AA, _SHIFT)
        cv2.fillPoly(blue, [inner], INNER_FILL, cv2.LINE_AA, _SHIFT)
        self._polylines(blue, outer, True, LINE)
        self._polylines(blue, inner, True, LINE)
        self._polylines(blue, _fixed(jaw, k), False, LINE)

        return np.stack([red, green, blue], axis=-1)

    def build_many(
        self, templates: Sequence[TemplateFrame], features: np.ndarray
    ) -> np.ndarray:
        """(N, R, R, 3) maps for N (template, features (N, 10)) pairs."""
        return np.stack([self.build(t, f) for t, f in zip(templates, features, strict=True)])


def crop_similarity(
    center: np.ndarray, angle: float, scale: float, box: np.ndarray, crop_size: int
) -> tuple[np.ndarray, float, float]:
    """Full-frame normalisation similarity -> the same map in crop pixels.

    The crop is the square box (x0, y0, x1, y1) resized to crop_size, i.e. crop = (p - (x0, y0)) * k
    with k = crop_size / (x1 - x0); a similarity p = c + s R q becomes c' = (c - (x0, y0)) k,
    s' = s k, angle unchanged.
    """
    box = np.asarray(box, dtype=np.float64)
    k = crop_size / float(box[2] - box[0])
    return (np.asarray(center, dtype=np.float64) - box[:2]) * k, float(angle), float(scale) * k


def template_frames_from_clip(
    clip: ClipData, pca: MouthPca | None = None, frames: Sequence[int] | None = None
) -> list[TemplateFrame]:
    """The clip's frames as templates (all, or `frames`), with the normalisation similarity
    converted from full-frame pixels to crop pixels through each frame's box.

    With `pca`, checks that the clip's mouth features have the PCA's dimension.
    """
    if pca is not None and clip.mouth_pca.shape[1] != pca.components.shape[0]:
        raise DatasetError(
            f"{clip.path}: mouth_pca has {clip.mouth_pca.shape[1]} dims, PCA has "
            f"{pca.components.shape[0]}"
        )
    edges = clip.edges()
    if len(edges) < clip.frames:
        raise DatasetError(f"{clip.path / 'edges.npz'}: {len(edges)} edge maps for {clip.frames} frames")
    crop_size = int(edges.shape[1])
    out = []
    for t in range(clip.frames) if frames is None else frames:
        center, angle, scale = crop_similarity(
            clip.norm_center[t], float(clip.norm_angle[t]), float(clip.norm_scale[t]),
            clip.boxes[t], crop_size,
        )
        out.append(
            TemplateFrame(
                edges=edges[t],
                crop_landmarks=np.asarray(clip.crop_landmarks[t], dtype=np.float64),
                mouth_center=center,
                mouth_angle=angle,
                mouth_scale=scale,
                mouth_mean=np.asarray(clip.mouth_mean, dtype=np.float64),
            )
        )
    return out
