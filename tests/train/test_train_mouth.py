"""Mouth training on a tiny synthetic dataset: it learns, resumes exactly, stores its config;
eval finds every trained model and writes Fig. 5."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
import torch  # noqa: E402
from synthetic_mouth_data import write_synthetic_dataset  # noqa: E402

from anchor.config import (  # noqa: E402
    AnchorConfig,
    MouthModelConfig,
    MouthTrainConfig,
    from_dict,
    load_config,
    to_dict,
)
from anchor.errors import MouthError  # noqa: E402
from anchor.mouth.models import load_checkpoint  # noqa: E402
from anchor.train.mouth import resolve_config, train_mouth  # noqa: E402


def command(name: str, overrides: list[str], argv: list[str]) -> int:
    """Run anchor/commands/<name>.py as the CLI does (parser from add_arguments, --set overrides)."""
    module = importlib.import_module(f"anchor.commands.{name}")
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return int(module.run(parser.parse_args(argv), load_config(None, overrides)))


def tiny_config(kind: str, epochs: int, **train: Any) -> AnchorConfig:
    mm = MouthModelConfig(kind=kind, channels=16, fc_hidden=16, dilations=(1, 2, 4), lstm_hidden=16,
                          lstm_layers=1, disc_channels=8)
    mt = dataclasses.replace(MouthTrainConfig(epochs=epochs, batch_size=16, lr=3e-3, threads=1,
                                              checkpoint_every=1, patience=0), **train)
    return AnchorConfig(mouth_model=mm, mouth_train=mt)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_dataset(tmp_path_factory.mktemp("ds"))


def test_training_reduces_heldout_loss_and_stores_config(dataset: Path, tmp_path: Path) -> None:
    cfg = tiny_config("adversarial-tcn", epochs=12)
    result = train_mouth(dataset, tmp_path / "runs", cfg, progress=False)
    assert result.checkpoint == tmp_path / "runs" / "adversarial-tcn" / "checkpoint.pt"
    losses = [h["val_loss"] for h in result.history]
    assert len(losses) == 12
    # Baseline: always predicting zero (the PCA mean).
    from anchor.train.dataset import load_dataset

    ds = load_dataset(dataset)
    zero = np.mean(np.concatenate([c.mouth_pca[c.split(0.15)[1].start :] for c in ds.clips]) ** 2)
    assert losses[-1] < 0.5 * zero
    assert losses[-1] < losses[0]
    ckpt = load_checkpoint(result.checkpoint)
    assert from_dict(AnchorConfig, ckpt["config"]) == cfg
    assert ckpt["config"] == to_dict(cfg)
    # checkpoint.pt holds the best held-out epoch; last.pt the final one (for --resume).
    best = int(np.argmin(losses))
    assert ckpt["epoch"] == best + 1 and ckpt["val_loss"] == pytest.approx(losses[best])
    assert result.epoch == best + 1 and result.val_loss == pytest.approx(min(losses))
    assert load_checkpoint(result.checkpoint.with_name("last.pt"))["epoch"] == 12
    assert all(-1.0 <= h["lip_corr"] <= 1.0 for h in result.history)
    assert set(ckpt["norm"]) == {"mfcc_mean", "mfcc_std", "target_scale"}
    # The stored MFCC statistics are the train split's.
    train_rows = np.concatenate([c.mfcc[: 4 * c.split(0.15)[0].stop] for c in ds.clips])
    np.testing.assert_allclose(ckpt["norm"]["mfcc_mean"].numpy(), train_rows.mean(0), rtol=1e-4, atol=1e-4)


def test_resume_continues_at_the_right_epoch(dataset: Path, tmp_path: Path) -> None:
    full = train_mouth(dataset, tmp_path / "full", tiny_config("tcn", epochs=3), progress=False)
    part = train_mouth(dataset, tmp_path / "part", tiny_config("tcn", epochs=2), progress=False)
    assert part.epoch == 2
    resumed = train_mouth(dataset, tmp_path / "part", tiny_config("tcn", epochs=3), resume=True,
                          progress=False)
    assert resumed.epoch == 3
    assert [h["epoch"] for h in resumed.history] == [1.0, 2.0, 3.0]
    a, b = load_checkpoint(full.checkpoint), load_checkpoint(resumed.checkpoint)
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=1e-5, atol=1e-6)
    assert b["epoch"] == 3
    with pytest.raises(MouthError, match="different mouth_model"):
        other = tiny_config("tcn", epochs=4)
        other = dataclasses.replace(other, mouth_model=dataclasses.replace(other.mouth_model, channels=8))
        train_mouth(dataset, tmp_path / "part", other, resume=True, progress=False)


def test_cli_trains_every_kind_and_eval_reports_them(dataset: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    runs = tmp_path / "runs"
    common = ["mouth_model.channels=8", "mouth_model.fc_hidden=8", "mouth_model.lstm_hidden=8",
              "mouth_model.lstm_layers=1", "mouth_model.disc_channels=8", "mouth_train.threads=1"]
    for kind in ("adversarial-tcn", "tcn", "lstm", "bilstm"):
        assert command("train_mouth", common, [str(dataset), "--model", kind, "--out", str(runs),
                                               "--epochs", "1"]) == 0
        assert (runs / kind / "checkpoint.pt").is_file()
    png, js = tmp_path / "fig5.png", tmp_path / "results.json"
    assert command("eval_mouth", common, [str(dataset), "--runs", str(runs), "--plot", str(png),
                                          "--json", str(js)]) == 0
    out = capsys.readouterr().out
    assert "lookahead 400 ms" in out
    for kind in ("adversarial-tcn", "tcn", "lstm", "bilstm"):
        assert kind in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(js.read_text())
    assert [m["kind"] for m in data["models"]] == ["adversarial-tcn", "tcn", "lstm", "bilstm"]
    for m in data["models"]:
        assert len(m["position_mse"]) == 50 and m["mse"] > 0 and m["seconds_per_minute"] > 0
    onnx = tmp_path / "m.onnx"
    assert command("export_mouth", common, [str(runs / "tcn" / "checkpoint.pt"), "-o", str(onnx)]) == 0
    assert onnx.is_file() and "lookahead 400 ms" in capsys.readouterr().out


def test_fig5_scores_every_position_on_the_same_frames(dataset: Path) -> None:
    from anchor.mouth.evaluate import window_position_mse
    from anchor.train.dataset import load_dataset

    ds = load_dataset(dataset)
    zeros = window_position_mse(ds, lambda b: np.zeros((len(b), 50, 10), np.float32), AnchorConfig(), 0.15)
    held_out = np.concatenate([c.mouth_pca[c.split(0.15)[1].start :] for c in ds.clips])
    np.testing.assert_allclose(zeros, np.full(50, np.mean(held_out.astype(np.float64) ** 2)), rtol=1e-9)


def test_bad_kind_and_empty_runs_are_clear_errors(dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(MouthError, match="unknown mouth model kind"):
        resolve_config(AnchorConfig(), kind="gru")
    from anchor.mouth.evaluate import evaluate_runs

    with pytest.raises(MouthError, match="no trained mouth models"):
        evaluate_runs(dataset, tmp_path / "empty", AnchorConfig())


def test_patience_stops_and_keeps_the_best_epoch(dataset: Path, tmp_path: Path) -> None:
    # lr 0.3 diverges, so the held-out MSE stops improving early.
    cfg = tiny_config("tcn", epochs=12, patience=2, lr=0.3)
    result = train_mouth(dataset, tmp_path / "runs", cfg, progress=False)
    losses = [h["val_loss"] for h in result.history]
    best = int(np.argmin(losses))
    assert len(losses) == best + 1 + 2 < 12
    ckpt = load_checkpoint(result.checkpoint)
    assert ckpt["epoch"] == best + 1 and ckpt["val_loss"] == pytest.approx(losses[best])


def test_augmentation_is_seeded_training_only_and_leaves_input_alone() -> None:
    from anchor.train.mouth import augment_mfcc, augmentation_on

    off = MouthTrainConfig(aug_noise=0.0, aug_gain=0.0, aug_time_masks=0, aug_coef_masks=0)
    on = MouthTrainConfig(aug_noise=0.3, aug_gain=0.5, aug_time_masks=2, aug_time_mask_rows=20,
                          aug_coef_masks=1, aug_coef_mask_width=3)
    assert not augmentation_on(off) and augmentation_on(on)
    x = torch.randn(8, 200, 13)
    x0 = x.clone()
    a = augment_mfcc(x, on, torch.Generator().manual_seed(1))
    b = augment_mfcc(x, on, torch.Generator().manual_seed(1))
    c = augment_mfcc(x, on, torch.Generator().manual_seed(2))
    torch.testing.assert_close(x, x0)  # the stored windows are never changed in place
    torch.testing.assert_close(a, b)  # same seed, same augmentation
    assert not torch.equal(a, c) and not torch.equal(a, x)
    assert (a == 0).any()  # masks set spans to the train mean
    torch.testing.assert_close(augment_mfcc(x, off, torch.Generator().manual_seed(1)), x)


def test_input_dropout_is_off_in_eval_mode() -> None:
    from anchor.mouth.models import build_generator

    torch.manual_seed(0)
    net = build_generator(MouthModelConfig(kind="tcn", channels=8, fc_hidden=8, input_dropout=0.5,
                                           dropout=0.5))
    x = torch.randn(2, 200, 13)
    net.train()
    assert not torch.equal(net(x), net(x))
    net.eval()
    torch.testing.assert_close(net(x), net(x))
