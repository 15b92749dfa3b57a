"""build-avatar pieces: resumable steps, template choice, blend mask, portrait synthesis."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest

from anchor.build.avatar import Step, StepRunner, lower_face_mask, quietest_stretch
from anchor.build.synth import (
    FaceMesh,
    IdleField,
    blink_landmarks,
    idle_poses,
    mouth_landmarks,
    synthesise_portrait_dataset,
    synthetic_landmarks,
)
from anchor.config import AnchorConfig
from anchor.errors import AvatarError
from anchor.mouth.features import MouthPca, normalise_mouth
from anchor.train.dataset import ClipData, load_dataset

# -- resumable steps ------------------------------------------------------------------------------


def _steps(log: list[str], fail: str | None = None) -> list[Step]:
    def make(name: str) -> Step:
        def run() -> dict[str, object]:
            if name == fail:
                raise AvatarError(f"{name} broke")
            log.append(name)
            return {"value": name}

        return Step(name, run)

    return [make(n) for n in ("prepare", "mouth", "renderer", "bundle")]


def test_steps_run_once_and_resume_skips_finished(tmp_path: Path) -> None:
    log: list[str] = []
    StepRunner(tmp_path, resume=False, progress=False).run(_steps(log))
    assert log == ["prepare", "mouth", "renderer", "bundle"]
    runner = StepRunner(tmp_path, resume=True, progress=False)
    facts = runner.run(_steps(log))
    assert log == ["prepare", "mouth", "renderer", "bundle"]  # nothing ran again
    assert runner.skipped == ["prepare", "mouth", "renderer", "bundle"]
    assert facts["mouth"]["value"] == "mouth"


def test_failed_step_is_rerun_on_resume(tmp_path: Path) -> None:
    log: list[str] = []
    with pytest.raises(AvatarError, match="renderer broke"):
        StepRunner(tmp_path, resume=False, progress=False).run(_steps(log, fail="renderer"))
    assert log == ["prepare", "mouth"]
    runner = StepRunner(tmp_path, resume=True, progress=False)
    runner.run(_steps(log))
    assert runner.ran == ["renderer", "bundle"] and runner.skipped == ["prepare", "mouth"]


def test_previous_build_needs_resume(tmp_path: Path) -> None:
    log: list[str] = []
    StepRunner(tmp_path, resume=False, progress=False).run(_steps(log, fail=None)[:2])
    with pytest.raises(AvatarError, match=r"finished steps: prepare, mouth.*--resume"):
        StepRunner(tmp_path, resume=False, progress=False).run(_steps(log))


# -- template choice ------------------------------------------------------------------------------


def _clip(tmp_path: Path, frames: int, quiet: range) -> ClipData:
    rng = np.random.default_rng(0)
    t = np.arange(frames * 640) / 16000
    # a voiced, modulated signal everywhere except the quiet stretch
    audio = (0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 4 * t))).astype(np.float32)
    audio += 0.001 * rng.standard_normal(audio.size).astype(np.float32)
    audio[quiet.start * 640 : quiet.stop * 640] = 0.0005 * rng.standard_normal(len(quiet) * 640)
    np.save(tmp_path / "audio.npy", audio)
    mouth_pca = rng.standard_normal((frames, 10)).astype(np.float32) * 0.2
    mouth_pca[quiet.start : quiet.stop] *= 0.1
    z = np.zeros
    return ClipData(
        name="c", path=tmp_path, frames=frames, mfcc=z((4 * frames, 13)), landmarks=z((frames, 68, 2)),
        boxes=z((frames, 4)), crop_landmarks=z((frames, 68, 2)), mouth=z((frames, 40)),
        mouth_mean=z(40), mouth_pca=mouth_pca, norm_center=z((frames, 2)), norm_angle=z(frames),
        norm_scale=np.ones(frames),
    )


def test_quietest_stretch_finds_the_silence(tmp_path: Path) -> None:
    clip = _clip(tmp_path, 400, range(250, 340))
    stretch = quietest_stretch(clip, AnchorConfig(), seconds=3.0)
    assert len(stretch) == 75
    assert stretch.start >= 250 and stretch.stop <= 340


def test_quietest_stretch_needs_two_seconds(tmp_path: Path) -> None:
    clip = _clip(tmp_path, 40, range(0, 10))
    with pytest.raises(AvatarError, match="shorter than the 2 s"):
        quietest_stretch(clip, AnchorConfig())


# -- blend mask ------------------------------------------------------------------------------------


def _template(size: int = 256):  # type: ignore[no-untyped-def]
    from anchor.face.facial_map import TemplateFrame

    lm = synthetic_landmarks(size)
    n = normalise_mouth(lm[None])
    return TemplateFrame(
        edges=np.zeros((size, size), np.uint8), crop_landmarks=lm,
        mouth_center=n.center[0].astype(float), mouth_angle=float(n.angle[0]),
        mouth_scale=float(n.scale[0]), mouth_mean=n.mouth[0].astype(float),
    )


def test_lower_face_mask_covers_mouth_and_chin_not_eyes() -> None:
    t = _template(256)
    mask = lower_face_mask([t], 128, margin_px=0)
    k = 128 / 256
    mouth = (t.crop_landmarks[62] * k).astype(int)
    chin = (t.crop_landmarks[8] * k - (0, 2)).astype(int)
    eye = (t.crop_landmarks[37] * k).astype(int)
    assert mask.shape == (128, 128) and mask.dtype == np.float32
    assert mask[mouth[1], mouth[0]] == pytest.approx(1.0)
    assert mask[chin[1], chin[0]] > 0.9
    assert mask[eye[1], eye[0]] == 0.0
    grown = lower_face_mask([t], 128, margin_px=6)
    assert grown.sum() > mask.sum()


# -- portrait synthesis ----------------------------------------------------------------------------


def _face_image(size: int = 160) -> tuple[np.ndarray, np.ndarray]:
    img = np.full((size, size, 3), 200, np.uint8)
    lm = synthetic_landmarks(size * 0.6) + size * 0.2
    cv2.fillConvexPoly(img, cv2.convexHull(lm.astype(np.int32)), (210, 160, 130))
    cv2.fillPoly(img, [lm[48:60].astype(np.int32)], (170, 60, 70))
    return img, lm


def test_mouth_landmarks_open_and_jaw_follows() -> None:
    _, lm = _face_image()
    mouth = normalise_mouth(lm[None]).mouth[0].reshape(20, 2).copy()
    opened = mouth.copy()
    opened[15:20, 1] += 0.25  # lower inner lip ...
    opened[7:12, 1] += 0.25  # ... and lower outer lip down
    out = mouth_landmarks(lm, opened.reshape(40))
    assert out[66, 1] - out[62, 1] > lm[66, 1] - lm[62, 1] + 3
    assert out[8, 1] > lm[8, 1] + 3  # the chin drops
    np.testing.assert_allclose(out[17:48], lm[17:48])  # brows, nose, eyes untouched


def test_mouth_landmarks_never_cross_lips() -> None:
    _, lm = _face_image()
    mouth = normalise_mouth(lm[None]).mouth[0].reshape(20, 2).copy()
    mouth[13:16, 1] += 0.5  # upper inner lip pushed far below the lower one
    out = mouth_landmarks(lm, mouth.reshape(40))
    for up, low in ((61, 67), (62, 66), (63, 65)):
        assert out[low, 1] > out[up, 1]


def test_mesh_warp_is_identity_without_motion_and_moves_the_mouth() -> None:
    img, lm = _face_image()
    mesh = FaceMesh(img, lm)
    np.testing.assert_array_equal(mesh.warp(lm), img)
    moved = lm.copy()
    moved[48:68, 1] += 3
    out = mesh.warp(mesh.safe_landmarks(moved))
    assert np.abs(out.astype(int) - img.astype(int)).sum() > 0
    assert np.array_equal(out[:20], img[:20])  # far from the face nothing moves


def test_blink_closes_the_eyes() -> None:
    _, lm = _face_image()
    closed = blink_landmarks(lm, 1.0)
    assert abs(closed[41, 1] - closed[37, 1]) < 0.2 * abs(lm[41, 1] - lm[37, 1]) + 1e-9


def test_idle_poses_loop_smoothly() -> None:
    poses = idle_poses(75)
    angle = np.array([p.angle_deg for p in poses])
    dx = np.array([p.dx for p in poses])
    for x in (angle, dx):
        step = np.abs(np.diff(x))
        # zero velocity at both ends: the first/last steps are much smaller than the largest
        assert step[0] < 0.1 * step.max() and step[-1] < 0.1 * step.max()
    assert max(p.blink for p in poses) == 1.0


def test_idle_field_moves_points_like_the_image() -> None:
    img, lm = _face_image()
    field = IdleField(lm, img.shape[:2])
    pose = idle_poses(11)[0]
    moved = field.move_points(lm, pose)
    assert 0 < np.abs(moved - lm).max() < 5
    corner = field.move_points(np.array([[1.0, 1.0]]), pose)
    np.testing.assert_allclose(corner, [[1.0, 1.0]], atol=1e-6)  # the background stays


def test_synthesised_dataset_loads(tmp_path: Path) -> None:
    img, lm = _face_image()
    base = AnchorConfig()
    cfg = dataclasses.replace(base, face=dataclasses.replace(base.face, crop_size=64))
    rng = np.random.default_rng(0)
    comps = np.linalg.qr(rng.standard_normal((40, 10)))[0].T.astype(np.float32)
    pca = MouthPca(np.zeros(40, np.float32), comps, np.full(10, 0.1, np.float32))
    feats = (rng.standard_normal((6, 10)) * 0.05).astype(np.float32)
    ds, body = synthesise_portrait_dataset(
        tmp_path / "ds", cfg, pca, feats, image=img, landmarks=lm, idle_frames=12, progress=False
    )
    assert body.shape == (12, 160, 160, 3)
    again = load_dataset(tmp_path / "ds")
    assert [c.name for c in again.clips] == ["idle", "talk"]
    talk = ds.clip("talk")
    np.testing.assert_allclose(talk.mouth_pca, feats)
    assert talk.crops().shape == (6, 64, 64, 3)
    assert talk.edges().shape == (6, 64, 64)
    np.testing.assert_allclose(ds.clip("idle").mouth_pca, 0.0)


# -- the whole build (slow: prepare + two trainings, with tiny settings) ---------------------------


@pytest.mark.slow
def test_build_avatar_end_to_end_and_resume(shared_media: Path, tmp_path: Path) -> None:
    from anchor.avatar.bundle import load_avatar
    from anchor.build.avatar import build_avatar
    from anchor.config import load_config

    video = shared_media / "clips" / "sadtalker_WDA_KatieHill_000.mp4"
    if not video.is_file():
        pytest.skip(f"{video} not in the shared media")
    cfg = load_config(None, [
        "mouth_train.epochs=1", "renderer_train.epochs=1", "renderer_train.max_frames=12",
        "renderer.resolution=64", "renderer.n_downsample=2", "renderer.num_d=1",
        "renderer.mouth_discriminator=false",
    ])
    out, work = tmp_path / "bundle", tmp_path / "work"
    spec = tmp_path / "gestures.toml"
    spec.write_text('[[gesture]]\nname = "nod"\nkeywords = ["yes", "breaking news"]\n'
                    'start_s = 0.5\nend_s = 1.5\nprobability = 0.8\n')
    # A "generic" base model to fine-tune (what --base-mouth generic gives a user): the same
    # network, trained on a synthetic dataset with its own mouth basis.
    from synthetic_mouth_data import with_lips, write_synthetic_dataset

    from anchor.mouth.models import load_checkpoint
    from anchor.train.dataset import load_dataset
    from anchor.train.mouth import train_mouth

    synthetic = with_lips(write_synthetic_dataset(tmp_path / "generic_ds", clips=2))
    base = train_mouth(synthetic, tmp_path / "generic", cfg, progress=False).checkpoint
    build_avatar(video, out, cfg, work=work, progress=False, gestures=spec, base_mouth=base)
    bundle = load_avatar(out)
    # Fine-tuned, not trained from scratch: the recording is prepared in the base's basis and
    # the bundle names the model it started from.
    np.testing.assert_allclose(load_dataset(work / "dataset").pca_components,
                               load_dataset(synthetic).pca_components, atol=1e-6)
    tuned = load_checkpoint(work / "runs" / "mouth" / cfg.mouth_model.kind / "checkpoint.pt")
    assert tuned["base"]["path"] == str(base)
    assert bundle.manifest["mouth_base"]["name"] == "checkpoint.pt"
    assert bundle.manifest["mouth_base"]["sha256"] == tuned["base"]["sha256"]
    assert bundle.face_resolution == 64 and bundle.jaw is not None
    assert bundle.gestures is not None
    (nod,) = bundle.gestures.gestures
    assert nod.keywords == ("yes", "breaking news") and nod.probability == 0.8
    assert nod.motion.shape == (25, 3) and np.all(nod.motion[0] == 0)  # 1 s of the recording
    assert "sadtalker_WDA_KatieHill_000.mp4 0.5-1.5 s" in nod.source
    assert len(bundle.templates) == 75  # the quietest 3 s
    markers = {p.name: p.stat().st_mtime_ns for p in (work / "steps").iterdir()}
    assert set(markers) == {f"{s}.json" for s in
                            ("prepare", "mouth", "renderer", "jaw", "export", "templates", "bundle")}

    with pytest.raises(AvatarError, match="--resume"):
        build_avatar(video, out, cfg, work=work, progress=False)
    with pytest.raises(AvatarError, match="base mouth model does not exist"):
        build_avatar(video, tmp_path / "o3", cfg, work=tmp_path / "w3", base_mouth=tmp_path / "x.pt")
    bad = tmp_path / "bad.toml"
    bad.write_text('[[gesture]]\nname = "nod"\nkeywords = ["yes"]\nstart_s = 2\nend_s = 1\n')
    with pytest.raises(AvatarError, match="--gestures: .*start_s < end_s"):  # before any work
        build_avatar(video, tmp_path / "other", cfg, work=tmp_path / "w2", gestures=bad)
    assert not (tmp_path / "w2").exists()
    build_avatar(video, out, cfg, work=work, resume=True, progress=False, base_mouth=base)
    assert {p.name: p.stat().st_mtime_ns for p in (work / "steps").iterdir()} == markers


def test_replace_mouth_swaps_model_and_basis_and_keeps_the_rest(tmp_path: Path) -> None:
    """How the default avatar gets a better mouth model without retraining its renderer."""
    pytest.importorskip("torch")
    from synthetic_mouth_data import with_lips, write_synthetic_dataset
    from tiny_bundle import make_tiny_bundle

    from anchor.avatar.bundle import load_avatar
    from anchor.build.avatar import replace_mouth
    from anchor.config import load_config
    from anchor.mouth.runtime import MouthOnnx
    from anchor.train.dataset import load_dataset
    from anchor.train.mouth import train_mouth

    old = load_avatar(make_tiny_bundle(tmp_path / "tiny", n_frames=3))
    ds = with_lips(write_synthetic_dataset(tmp_path / "ds", clips=2))
    cfg = load_config(None, ["mouth_model.channels=16", "mouth_model.fc_hidden=16",
                             "mouth_train.epochs=1", "mouth_train.threads=1"])
    ckpt = train_mouth(ds, tmp_path / "runs", cfg, progress=False).checkpoint
    new = load_avatar(replace_mouth(old.path, ckpt, tmp_path / "new"))
    np.testing.assert_allclose(new.pca.components, load_dataset(ds).pca_components, atol=1e-6)
    assert new.config.mouth_model.channels == 16 and MouthOnnx(new.mouth_onnx).config.mouth_model.channels == 16
    assert new.manifest["files"]["renderer"]["sha256"] == old.manifest["files"]["renderer"]["sha256"]
    assert new.manifest["files"]["templates"]["sha256"] == old.manifest["files"]["templates"]["sha256"]
    assert new.manifest["files"]["mouth"]["sha256"] != old.manifest["files"]["mouth"]["sha256"]
    assert new.config.renderer == old.config.renderer and new.n_templates == old.n_templates
    replace_mouth(tmp_path / "new", ckpt)  # in place: still a loadable bundle
    assert load_avatar(tmp_path / "new").name == old.name
