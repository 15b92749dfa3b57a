"""Renderer training on a tiny generated dataset: a step learns, resume continues exactly, the
grid PNG and jaw regression are written, evaluation and the CLI adapters work."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch
from synthetic_faces import synthetic_landmarks

from anchor.commands import eval_renderer, train_renderer
from anchor.config import AnchorConfig, RendererConfig, RendererTrainConfig
from anchor.errors import RenderError
from anchor.face.jaw import JawRegression
from anchor.mouth.features import MouthPca, normalise_mouth
from anchor.render.evaluate import evaluate_renderer
from anchor.render.networks import load_generator
from anchor.train.dataset import load_dataset
from anchor.train.renderer import (
    RendererTrainer,
    build_pairs,
    fit_jaw,
    resolve_config,
    to_tensor,
)
from anchor.train.renderer import train_renderer as run_training

S = 64  # crop size of the generated dataset
T = 12  # frames
BOX = np.array([16.0, 8.0, 16.0 + S, 8.0 + S])  # crop box inside a 96 x 96 "full frame"


def face(open_px: float) -> np.ndarray:
    return synthetic_landmarks(open_px, cx=32.0, cy=27.0, a=15.0)


def draw_face(lm: np.ndarray) -> np.ndarray:
    """A cartoon face crop (S, S, 3) RGB matching the landmarks."""
    img = np.full((S, S, 3), (40, 60, 90), np.uint8)
    jaw = lm[0:17]
    cv2.ellipse(img, (int(lm[27, 0]), int(lm[8, 1] - 17)), (17, 21), 0, 0, 360, (220, 180, 150), -1)
    cv2.fillPoly(img, [np.round(jaw).astype(np.int32)], (220, 180, 150))
    for first in (36, 42):
        cv2.fillPoly(img, [np.round(lm[first:first + 6]).astype(np.int32)], (30, 30, 30))
    cv2.fillPoly(img, [np.round(lm[48:60]).astype(np.int32)], (170, 40, 50))
    cv2.fillPoly(img, [np.round(lm[60:68]).astype(np.int32)], (60, 10, 20))
    return img


def write_dataset(root: Path) -> Path:
    """A one-clip dataset in anchor/train/dataset.py's format."""
    opens = 3.0 + 3.0 * np.sin(np.arange(T) * 0.9)
    crop_lm = np.stack([face(o) for o in opens]).astype(np.float32)
    k = S / float(BOX[2] - BOX[0])
    full = crop_lm / k + BOX[:2]
    norm = normalise_mouth(full)
    mouth_mean = norm.mouth.mean(axis=0)
    pca = MouthPca.fit(norm.mouth - mouth_mean, 3)
    crops = np.stack([draw_face(lm) for lm in crop_lm])
    edges = np.stack([cv2.Canny(cv2.cvtColor(c, cv2.COLOR_RGB2GRAY), 50, 150) for c in crops])
    cdir = root / "clips" / "toy"
    cdir.mkdir(parents=True)
    np.save(cdir / "audio.npy", np.zeros(T * 640, np.float32))
    np.savez(
        cdir / "features.npz", mfcc=np.zeros((4 * T, 13), np.float32), landmarks=full,
        boxes=np.tile(BOX, (T, 1)).astype(np.float32), crop_landmarks=crop_lm, mouth=norm.mouth,
        mouth_mean=mouth_mean, mouth_pca=pca.transform(norm.mouth - mouth_mean),
        norm_center=norm.center, norm_angle=norm.angle, norm_scale=norm.scale,
    )
    np.savez(cdir / "edges.npz", edges=edges)
    with av.open(str(cdir / "face.mp4"), "w") as out:
        stream = out.add_stream("libx264", rate=25, options={"crf": "0"})
        stream.width = stream.height = S
        stream.pix_fmt = "yuv444p"
        for c in crops:
            for packet in stream.encode(av.VideoFrame.from_ndarray(c, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    pca.save(root / "pca.npz")
    manifest = {
        "format": "anchor-dataset", "version": 1, "config": {},
        "clips": [{"name": "toy", "source": "generated", "frames": T, "fps": 25,
                   "sample_rate": 16000, "width": 96, "height": 96, "mfcc_frames": 4 * T}],
        "pca": {"dims": 3},
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    return write_dataset(tmp_path_factory.mktemp("ds"))


def tiny_config(epochs: int = 1) -> AnchorConfig:
    return AnchorConfig(
        renderer=RendererConfig(preset="tiny", resolution=32, ngf=4, n_downsample=2, n_blocks=1,
                                ndf=8, n_layers_d=2, num_d=2, mouth_discriminator=True),
        renderer_train=RendererTrainConfig(epochs=epochs, batch_size=4, val_fraction=0.25,
                                           threads=1),
    )


def test_pairs_come_from_each_frames_own_mouth(dataset: Path) -> None:
    ds, cfg = load_dataset(dataset), tiny_config()
    clip = ds.clips[0]
    train, val = build_pairs(ds.clips, cfg, MouthPca.load(dataset / "pca.npz"), fit_jaw(ds.clips, cfg))
    assert len(train) == 9 and len(val) == 3  # the last quarter is held out
    assert list(val.frames) == [9, 10, 11]
    assert train.maps.shape == (9, 32, 32, 3) and train.targets.dtype == np.uint8
    # the mouth centre of each pair is the frame's own mouth, in map pixels
    want = clip.crop_landmarks[:9, 48:68].mean(axis=1) * 32 / S
    np.testing.assert_allclose(train.mouth_centers, want, atol=0.2)
    # the target is the frame's crop: lips / mouth (deep red, unlike skin) at the mouth centre
    r, g, _ = train.targets[0, int(want[0, 1]), int(want[0, 0])].astype(int)
    assert g < 0.5 * r


def test_training_steps_reduce_l1_on_a_pair(dataset: Path) -> None:
    ds, cfg = load_dataset(dataset), tiny_config()
    torch.manual_seed(0)
    train, _ = build_pairs(ds.clips, cfg, MouthPca.load(dataset / "pca.npz"), None, val=False)
    trainer = RendererTrainer(cfg)
    maps, targets = to_tensor(train.maps[:1]), to_tensor(train.targets[:1])
    centers = torch.from_numpy(train.mouth_centers[:1])
    steps = [trainer.train_step(maps, targets, centers) for _ in range(16)]
    assert set(steps[0]) == {"g_gan", "g_feat", "l1", "d", "g_mouth"}
    l1 = [s["l1"] for s in steps]
    assert np.mean(l1[-3:]) < 0.85 * np.mean(l1[:3]), l1


def test_resume_continues_like_an_uninterrupted_run(dataset: Path, tmp_path: Path) -> None:
    straight = run_training(dataset, tmp_path / "straight", tiny_config(2), progress=False)
    first = run_training(dataset, tmp_path / "resumed", tiny_config(1), progress=False)
    ckpt1 = torch.load(first, weights_only=True)
    assert ckpt1["epoch"] == 1 and len(ckpt1["history"]) == 1
    second = run_training(dataset, tmp_path / "resumed", tiny_config(2), resume=True, progress=False)
    a, b = torch.load(straight, weights_only=True), torch.load(second, weights_only=True)
    assert b["epoch"] == 2 and len(b["history"]) == 2
    for key, value in a["generator"].items():
        torch.testing.assert_close(b["generator"][key], value)
    # the checkpoint carries the full config and loads as a generator
    assert b["config"]["renderer"]["resolution"] == 32 and "renderer_train" in b["config"]
    generator, rcfg = load_generator(second)
    assert rcfg == tiny_config().renderer
    assert generator(torch.zeros(1, 3, 32, 32)).shape == (1, 3, 32, 32)
    # one grid per epoch (map | rendered | real, one row per held-out frame) and the jaw
    grid = cv2.imread(str(tmp_path / "resumed" / "grid_epoch002.png"))
    assert grid is not None and grid.shape == (3 * 32, 3 * 32, 3)
    assert (tmp_path / "resumed" / "grid.png").is_file()
    JawRegression.load(tmp_path / "resumed" / "jaw.npz")
    # resuming with another renderer shape is refused
    other = dataclasses.replace(tiny_config(3), renderer=dataclasses.replace(tiny_config().renderer, ngf=8))
    with pytest.raises(RenderError, match="differs"):
        run_training(dataset, tmp_path / "resumed", other, resume=True, progress=False)


def test_eval_and_cli_adapters(dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    overrides = ["renderer.resolution=32", "renderer.ngf=4", "renderer.n_downsample=2",
                 "renderer.n_blocks=1", "renderer.ndf=8", "renderer.num_d=2",
                 "renderer.n_layers_d=2"]
    cfg = dataclasses.replace(tiny_config(), renderer=RendererConfig())
    parser = argparse.ArgumentParser()
    train_renderer.add_arguments(parser)
    args = parser.parse_args([str(dataset), "--preset", "cpu-small", "--out", str(out), "--epochs", "1"])
    args.overrides = overrides
    resolved = resolve_config(cfg, preset="cpu-small", overrides=overrides, epochs=1)
    assert resolved.renderer.preset == "cpu-small" and resolved.renderer.resolution == 32
    assert train_renderer.run(args, cfg) == 0
    assert "checkpoint.pt" in capsys.readouterr().out

    result = evaluate_renderer(dataset, out / "checkpoint.pt")
    assert result.frames == 3 and result.clips == ("toy",)
    assert 5 < result.psnr < 60 and -1 <= result.ssim <= 1
    assert result.jaw_r2_train > 0.9  # the synthetic chin follows the mouth exactly

    parser = argparse.ArgumentParser()
    eval_renderer.add_arguments(parser)
    assert eval_renderer.run(parser.parse_args([str(dataset), "--checkpoint", str(out / "checkpoint.pt")]), cfg) == 0
    printed = capsys.readouterr().out
    assert "PSNR" in printed and "SSIM" in printed and "R^2" in printed
