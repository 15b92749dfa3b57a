"""AvatarEngine: features -> maps -> backend -> composited frames, and idle frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tiny_bundle import make_tiny_bundle

from anchor.avatar.bundle import AvatarBundle, load_avatar
from anchor.config import AnchorConfig
from anchor.errors import AvatarError
from anchor.render.engine import AvatarEngine


class EchoBackend:
    """Returns the facial map as the face (what the tiny bundle's identity renderer does)."""

    name = "echo"

    def __init__(self, resolution: int) -> None:
        self.resolution = resolution
        self.batches: list[int] = []

    def warmup(self) -> None:
        pass

    def infer(self, maps: np.ndarray) -> np.ndarray:
        self.batches.append(len(maps))
        return maps.copy()

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> AvatarBundle:
    return load_avatar(make_tiny_bundle(tmp_path_factory.mktemp("engine") / "tiny"))


def test_render_frames_shapes_and_batching(bundle: AvatarBundle) -> None:
    backend = EchoBackend(bundle.face_resolution)
    cfg = AnchorConfig()
    engine = AvatarEngine(bundle, cfg, backend)
    feats = np.zeros((6, 10), np.float32)
    maps = engine.maps(feats, range(6))
    assert maps.shape == (6, 32, 32, 3) and maps.dtype == np.uint8
    frames = engine.render_frames(feats, [0, 1, 2, 3, 4, 5])
    assert len(frames) == 6
    assert all(f.shape == (80, 96, 3) and f.dtype == np.uint8 for f in frames)
    assert max(backend.batches) <= cfg.backend.max_batch


def test_mouth_features_change_the_face(bundle: AvatarBundle) -> None:
    engine = AvatarEngine(bundle, AnchorConfig(), EchoBackend(bundle.face_resolution))
    closed = engine.render_frames(np.zeros((1, 10), np.float32), [0])[0]
    opened = engine.render_frames(np.full((1, 10), 0.05, np.float32), [0])[0]
    assert np.abs(closed.astype(int) - opened.astype(int)).sum() > 0


def test_idle_frame_is_the_body_frame(bundle: AvatarBundle) -> None:
    engine = AvatarEngine(bundle, AnchorConfig(), EchoBackend(bundle.face_resolution))
    np.testing.assert_array_equal(engine.idle_frame(2), bundle.body.frames[2])
    assert engine.idle_frame_at(7).shape == (80, 96, 3)


def test_backend_resolution_must_match(bundle: AvatarBundle) -> None:
    with pytest.raises(AvatarError, match="works at 64 px"):
        AvatarEngine(bundle, AnchorConfig(), EchoBackend(64))


def test_bad_feature_shape(bundle: AvatarBundle) -> None:
    engine = AvatarEngine(bundle, AnchorConfig(), EchoBackend(bundle.face_resolution))
    with pytest.raises(AvatarError, match=r"must be \(B, 10\)"):
        engine.maps(np.zeros((2, 7), np.float32), [0, 1])


def test_create_engine_uses_the_bundle_renderer(bundle: AvatarBundle, tmp_path: Path) -> None:
    pytest.importorskip("anchor.render.backends")
    from anchor.render.engine import create_engine

    engine = create_engine(bundle, AnchorConfig())
    frames = engine.render_frames(np.zeros((2, 10), np.float32), [0, 1])
    assert len(frames) == 2 and frames[0].shape == (80, 96, 3)
    engine.close()


def test_shipped_default_avatar_opens_its_mouth() -> None:
    from anchor.avatar.bundle import MANIFEST, default_avatar_path
    from anchor.render.engine import create_engine

    path = default_avatar_path()
    if not (path / MANIFEST).is_file():
        pytest.skip(f"no default avatar built at {path} yet")
    bundle = load_avatar(path)
    engine = create_engine(bundle, bundle.config)
    rest = np.zeros((1, bundle.pca.dims), np.float32)
    wide = rest.copy()
    # the first component's direction that moves the lower inner lip (66) away from the upper (62)
    c = bundle.pca.components[0]
    wide[0, 0] = 0.6 * np.sign(c[2 * 18 + 1] - c[2 * 14 + 1])
    closed, opened = engine.render_frames(np.concatenate([rest, wide]), [0, 0])
    engine.close()
    t = bundle.templates[0]
    x0, y0, x1, y1 = bundle.body.face_boxes[0]
    k = (x1 - x0) / t.size
    mouth = t.crop_landmarks[48:68] * k + (x0, y0)
    mx0, my0 = mouth.min(axis=0).astype(int)
    mx1, my1 = mouth.max(axis=0).astype(int) + 1
    diff = np.abs(closed[my0:my1, mx0:mx1].astype(int) - opened[my0:my1, mx0:mx1].astype(int))
    assert diff.mean() > 5  # the mouth region changes visibly with the features
    outside = np.abs(closed[:40].astype(int) - opened[:40].astype(int))
    assert outside.max() == 0  # far from the face nothing changes
