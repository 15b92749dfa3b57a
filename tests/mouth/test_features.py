"""Mouth normalisation (pose/size removal) and the mouth PCA."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from anchor.errors import MouthError
from anchor.mouth.features import MOUTH_SLICE, MouthPca, denormalise_mouth, normalise_mouth


def _similarity(points: np.ndarray, angle: float, scale: float, shift: np.ndarray) -> np.ndarray:
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return scale * points @ rot.T + shift


def _face(rng: np.random.Generator, t: int = 1) -> np.ndarray:
    """(t, 68, 2) face-like landmarks: eyes at y=0, nose below, mouth below that, plus jitter."""
    lm = rng.normal(0, 0.03, (t, 68, 2))
    lm[:, 36:42] += [-0.5, 0.0]
    lm[:, 42:48] += [0.5, 0.0]
    lm[:, 27:36] += [0.0, 0.5]
    lm[:, 48:68] += [0.0, 1.0]
    return lm


def test_upright_face_conventions() -> None:
    lm = np.zeros((1, 68, 2))
    lm[:, 36:42] = [-0.5, 0.0]
    lm[:, 42:48] = [0.5, 0.0]
    lm[:, 27:36] = [0.0, 0.5]
    lm[:, 48:68] = [0.1, 1.0]
    lm = _similarity(lm, 0.0, 60.0, np.array([200.0, 100.0]))
    n = normalise_mouth(lm)
    assert n.mouth.shape == (1, 40)
    np.testing.assert_allclose(n.angle, [0.0], atol=1e-6)
    np.testing.assert_allclose(n.scale, [60.0], rtol=1e-6)  # inter-ocular distance
    np.testing.assert_allclose(n.center, [[200.0, 130.0]], atol=1e-4)  # nose centre
    # x/y interleaved, relative to the nose, in inter-ocular units: mouth lies below (+y)
    np.testing.assert_allclose(n.mouth[0].reshape(20, 2), np.tile([0.1, 0.5], (20, 1)), atol=1e-5)


def test_normalised_mouth_is_invariant_to_rotation_scale_and_translation() -> None:
    rng = np.random.default_rng(0)
    face = _face(rng, 5)
    base = normalise_mouth(_similarity(face, 0.0, 100.0, np.array([300.0, 200.0])))
    ref = base.mouth
    for _ in range(10):
        angle, scale = rng.uniform(-0.6, 0.6), rng.uniform(20, 400)
        moved = _similarity(face, angle, scale, rng.uniform(-500, 500, 2))
        n = normalise_mouth(moved)
        np.testing.assert_allclose(n.mouth, ref, atol=1e-4)
        np.testing.assert_allclose(n.angle - base.angle, angle, atol=1e-4)
    # a different mouth shape gives a different feature: the invariance is not trivial
    other = face.copy()
    other[:, 57] += [0.0, 0.2]  # open the lower lip
    assert np.abs(normalise_mouth(other).mouth - normalise_mouth(face).mouth).max() > 0.1


def test_denormalise_is_the_exact_inverse_on_random_similarities() -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        face = _similarity(
            _face(rng, 7), rng.uniform(-np.pi, np.pi), rng.uniform(10, 500), rng.uniform(-1e3, 1e3, 2)
        )
        n = normalise_mouth(face)
        back = denormalise_mouth(n.mouth, n.center, n.angle, n.scale)
        assert back.shape == (7, 20, 2)
        np.testing.assert_allclose(back, face[:, MOUTH_SLICE], atol=1e-3 * np.abs(face).max())
    # a single frame with scalar angle and scale
    one = denormalise_mouth(n.mouth[0], n.center[0], float(n.angle[0]), float(n.scale[0]))
    np.testing.assert_allclose(one, face[0, MOUTH_SLICE], atol=1e-3 * np.abs(face).max())


def test_normalise_rejects_wrong_shapes() -> None:
    with pytest.raises(MouthError):
        normalise_mouth(np.zeros((68, 2)))
    with pytest.raises(MouthError):
        denormalise_mouth(np.zeros((3, 39)), np.zeros((3, 2)), np.zeros(3), np.ones(3))


def test_pca_explained_variance_and_reconstruction_on_the_span(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    basis = np.linalg.qr(rng.normal(size=(40, 6)))[0].T  # 6 orthonormal directions
    x = (rng.normal(size=(500, 6)) * [5, 4, 3, 2, 1, 0.5]) @ basis + rng.normal(size=40)
    pca = MouthPca.fit(x, 10)
    ratio = pca.explained_variance_ratio
    assert pca.components.shape == (10, 40) and pca.mean.shape == (40,)
    assert ratio.sum() <= 1 + 1e-6 and (np.diff(ratio) <= 1e-7).all()
    assert ratio[:6].sum() == pytest.approx(1.0, abs=1e-5)  # the data has rank 6
    np.testing.assert_allclose(pca.components @ pca.components.T, np.eye(10), atol=1e-5)
    np.testing.assert_allclose(pca.inverse_transform(pca.transform(x)), x, atol=1e-3)
    small = MouthPca.fit(x, 3)
    assert small.explained_variance_ratio.sum() < 0.95  # 3 of 6 directions lose variance
    pca.save(tmp_path / "pca.npz")
    loaded = MouthPca.load(tmp_path / "pca.npz")
    np.testing.assert_array_equal(loaded.components, pca.components)
    np.testing.assert_allclose(loaded.transform(x[:5]), pca.transform(x[:5]))
    with pytest.raises(MouthError):
        MouthPca.fit(x[:1], 10)
