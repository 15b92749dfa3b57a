"""`anchor prepare`: a real clip -> a dataset load_dataset reads; bad inputs -> one-line errors
and nothing left behind."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from anchor.config import AnchorConfig
from anchor.errors import AnchorError, AudioError, DatasetError, FaceError
from anchor.mouth.features import MouthPca, denormalise_mouth
from anchor.train.dataset import Dataset, load_dataset
from anchor.train.prepare import interpolate_gaps, prepare_dataset, smooth_boxes


def _noise_video_with_tone(path: Path, frames: int = 12, fps: int = 25) -> None:
    """A small faceless clip: coloured noise frames plus a 440 Hz tone track."""
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = 96, 96, "yuv420p"
        ast = out.add_stream("aac", rate=16000)
        for i in range(frames):
            img = rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for p in vs.encode(frame):
                out.mux(p)
        for p in vs.encode(None):
            out.mux(p)
        n = 16000 * frames // fps
        tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(n) / 16000)).astype(np.float32)
        af = av.AudioFrame.from_ndarray(tone[None], format="fltp", layout="mono")
        af.sample_rate, af.pts = 16000, 0
        for p in ast.encode(af):
            out.mux(p)
        for p in ast.encode(None):
            out.mux(p)


def _only_expected_entries(folder: Path, expected: set[str]) -> None:
    """No temp/partial directories left beside the output."""
    assert {p.name for p in folder.iterdir()} == expected


@pytest.fixture(scope="module")
def prepared(shared_media: Path, tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """One real 5 s clip plus an undecodable file, with skip_bad, replacing (force) an older
    dataset at the same path."""
    root = tmp_path_factory.mktemp("prep")
    junk = root / "junk.mp4"
    junk.write_bytes(b"\x00garbage" * 500)
    old = root / "ds"
    old.mkdir()
    (old / "manifest.json").write_text("{}")
    (old / "stale.txt").write_text("from the previous dataset")
    clip = shared_media / "clips" / "retalking_face3.mp4"
    return prepare_dataset(
        [junk, clip], root / "ds", AnchorConfig(), skip_bad=True, force=True, progress=False
    )


def test_prepared_clip_has_consistent_arrays(prepared: Dataset) -> None:
    cfg = AnchorConfig()
    s = cfg.face.crop_size
    (clip,) = prepared.clips
    t = clip.frames
    assert t == 125  # 5.0 s at 25 fps
    assert clip.mfcc.shape == (4 * t, 13) and clip.info["mfcc_frames"] == 4 * t
    assert clip.landmarks.shape == (t, 68, 2) and clip.crop_landmarks.shape == (t, 68, 2)
    assert clip.boxes.shape == (t, 4) and clip.mouth.shape == (t, 40)
    assert clip.mouth_pca.shape == (t, 10) and clip.mouth_mean.shape == (40,)
    assert clip.norm_center.shape == (t, 2) and clip.norm_angle.shape == (t,)
    assert np.isfinite(clip.mfcc).all() and np.isfinite(clip.landmarks).all()
    # boxes are square and inside-ish the 590x590 source; landmarks are inside the crops
    side = clip.boxes[:, 2] - clip.boxes[:, 0]
    np.testing.assert_allclose(side, clip.boxes[:, 3] - clip.boxes[:, 1], rtol=1e-5)
    assert (clip.crop_landmarks > 0).all() and (clip.crop_landmarks < s).all()
    audio = clip.audio()
    assert audio.dtype == np.float32 and abs(len(audio) / 16000 - 5.0) < 0.05
    edges = clip.edges()
    assert edges.shape == (t, s, s) and set(np.unique(edges)) <= {0, 255} and edges.any()
    crops = clip.crops()
    assert crops.shape == (t, s, s, 3)
    # the stored similarity maps the stored PCA features back onto the full-frame mouth
    pca = MouthPca(prepared.pca_mean, prepared.pca_components, prepared.pca_explained_variance_ratio)
    mouth = pca.inverse_transform(clip.mouth_pca) + clip.mouth_mean
    pts = denormalise_mouth(mouth, clip.norm_center, clip.norm_angle, clip.norm_scale)
    assert np.abs(pts - clip.landmarks[:, 48:68]).mean() < 1.0  # pixels, 10-D PCA


def test_manifest_pca_and_skipped_file(prepared: Dataset) -> None:
    m = json.loads((prepared.path / "manifest.json").read_text())
    assert m["format"] == "anchor-dataset" and m["clips"][0]["name"] == "retalking_face3"
    assert set(m["config"]) >= {"audio", "video", "face"}
    ratio = np.asarray(m["pca"]["explained_variance_ratio"])
    assert len(ratio) == 10 and 0.9 < ratio.sum() <= 1.0 + 1e-6
    np.testing.assert_allclose(prepared.pca_explained_variance_ratio, ratio, rtol=1e-5)
    # PCA is fitted on the training part only: held-out frames are not centred by construction
    clip = prepared.clips[0]
    train, val = clip.split(0.15)
    assert m["pca"]["train_frames"] == len(train)
    np.testing.assert_allclose(clip.mouth[train.start : train.stop].mean(0), clip.mouth_mean,
                               atol=1e-5)
    assert len(m["skipped"]) == 1 and m["skipped"][0].endswith("junk.mp4")
    _only_expected_entries(prepared.path.parent, {"ds", "junk.mp4"})


def _assert_fails(videos: list[Path], out: Path, error: type[AnchorError], match: str) -> None:
    with pytest.raises(error, match=match) as err:
        prepare_dataset(videos, out, AnchorConfig(), progress=False)
    message = str(err.value)
    assert "\n" not in message and str(videos[0]) in message
    assert not out.exists()
    _only_expected_entries(out.parent, {p.name for p in videos if p.parent == out.parent})


def test_video_without_audio_fails_fast(shared_media: Path, tmp_path: Path) -> None:
    video = shared_media / "templates" / "musetalk_sun.mp4"
    _assert_fails([video], tmp_path / "ds", AudioError, "no audio track")


def test_garbage_file_fails(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00garbage" * 500)
    _assert_fails([junk], tmp_path / "ds", FaceError, "cannot decode")


def test_video_without_a_face_fails(tmp_path: Path) -> None:
    video = tmp_path / "noise.mp4"
    _noise_video_with_tone(video)
    _assert_fails([video], tmp_path / "ds", FaceError, r"no detectable face in \d+ of \d+ frames")


def test_skip_bad_with_nothing_usable_fails(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"nope")
    with pytest.raises(DatasetError, match="none of the 1 videos"):
        prepare_dataset([junk], tmp_path / "ds", AnchorConfig(), skip_bad=True, progress=False)
    assert not (tmp_path / "ds").exists()


def test_existing_outputs_are_not_clobbered(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"nope")
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(DatasetError, match="not a dataset"):
        prepare_dataset([junk], other, AnchorConfig(), force=True, progress=False)
    existing = tmp_path / "ds"
    existing.mkdir()
    (existing / "manifest.json").write_text("{}")
    with pytest.raises(DatasetError, match="--force"):
        prepare_dataset([junk], existing, AnchorConfig(), progress=False)
    # with --force a failing run still leaves the old dataset in place
    with pytest.raises(FaceError):
        prepare_dataset([junk], existing, AnchorConfig(), force=True, progress=False)
    assert (existing / "manifest.json").read_text() == "{}"
    assert (other / "notes.txt").read_text() == "keep me"
    _only_expected_entries(tmp_path, {"junk.mp4", "mine", "ds"})


def test_force_replaced_the_older_dataset(prepared: Dataset) -> None:
    assert not (prepared.path / "stale.txt").exists()
    assert load_dataset(prepared.path).clips[0].frames == 125


def test_interpolate_gaps_is_linear_inside_and_constant_at_the_ends() -> None:
    a, b = np.zeros((68, 2), np.float32), np.full((68, 2), 4.0, np.float32)
    out = interpolate_gaps([None, a, None, None, None, b, None])
    np.testing.assert_allclose(out[:, 0, 0], [0, 0, 1, 2, 3, 4, 4])


def test_smooth_boxes_are_square_sized_by_the_landmarks_and_damp_jitter() -> None:
    rng = np.random.default_rng(0)
    base = rng.uniform(100, 200, (68, 2))  # extent ~100 px
    still = np.repeat(base[None], 20, axis=0)
    boxes = smooth_boxes(still, 2.0, 0.8)
    extent = (base.max(0) - base.min(0)).max()
    np.testing.assert_allclose(boxes[:, 2] - boxes[:, 0], 2.0 * extent, rtol=1e-5)
    np.testing.assert_allclose(boxes[:, 3] - boxes[:, 1], 2.0 * extent, rtol=1e-5)
    jitter = still + rng.normal(0, 3, (20, 1, 2))
    raw = smooth_boxes(jitter, 2.0, 0.0)
    smooth = smooth_boxes(jitter, 2.0, 0.8)
    assert np.abs(np.diff(smooth[:, 0])).mean() < 0.5 * np.abs(np.diff(raw[:, 0])).mean()


def test_command_adapter_parses_flags_and_raises_the_one_line_error(tmp_path: Path) -> None:
    import argparse

    from anchor.commands import prepare as command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"nope")
    args = parser.parse_args([str(junk), "-o", str(tmp_path / "ds"), "--force"])
    assert args.force and not args.skip_bad and args.videos == [str(junk)]
    with pytest.raises(FaceError, match="junk.mp4: cannot decode"):
        command.run(args, AnchorConfig())
    assert not (tmp_path / "ds").exists()
