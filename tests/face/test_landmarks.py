"""dlib 68-point landmarks: placement on real faces, tracking, largest-face choice."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from anchor.config import FaceConfig
from anchor.face.landmarks import LandmarkDetector, predictor_path, shape_residual
from anchor.face.video import read_frames


@pytest.fixture(scope="module")
def detector() -> LandmarkDetector:
    return LandmarkDetector(FaceConfig())


def test_predictor_file_is_found_without_importing_the_package() -> None:
    path = predictor_path()
    assert path.name == "shape_predictor_68_face_landmarks.dat" and path.stat().st_size > 1e6


def _check_face_layout(lm: np.ndarray, width: int, height: int) -> None:
    assert lm.shape == (68, 2) and lm.dtype == np.float32
    assert (lm[:, 0] >= 0).all() and (lm[:, 0] < width).all()
    assert (lm[:, 1] >= 0).all() and (lm[:, 1] < height).all()
    eyes, nose, mouth = lm[36:48], lm[27:36], lm[48:68]
    assert mouth[:, 1].min() > eyes[:, 1].max()  # image y grows downwards
    assert eyes[:, 1].max() < nose[:, 1].mean() < mouth[:, 1].min()
    assert lm[36:42, 0].mean() < lm[42:48, 0].mean()  # 36..41 is the eye on the image's left


def test_landmarks_on_a_real_clip_frame(shared_media: Path, detector: LandmarkDetector) -> None:
    frame = next(iter(read_frames(shared_media / "clips" / "retalking_face3.mp4")))
    detector.reset()
    lm = detector.detect(frame)
    assert lm is not None
    _check_face_layout(lm, frame.shape[1], frame.shape[0])


def test_tracking_between_detections_stays_on_the_face(
    shared_media: Path, detector: LandmarkDetector
) -> None:
    """Tracked landmarks (detector every 25 frames) agree with detecting on every frame."""
    every_frame = LandmarkDetector(FaceConfig(redetect_every=1))
    detector.reset()
    frames = islice(read_frames(shared_media / "clips" / "vexpress_vasa-1_10.mp4"), 40)
    for i, frame in enumerate(frames):
        tracked = detector.detect(frame)
        if i % 8 == 7:  # mid-interval frames, where only the tracking box is used
            reference = every_frame.detect(frame)
            assert tracked is not None and reference is not None
            assert np.abs(tracked - reference).mean() < 3.0
    assert detector.detections < 40


def test_largest_face_wins_and_noise_has_none(detector: LandmarkDetector) -> None:
    face = skimage.data.astronaut()  # public-domain portrait shipped with scikit-image
    canvas = np.zeros((512, 800, 3), np.uint8)
    canvas[:, 288:] = face
    canvas[128:384, 16:272] = cv2.resize(face, (256, 256))
    detector.reset()
    lm = detector.detect(canvas)
    assert lm is not None
    assert lm[:, 0].min() > 288  # on the big face, not the small copy
    _check_face_layout(lm, 800, 512)
    detector.reset()
    noise = np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    assert detector.detect(noise) is None


def test_big_frames_are_detected_on_a_downscaled_copy(detector: LandmarkDetector) -> None:
    face = cv2.resize(skimage.data.astronaut(), (1400, 1400))
    detector.reset()
    lm = detector.detect(face)
    assert lm is not None
    small = LandmarkDetector(FaceConfig()).detect(skimage.data.astronaut())
    assert small is not None
    # same face, in full-resolution coordinates
    assert np.abs(lm / (1400 / 512) - small).mean() < 3.0


def test_shape_residual_ignores_similarity_transforms() -> None:
    rng = np.random.default_rng(1)
    pts = rng.uniform(0, 100, (68, 2))
    a = 0.7
    moved = 1.8 * pts @ np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]]) + [40, -7]
    assert shape_residual(pts, moved) < 1e-9
    assert shape_residual(pts, rng.uniform(0, 100, (68, 2))) > 0.3
