"""Compositor: the face lands in its box, nothing outside the feathered mask changes, colour
matching hides the seam, chroma key and spill suppression work."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from anchor.compose import BodyTemplate, Compositor
from anchor.compose.chroma import key_alpha, parse_background, suppress_spill
from anchor.compose.compositor import feathered_alpha
from anchor.config import ComposeConfig
from anchor.errors import ComposeError

SKIN = (200, 150, 120)
GREEN = (40, 200, 60)
R = 64  # face crop size


def _body(n: int = 3, background: tuple[int, int, int] = GREEN) -> BodyTemplate:
    h, w = 160, 200
    frames = np.zeros((n, h, w, 3), np.uint8)
    frames[:] = background
    for f in frames:
        cv2.circle(f, (100, 80), 50, SKIN, -1)
    mask = np.zeros((R, R), np.float32)
    cv2.ellipse(mask, (R // 2, R // 2), (R // 3, R // 3), 0, 0, 360, 1.0, -1)
    boxes = np.tile(np.array([[60.0, 40.0, 140.0, 120.0]], np.float32), (n, 1))  # 80 px box
    return BodyTemplate(boxes, mask, frames)


def _mask_in_frame(comp: Compositor) -> np.ndarray:
    """Where the blend mask lands in the frame (boolean, any alpha > 0)."""
    geo = comp._geometry(0, R)
    assert geo is not None
    out = np.zeros((comp.body.height, comp.body.width), bool)
    out[geo.y0 : geo.y1, geo.x0 : geo.x1] = geo.alpha[..., 0] > 0
    return out


def test_output_shape_and_face_region_changes() -> None:
    body = _body()
    comp = Compositor(ComposeConfig(color_match=False), body)
    face = np.full((R, R, 3), (90, 60, 200), np.uint8)
    out = comp.compose(face, 1)
    assert out.shape == (160, 200, 3) and out.dtype == np.uint8
    # the centre of the box is now the face colour
    assert np.abs(out[80, 100].astype(int) - (90, 60, 200)).max() <= 2


def test_outside_feathered_mask_untouched() -> None:
    body = _body()
    comp = Compositor(ComposeConfig(feather_px=6), body)
    face = np.random.default_rng(0).integers(0, 256, (R, R, 3), dtype=np.uint8)
    out = comp.compose(face, 0)
    inside = _mask_in_frame(comp)
    assert inside.any()
    np.testing.assert_array_equal(out[~inside], body.frames[0][~inside])


def test_feathered_alpha_is_soft_and_stays_inside_mask() -> None:
    mask = np.zeros((80, 80), np.float32)
    mask[20:60, 20:60] = 1
    alpha = feathered_alpha(mask, 6)
    assert np.all(alpha[mask == 0] == 0)
    assert alpha[40, 40] == pytest.approx(1.0, abs=1e-3)
    edge = alpha[40, 20:40]
    assert np.all(np.diff(edge) >= -1e-6)  # rises monotonically from the mask edge inwards
    assert 0.05 < edge[6] < 0.95  # partly transparent inside the feather band


def test_colour_matching_hides_the_seam() -> None:
    body = _body(background=(50, 50, 50))
    # the renderer got the skin tone wrong: too bright and too red
    face = np.full((R, R, 3), (240, 150, 110), np.uint8)
    face += np.random.default_rng(1).integers(0, 6, face.shape, dtype=np.uint8)
    plain = Compositor(ComposeConfig(color_match=False, feather_px=4), body).compose(face, 0)
    matched = Compositor(ComposeConfig(color_match=True, feather_px=4), body).compose(face, 0)

    comp = Compositor(ComposeConfig(feather_px=4), body)
    inside = _mask_in_frame(comp)
    ring = cv2.dilate(inside.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool) & ~inside
    just_inside = inside & ~cv2.erode(inside.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)

    def seam(img: np.ndarray) -> float:
        a = img[just_inside].astype(float).mean(axis=0)
        b = img[ring].astype(float).mean(axis=0)
        return float(np.abs(a - b).sum())

    assert seam(matched) < 0.5 * seam(plain)


def test_chroma_key_replaces_green_with_background_colour() -> None:
    body = _body()
    comp = Compositor(ComposeConfig(chroma_key="green", background="#102030"), body)
    base = comp.base_frame(0)
    assert tuple(base[5, 5]) == (16, 32, 48)  # green corner -> background
    assert np.abs(base[80, 100].astype(int) - SKIN).max() <= 2  # the face stays


def test_blue_key() -> None:
    img = np.zeros((4, 4, 3), np.uint8)
    img[:2] = (30, 60, 220)
    img[2:] = SKIN
    alpha = key_alpha(img, "blue")
    assert np.all(alpha[:2] == 0) and np.all(alpha[2:] == 1)


def test_spill_suppression_removes_green_cast() -> None:
    skin = np.full((8, 8, 3), SKIN, np.uint8)
    spilled = skin.copy()
    spilled[..., 1] = 190  # green light bounced onto the skin
    fixed = suppress_spill(spilled, "green")

    def cast(img: np.ndarray) -> float:
        f = img.astype(float)
        return float((f[..., 1] - (f[..., 0] + f[..., 2]) / 2).mean())

    assert cast(fixed) < cast(spilled)
    assert cast(fixed) <= 0
    # skin without spill is left alone
    np.testing.assert_array_equal(suppress_spill(skin, "green"), skin)


def test_key_alpha_soft_edge() -> None:
    colours = np.array([[GREEN, (120, 160, 100), SKIN]], np.uint8)
    a = key_alpha(colours, "green", threshold=0.35)
    assert a[0, 0] == 0.0 and a[0, 2] == 1.0 and 0.0 < a[0, 1] <= 1.0


def test_background_image_covers_frame(tmp_path) -> None:  # type: ignore[no-untyped-def]
    img = np.zeros((50, 100, 3), np.uint8)
    img[:, :50] = (255, 0, 0)
    path = tmp_path / "studio.png"
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    bg = parse_background(str(path), 40, 40)
    assert bg is not None and bg.shape == (40, 40, 3)
    assert tuple(bg[20, 5]) == (255, 0, 0)


def test_bad_settings_are_named() -> None:
    with pytest.raises(ComposeError, match="chroma_key 'purple'"):
        Compositor(ComposeConfig(chroma_key="purple"), _body())
    with pytest.raises(ComposeError, match="neither #rrggbb nor an existing image"):
        Compositor(ComposeConfig(chroma_key="green", background="studio.jpg"), _body())


def test_face_box_partly_outside_frame() -> None:
    body = _body()
    body.face_boxes[0] = (150, 100, 230, 180)  # runs off the right and bottom edges
    comp = Compositor(ComposeConfig(), body)
    out = comp.compose(np.zeros((R, R, 3), np.uint8), 0)
    assert out.shape == (160, 200, 3)


def test_downscaled_face_lands_in_box() -> None:
    body = _body()
    body.face_boxes[:] = (80, 60, 120, 100)  # 40 px box for a 64 px face
    comp = Compositor(ComposeConfig(color_match=False, feather_px=2), body)
    out = comp.compose(np.full((R, R, 3), (0, 0, 255), np.uint8), 0)
    assert tuple(out[80, 100]) == (0, 0, 255)
    assert tuple(out[80, 75]) == tuple(body.frames[0][80, 75])
