"""`anchor build-avatar --photo`: any frontal portrait becomes an avatar; bad photos fail first."""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import pytest

from anchor.config import AnchorConfig, load_config
from anchor.errors import AvatarError


def astronaut() -> np.ndarray:
    import skimage.data

    return np.ascontiguousarray(skimage.data.astronaut())


def write_rgb(path: Path, rgb: np.ndarray) -> Path:
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def test_a_photo_without_a_face_or_with_two_is_refused(tmp_path: Path) -> None:
    from anchor.build.synth import detect_portrait_landmarks, load_photo

    cfg = AnchorConfig()
    noise = np.random.default_rng(0).integers(0, 255, (300, 300, 3), dtype=np.uint8)
    with pytest.raises(AvatarError, match="no face found in .*noise.png"):
        detect_portrait_landmarks(load_photo(write_rgb(tmp_path / "noise.png", noise)), cfg,
                                  str(tmp_path / "noise.png"))
    face = astronaut()
    two = write_rgb(tmp_path / "two.jpg", np.concatenate([face, face[:, ::-1]], axis=1))
    with pytest.raises(AvatarError, match="shows 2 faces; crop it"):
        detect_portrait_landmarks(load_photo(two), cfg, str(two))
    lm = detect_portrait_landmarks(face, cfg)
    assert lm.shape == (68, 2) and 150 < lm[:, 0].mean() < 300  # Eileen Collins' face
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    with pytest.raises(AvatarError, match="not an image"):
        load_photo(tmp_path / "junk.jpg")
    with pytest.raises(AvatarError, match="too small"):
        load_photo(write_rgb(tmp_path / "tiny.png", face[::8, ::8]))
    with pytest.raises(AvatarError, match="no such photo"):
        load_photo(tmp_path / "missing.jpg")


def test_cli_checks_the_photo_before_any_work(tmp_path: Path) -> None:
    from anchor.commands import build_avatar

    parser = argparse.ArgumentParser()
    build_avatar.add_arguments(parser)
    (tmp_path / "junk.jpg").write_bytes(b"\x00" * 100)
    out = tmp_path / "me"
    args = parser.parse_args(["--photo", str(tmp_path / "junk.jpg"), "-o", str(out),
                              "--mouth", str(tmp_path / "mouth.pt")])
    with pytest.raises(AvatarError, match="not an image"):
        build_avatar.run(args, AnchorConfig())
    assert not out.exists() and not (tmp_path / "me.work").exists()


@pytest.mark.slow
def test_photo_avatar_end_to_end_from_a_portrait_the_repo_does_not_ship(
    shared_media: Path, tmp_path: Path
) -> None:
    """A frame cut from a shared presenter clip at test time is the portrait; the mouth model
    is a tiny one with the mouth-shape statistics a generic model ships with."""
    pytest.importorskip("torch")
    from synthetic_mouth_data import with_lips, write_synthetic_dataset

    from anchor.avatar.bundle import load_avatar
    from anchor.build.default_avatar import build_default_avatar
    from anchor.face.video import read_frames
    from anchor.render.backends import create_backend
    from anchor.render.engine import AvatarEngine
    from anchor.train.dataset import load_dataset
    from anchor.train.mouth import train_mouth

    clip = shared_media / "presenters" / "dfrf_cnn_anchor.mp4"
    if not clip.is_file():
        pytest.skip(f"{clip} not in the shared media")
    frame = next(iter(read_frames(clip, 25)))
    photo = write_rgb(tmp_path / "presenter.jpg", frame)

    cfg = load_config(None, ["mouth_model.channels=16", "mouth_model.fc_hidden=16",
                             "mouth_train.epochs=1", "mouth_train.threads=1",
                             "renderer_train.max_frames=24"])
    ds = with_lips(write_synthetic_dataset(tmp_path / "ds", clips=2))
    ckpt = train_mouth(ds, tmp_path / "runs", cfg, progress=False).checkpoint
    feats = np.concatenate([c.mouth_pca for c in load_dataset(ds).clips]).astype(np.float64)
    np.savez(ckpt.with_suffix(".shapes.npz"), mean=feats.mean(0), cov=np.cov(feats, rowvar=False))

    out = tmp_path / "presenter_avatar"
    facts = build_default_avatar(cfg, mouth_checkpoint=ckpt, out=out, work=tmp_path / "work",
                                 frames=24, idle_frames=10, epochs=1, progress=False,
                                 photo=photo, name="presenter")
    bundle = load_avatar(out)
    assert bundle.name == "presenter" and "presenter.jpg" in bundle.manifest["description"]
    assert bundle.n_templates == 10 and Path(facts["eval"]["strip"]).is_file()
    np.testing.assert_allclose(bundle.pca.components, load_dataset(ds).pca_components, atol=1e-6)
    # The face box is on the photo's own face.
    from anchor.build.synth import detect_portrait_landmarks

    cx, cy = detect_portrait_landmarks(frame, cfg).mean(axis=0)
    x0, y0, x1, y1 = bundle.body.face_boxes[0]
    assert x0 < cx < x1 and y0 < cy < y1 and y1 - y0 > 40
    engine = AvatarEngine(bundle, cfg, create_backend(cfg.backend, bundle.renderer_onnx))
    try:
        shut, wide = engine.render_frames(np.stack([np.zeros(10), feats[np.argmax(feats[:, 0])]])
                                          .astype(np.float32), [0, 0])
    finally:
        engine.close()
    assert shut.shape == wide.shape == (bundle.body.height, bundle.body.width, 3)
    assert np.abs(shut.astype(int) - wide.astype(int)).mean() > 0.01  # the mouth moves
