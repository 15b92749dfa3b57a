"""Facial maps: shape, purity, where the mouth goes, how it opens, what the edges keep."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from synthetic_faces import synthetic_landmarks

from anchor.face.facial_map import (
    INNER_FILL,
    FacialMapBuilder,
    TemplateFrame,
    crop_similarity,
    template_frames_from_clip,
)
from anchor.face.jaw import JawRegression, jaw_training_data
from anchor.mouth.features import MouthPca, denormalise_mouth, normalise_mouth
from anchor.train.dataset import ClipData

S = 128  # template crop size


def face(open_px: float) -> np.ndarray:
    return synthetic_landmarks(open_px, cx=64.0, cy=56.0, a=32.0)


OPENINGS = np.linspace(0.0, 12.0, 25)


@pytest.fixture(scope="module")
def clip_like() -> tuple[np.ndarray, MouthPca, np.ndarray]:
    """(landmarks (T, 68, 2), PCA of mouth - mean, mouth mean) over a range of openings."""
    lms = np.stack([face(o) for o in OPENINGS])
    mouth = normalise_mouth(lms).mouth
    mean = mouth.mean(axis=0)
    return lms, MouthPca.fit(mouth - mean, 3), mean


def template(lm: np.ndarray, mean: np.ndarray, edges: np.ndarray | None = None) -> TemplateFrame:
    norm = normalise_mouth(lm[None])
    return TemplateFrame(
        edges=np.full((S, S), 255, np.uint8) if edges is None else edges,
        crop_landmarks=lm, mouth_center=norm.center[0], mouth_angle=float(norm.angle[0]),
        mouth_scale=float(norm.scale[0]), mouth_mean=mean,
    )


def features(lm: np.ndarray, pca: MouthPca, mean: np.ndarray) -> np.ndarray:
    return pca.transform(normalise_mouth(lm[None]).mouth[0] - mean)


def mouth_rows(img: np.ndarray, x: float, y0: float, y1: float) -> int:
    """Rows lit in the B channel within a thin column band at x, between rows y0 and y1."""
    band = img[int(y0):int(y1), int(x) - 2:int(x) + 3, 2]
    return int(np.count_nonzero(band.max(axis=1)))


@pytest.mark.parametrize("size", [64, 128, 256])
def test_map_shape_dtype_and_purity(clip_like: tuple, size: int) -> None:
    lms, pca, mean = clip_like
    tmpl = template(lms[3], mean)
    edges_before = tmpl.edges.copy()
    builder = FacialMapBuilder(size, pca)
    f = features(lms[10], pca, mean)
    a, b = builder.build(tmpl, f), builder.build(tmpl, f.copy())
    assert a.shape == (size, size, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(tmpl.edges, edges_before)
    assert all(a[..., c].any() for c in range(3))  # edges, landmarks and mouth all present


def test_mouth_is_drawn_where_the_templates_mouth_is(clip_like: tuple) -> None:
    lms, pca, mean = clip_like
    lm = lms[12]
    builder = FacialMapBuilder(S, pca)
    f = features(lm, pca, mean)
    np.testing.assert_allclose(builder.mouth_points(template(lm, mean), f), lm[48:68], atol=0.05)
    img = builder.build(template(lm, mean), f)
    lo, hi = lm[48:68].min(0), lm[48:68].max(0)
    blue = img[..., 2].astype(float)
    window = np.zeros_like(blue)
    window[int(lo[1]) - 3:int(hi[1]) + 4, int(lo[0]) - 3:int(hi[0]) + 4] = 1
    ys, xs = np.nonzero(blue * window)
    w = blue[ys, xs]
    centroid = np.array([np.average(xs, weights=w), np.average(ys, weights=w)])
    np.testing.assert_allclose(centroid, lm[48:68].mean(0), atol=2.0)
    assert blue[int(lm[62:67:4, 1].mean()), int(lm[62, 0])] >= INNER_FILL - 1  # inner mouth filled
    # nothing of the mouth above the nose base (the jawline runs up the sides, outside the cheeks)
    assert not blue[: int(lm[33, 1]), int(lm[4, 0]) + 3:int(lm[12, 0]) - 3].any()


def test_mouth_open_feature_draws_a_taller_mouth(clip_like: tuple) -> None:
    lms, pca, mean = clip_like
    tmpl = template(lms[0], mean)  # a closed-mouth template
    builder = FacialMapBuilder(S, pca)
    closed, open_ = features(lms[0], pca, mean), features(lms[-1], pca, mean)
    # the first component is the opening: pushing it further opens the mouth further
    assert abs(open_[0] - closed[0]) > 5 * np.abs(open_[1:] - closed[1:]).max()
    lm = lms[0]
    x, y0, y1 = lm[51, 0], lm[33, 1] + 2, lm[8, 1] - 3
    heights = []
    for f0 in np.linspace(closed[0], open_[0], 4):
        f = closed.copy()
        f[0] = f0
        heights.append(mouth_rows(builder.build(tmpl, f), x, y0, y1))
    assert all(b > a for a, b in zip(heights, heights[1:], strict=False)), heights
    assert heights[-1] - heights[0] >= 8  # 12 px of opening (the band stops above the chin)


def test_jaw_regression_lowers_the_chin_for_an_open_mouth(clip_like: tuple) -> None:
    lms, pca, mean = clip_like
    norm = normalise_mouth(lms)
    shapes, offsets, _ = jaw_training_data(lms, norm.mouth, norm.center, norm.angle, norm.scale)
    jaw = JawRegression.fit(shapes, offsets)
    tmpl = template(lms[0], mean)
    with_jaw, without = FacialMapBuilder(S, pca, jaw), FacialMapBuilder(S, pca)
    open_ = features(lms[-1], pca, mean)
    np.testing.assert_allclose(without.jaw_points(tmpl, open_), lms[0][:17])
    np.testing.assert_allclose(with_jaw.jaw_points(tmpl, open_), lms[-1][:17], atol=0.3)
    np.testing.assert_allclose(with_jaw.jaw_points(tmpl, features(lms[0], pca, mean)), lms[0][:17],
                               atol=1e-6)
    chin = lms[-1][8]
    img = with_jaw.build(tmpl, open_)
    assert img[int(round(chin[1])) - 1:int(round(chin[1])) + 2, int(chin[0]), 2].max() > 100


def test_edges_are_suppressed_in_the_lower_face_only(clip_like: tuple) -> None:
    lms, pca, mean = clip_like
    lm = lms[5]
    img = FacialMapBuilder(S, pca).build(template(lm, mean), features(lm, pca, mean))
    red = img[..., 0]
    mouth_c = lm[48:68].mean(0).astype(int)
    assert red[mouth_c[1], mouth_c[0]] == 0  # mouth
    assert red[int(lm[8, 1]) - 4, int(lm[8, 0])] == 0  # just inside the chin
    assert red[int((lm[3, 1] + lm[13, 1]) / 2), int(lm[48, 0]) - 4] == 0  # cheek beside the mouth
    assert red[int(lm[8, 1]) + 8, int(lm[8, 0])] == 255  # below the chin (neck) kept
    assert red[int(lm[19, 1]) - 8, int(lm[19, 0])] == 255  # forehead kept
    assert red[int(lm[37, 1]), int(lm[37, 0])] == 255  # eyes kept
    assert red[4, 4] == 255 and red[S - 4, 4] == 255  # background kept
    # downscaling keeps 1-px edges visible
    edges = np.zeros((S, S), np.uint8)
    edges[10, :] = 255
    small = FacialMapBuilder(S // 2, pca).build(template(lm, mean, edges), features(lm, pca, mean))
    assert small[5, :, 0].max() >= 250


def test_template_frames_from_clip_converts_to_crop_pixels(tmp_path: Path, clip_like: tuple) -> None:
    lms, pca, mean = clip_like
    t = 4
    k = S / 160.0  # a 160 px box in a larger frame, resized to S
    box = np.array([30.0, 20.0, 190.0, 180.0])
    full = lms[:t] / k + box[:2]  # the same faces in full-frame pixels
    norm = normalise_mouth(full)
    edges = np.zeros((t, S, S), np.uint8)
    np.savez(tmp_path / "edges.npz", edges=edges)
    clip = ClipData(
        name="c", path=tmp_path, frames=t, mfcc=np.zeros((4 * t, 13), np.float32), landmarks=full,
        boxes=np.tile(box, (t, 1)), crop_landmarks=lms[:t], mouth=norm.mouth, mouth_mean=mean,
        mouth_pca=pca.transform(norm.mouth - mean), norm_center=norm.center,
        norm_angle=norm.angle, norm_scale=norm.scale,
    )
    frames = template_frames_from_clip(clip, pca)
    assert len(frames) == t
    for i, tmpl in enumerate(frames):
        pts = denormalise_mouth(norm.mouth[i], tmpl.mouth_center, tmpl.mouth_angle, tmpl.mouth_scale)
        np.testing.assert_allclose(pts, lms[i, 48:68], atol=1e-3)
    c, a, s = crop_similarity(norm.center[0], float(norm.angle[0]), float(norm.scale[0]), box, S)
    assert s == pytest.approx(float(norm.scale[0]) * k, rel=1e-6)
    assert len(template_frames_from_clip(clip, pca, [1, 3])) == 2
