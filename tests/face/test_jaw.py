"""Jaw regression: recovers a linear map, R^2, save/load, and the similarity it shares with the
mouth normalisation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from synthetic_faces import synthetic_landmarks

from anchor.errors import FaceError
from anchor.face.jaw import (
    CHIN_Y,
    JawRegression,
    denormalise_points,
    fit_jaw_regression,
    jaw_training_data,
    mouth_shape,
    normalise_points,
)
from anchor.mouth.features import denormalise_mouth, normalise_mouth


def face(open_px: float, width_px: float = 0.0, tilt: float = 0.0) -> np.ndarray:
    return synthetic_landmarks(open_px, width_px=width_px, cx=60.0, cy=55.0, a=30.0, tilt=tilt)


def test_recovers_known_linear_map() -> None:
    rng = np.random.default_rng(0)
    shapes = rng.uniform([0.8, 0.2], [1.2, 0.9], size=(200, 2))
    weights = rng.standard_normal((3, 34))
    offsets = np.concatenate([shapes, np.ones((200, 1))], 1) @ weights
    offsets += 1e-6 * rng.standard_normal(offsets.shape)
    jaw = JawRegression.fit(shapes, offsets.reshape(200, 17, 2))
    np.testing.assert_allclose(jaw.weights, weights, atol=1e-4)
    assert jaw.r2(shapes, offsets) == pytest.approx(1.0, abs=1e-9)
    assert jaw.predict(shapes[:5]).shape == (5, 17, 2)
    # pure noise is not explained
    noise = rng.standard_normal((200, 34))
    assert JawRegression.fit(shapes, noise).r2(shapes, noise) < 0.1


def test_fit_needs_34_outputs_and_frames() -> None:
    with pytest.raises(FaceError, match="34"):
        JawRegression.fit(np.ones((10, 2)), np.ones((10, 10)))
    with pytest.raises(FaceError, match="at least 3"):
        JawRegression.fit(np.ones((2, 2)), np.ones((2, 34)))


def test_save_load_roundtrip(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    jaw = JawRegression(rng.standard_normal((3, 34)))
    path = tmp_path / "sub" / "jaw.npz"
    jaw.save(path)
    assert [p.name for p in path.parent.iterdir()] == ["jaw.npz"]  # no temp file left behind
    np.testing.assert_array_equal(JawRegression.load(path).weights, jaw.weights)
    bad = tmp_path / "bad.npz"
    np.savez(bad, other=np.zeros(3))
    with pytest.raises(FaceError, match=str(bad)):
        JawRegression.load(bad)
    with pytest.raises(FaceError, match="nope.npz"):
        JawRegression.load(tmp_path / "nope.npz")


def test_mouth_shape_is_outer_lip_width_and_height() -> None:
    lm = face(open_px=6.0)
    mouth = (lm[48:68] - lm[48:68].mean(0)).reshape(40)
    w, h = mouth_shape(mouth)
    assert w == pytest.approx(lm[54, 0] - lm[48, 0])
    assert h == pytest.approx(lm[57, 1] - lm[51, 1])
    assert mouth_shape(np.stack([mouth, mouth])).shape == (2, 2)


def test_normalisation_matches_the_mouth_features() -> None:
    lms = np.stack([face(o, tilt=t) for o, t in ((0, 0.0), (5, 0.2), (9, -0.3))])
    norm = normalise_mouth(lms)
    q = normalise_points(lms[:, 48:68], norm.center, norm.angle, norm.scale)
    np.testing.assert_allclose(q.reshape(3, 40), norm.mouth, atol=1e-5)
    back = denormalise_points(q, norm.center, norm.angle, norm.scale)
    np.testing.assert_allclose(back, lms[:, 48:68], atol=1e-3)
    np.testing.assert_allclose(
        back, denormalise_mouth(norm.mouth, norm.center, norm.angle, norm.scale), atol=1e-3
    )


def test_chin_follows_mouth_opening_on_synthetic_faces() -> None:
    rng = np.random.default_rng(2)
    opens = rng.uniform(0, 10, 80)
    widths = rng.uniform(-3, 3, 80)
    lms = np.stack([face(o, w, tilt=rng.uniform(-0.2, 0.2)) for o, w in zip(opens, widths, strict=True)])
    norm = normalise_mouth(lms)
    shapes, offsets, mean = jaw_training_data(lms, norm.mouth, norm.center, norm.angle, norm.scale)
    assert offsets.shape == (80, 17, 2) and mean.shape == (17, 2)
    np.testing.assert_allclose(offsets.mean(axis=0), 0, atol=1e-9)
    jaw = fit_jaw_regression([(shapes, offsets)])
    assert jaw.r2(shapes, offsets) > 0.99
    closed, wide = mouth_shape(norm.mouth[np.argmin(opens)]), mouth_shape(norm.mouth[np.argmax(opens)])
    chin = jaw.correct(np.zeros((17, 2)), closed, wide)[8]
    assert chin[1] > 0.1  # the chin moves down (normalised units of the eye distance)
    np.testing.assert_allclose(jaw.correct(mean, closed, closed), mean)


def test_r2_of_selected_outputs() -> None:
    rng = np.random.default_rng(3)
    shapes = rng.uniform(0.2, 1.0, size=(50, 2))
    offsets = rng.standard_normal((50, 34))
    offsets[:, CHIN_Y] = 2.0 * shapes[:, 1]  # the chin follows the mouth height exactly
    jaw = JawRegression.fit(shapes, offsets)
    assert jaw.r2(shapes, offsets, [CHIN_Y]) == pytest.approx(1.0)
    assert jaw.r2(shapes, offsets) < 0.2
