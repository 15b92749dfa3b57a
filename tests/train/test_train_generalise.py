"""Speaker folds, leave-speaker-out scoring, and fine-tuning a generic mouth model on one person."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from synthetic_mouth_data import with_lips, write_synthetic_dataset  # noqa: E402
from test_train_mouth import tiny_config  # noqa: E402

from anchor.errors import DatasetError, MouthError  # noqa: E402
from anchor.mouth.models import load_checkpoint  # noqa: E402
from anchor.train.dataset import load_dataset  # noqa: E402
from anchor.train.generalise import (  # noqa: E402
    frame_energy,
    lagged_correlations,
    leave_speaker_out,
)
from anchor.train.mouth import train_mouth  # noqa: E402
from anchor.train.speakers import is_generated, speaker_folds, speaker_of  # noqa: E402


def test_speaker_names_group_the_shared_clips() -> None:
    assert speaker_of("styletalk_Obama_clip1") == speaker_of("styletalk_Obama_clip3") == "styletalk_obama"
    assert speaker_of("styletalk_andrew_clip_2") == "styletalk_andrew"
    assert speaker_of("lipnet_grid_bbaf2n") == speaker_of("lipnet_grid_id2_vcd_swwp2s") == "grid"
    assert speaker_of("pcavs_voxceleb_Input_00010") == "voxceleb"
    assert speaker_of("dfrf_cnn_anchor") == "dfrf_cnn_anchor"
    assert is_generated("vexpress_vasa-1_10") and is_generated("vexpress_emo_talk_hb")
    assert not is_generated("vexpress_short_case_10")


def test_folds_hold_whole_speakers_and_balance_frames() -> None:
    frames = {"styletalk_Obama_clip1": 300, "styletalk_Obama_clip2": 300, "a": 500, "b": 400,
              "c": 100, "lipnet_grid_x": 75, "lipnet_grid_y": 75}
    folds = speaker_folds(frames, 3)
    assert sorted(sum(folds, [])) == sorted(frames)
    where = {c: k for k, f in enumerate(folds) for c in f}
    assert where["styletalk_Obama_clip1"] == where["styletalk_Obama_clip2"]
    assert where["lipnet_grid_x"] == where["lipnet_grid_y"]
    sizes = [sum(frames[c] for c in f) for f in folds]
    assert max(sizes) - min(sizes) <= 300, sizes
    assert speaker_folds(frames, 3) == folds  # deterministic
    with pytest.raises(ValueError, match="speakers cannot fill"):
        speaker_folds({"a": 1, "b": 1}, 3)


def test_best_lag_finds_a_late_prediction() -> None:
    rng = np.random.default_rng(1)
    real = np.convolve(rng.standard_normal(400), np.ones(5) / 5, "same")
    late = np.concatenate([np.zeros(2), real[:-2]])  # the prediction shows frame t at t + 2
    lags = lagged_correlations([late], [real], 5)
    assert max(lags, key=lambda k: lags[k]) == 2 and lags[2] > 0.99 > lags[0]


def test_frame_energy_is_log_rms_per_frame() -> None:
    audio = np.concatenate([np.zeros(640), np.full(640, 0.1), np.full(100, 1.0)]).astype(np.float32)
    e = frame_energy(audio, 3)
    np.testing.assert_allclose(e[:2], [-80.0, -20.0], atol=1e-6)
    assert e[2] > e[0]


@pytest.fixture(scope="module")
def lips_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return with_lips(write_synthetic_dataset(tmp_path_factory.mktemp("lso"), clips=3, frames=300))


def test_leave_speaker_out_scores_every_speaker_on_a_model_that_never_heard_them(
    lips_dataset: Path, tmp_path: Path
) -> None:
    ds = load_dataset(lips_dataset)
    cfg = tiny_config("tcn", epochs=6)
    result = leave_speaker_out(ds, tmp_path / "lso", cfg, folds=3, progress=False)
    assert sorted(s.speaker for s in result.scores) == ["clip0", "clip1", "clip2"]
    for k, ckpt in enumerate(result.checkpoints):
        trained_on = load_checkpoint(ckpt)["clips"]
        assert not set(trained_on) & set(result.folds[k]), "a fold's model heard a held-out speaker"
    # The synthetic mouth is the same function of the MFCC for every clip: it transfers.
    assert result.mean("lip_corr") > 0.3, [s.lip_corr for s in result.scores]
    assert all(s.mse < s.still_mse for s in result.scores)
    again = leave_speaker_out(ds, tmp_path / "lso", cfg, folds=3, progress=False)  # reuses folds
    assert [s.lip_corr for s in again.scores] == [s.lip_corr for s in result.scores]


def test_fine_tuning_starts_from_the_base_and_never_ends_worse(lips_dataset: Path, tmp_path: Path) -> None:
    ds = load_dataset(lips_dataset)
    cfg = tiny_config("tcn", epochs=4)
    base = train_mouth(ds.subset(["clip0", "clip1"]), tmp_path / "base", cfg, progress=False)
    tuned = train_mouth(ds.subset(["clip2"]), tmp_path / "tuned", cfg, progress=False,
                        base=base.checkpoint)
    ckpt = load_checkpoint(tuned.checkpoint)
    assert ckpt["base"]["path"] == str(base.checkpoint) and len(ckpt["base"]["sha256"]) == 64
    assert ckpt["base"]["clips"] == ["clip0", "clip1"] and ckpt["clips"] == ["clip2"]
    assert ckpt["config"]["mouth_train"]["epochs"] == cfg.mouth_train.finetune_epochs
    np.testing.assert_allclose(ckpt["norm"]["mfcc_mean"], load_checkpoint(base.checkpoint)["norm"]["mfcc_mean"])
    # Epoch 0 is the base on clip2's held-out frames: fine-tuning keeps it or beats it.
    assert tuned.val_loss <= tuned.history[0]["val_loss"] or tuned.epoch == 0
    assert all(h["val_loss"] >= tuned.val_loss for h in tuned.history)


def test_fine_tuning_refuses_another_basis_or_network(lips_dataset: Path, tmp_path: Path) -> None:
    ds = load_dataset(lips_dataset)
    cfg = tiny_config("tcn", epochs=1)
    base = train_mouth(ds.subset(["clip0"]), tmp_path / "base", cfg, progress=False)
    other = write_synthetic_dataset(tmp_path / "other", clips=1)  # its own basis (eye)
    with pytest.raises(MouthError, match="--mouth-basis"):
        train_mouth(other, tmp_path / "t1", cfg, progress=False, base=base.checkpoint)
    wider = tiny_config("tcn", epochs=1)
    import dataclasses

    wider = dataclasses.replace(wider, mouth_model=dataclasses.replace(wider.mouth_model, channels=24))
    with pytest.raises(MouthError, match="channels"):
        train_mouth(ds.subset(["clip1"]), tmp_path / "t2", wider, progress=False, base=base.checkpoint)
    with pytest.raises(MouthError, match="does not exist"):
        train_mouth(ds, tmp_path / "t3", cfg, progress=False, base=tmp_path / "nope.pt")


def test_subset_keeps_the_basis_and_names_a_missing_clip(lips_dataset: Path) -> None:
    ds = load_dataset(lips_dataset)
    sub = ds.subset(["clip2", "clip0"])
    assert [c.name for c in sub.clips] == ["clip2", "clip0"]
    assert sub.pca_components is ds.pca_components
    with pytest.raises(DatasetError, match="no clip 'clip9'"):
        ds.subset(["clip9"])
    assert json.loads((lips_dataset / "manifest.json").read_text())["clips"][0]["name"] == "clip0"


def test_window_cmn_trains_and_travels_with_the_checkpoint(lips_dataset: Path, tmp_path: Path) -> None:
    import dataclasses

    from anchor.mouth.models import inference_from_checkpoint

    cfg = tiny_config("tcn", epochs=3)
    cfg = dataclasses.replace(cfg, mouth_model=dataclasses.replace(cfg.mouth_model, window_cmn=True))
    result = train_mouth(lips_dataset, tmp_path / "cmn", cfg, progress=False)
    module, ckpt_cfg, ckpt = inference_from_checkpoint(result.checkpoint)
    assert module.window_cmn and ckpt_cfg.mouth_model.window_cmn
    # The standardisation is of mean-free windows: its mean is ~0 (the raw MFCC's is ~3).
    assert float(np.abs(np.asarray(ckpt["norm"]["mfcc_mean"])).max()) < 0.2
    ds = load_dataset(lips_dataset)
    held = [c.mouth_pca[c.split(cfg.mouth_train.val_fraction)[1].start :] for c in ds.clips]
    still = float(np.mean(np.concatenate(held) ** 2))  # predicting the mean mouth
    assert result.val_loss < still, (result.val_loss, still)


def test_equalised_clip_amplitude_gives_every_speaker_the_same_rms(tmp_path: Path) -> None:
    import dataclasses

    from anchor.config import MouthTrainConfig
    from anchor.train.mouth import clip_gains

    root = write_synthetic_dataset(tmp_path / "ds", clips=3)
    ds = load_dataset(root)
    quiet = dataclasses.replace(ds.clips[1], mouth_pca=ds.clips[1].mouth_pca * 0.25)  # a small mouth
    ds = dataclasses.replace(ds, clips=[ds.clips[0], quiet, ds.clips[2]])
    mt = MouthTrainConfig()
    assert clip_gains(ds, mt) == [1.0, 1.0, 1.0]
    gains = clip_gains(ds, dataclasses.replace(mt, clip_amplitude="equalised"))
    rms = [float(np.sqrt(np.mean((c.mouth_pca[: c.split(mt.val_fraction)[0].stop] * g) ** 2)))
           for c, g in zip(ds.clips, gains, strict=True)]
    np.testing.assert_allclose(rms, rms[0], rtol=1e-5)
    assert gains[1] > 3 * gains[0]


def test_amplitude_calibration_brings_the_gap_spread_to_the_real_one(lips_dataset: Path, tmp_path: Path) -> None:
    import dataclasses

    from anchor.mouth.models import inference_from_checkpoint
    from anchor.train.mouth import amplitude_gain, lip_opening, predict_clips, torch_infer

    cfg = tiny_config("tcn", epochs=2)
    off = dataclasses.replace(cfg, mouth_train=dataclasses.replace(cfg.mouth_train, calibrate_amplitude=False))
    ds = load_dataset(lips_dataset)
    plain = train_mouth(ds, tmp_path / "plain", off, progress=False).checkpoint
    tuned = train_mouth(ds, tmp_path / "calibrated", cfg, progress=False).checkpoint
    gain = float(load_checkpoint(tuned)["amplitude_gain"])
    assert load_checkpoint(plain)["amplitude_gain"] == 1.0 and 1.0 <= gain <= 2.5

    def spread(ckpt: Path) -> float:
        module, _, _ = inference_from_checkpoint(ckpt)
        preds = predict_clips(ds, torch_infer(module), cfg)
        return float(np.concatenate([lip_opening(p @ ds.pca_components) for p in preds]).std())

    # Same weights (same seed), outputs scaled by the gain, which amplitude_gain recomputes.
    np.testing.assert_allclose(spread(tuned), gain * spread(plain), rtol=1e-3)
    module, _, _ = inference_from_checkpoint(plain)
    assert amplitude_gain(ds, predict_clips(ds, torch_infer(module), cfg), cfg.mouth_train.val_fraction) == pytest.approx(gain, rel=1e-3)
    # An older, uncalibrated checkpoint gets the same calibration after the fact, once.
    from anchor.train.mouth import calibrate_checkpoint

    assert calibrate_checkpoint(plain, ds) == pytest.approx(gain, rel=1e-3)
    assert calibrate_checkpoint(plain, ds) == pytest.approx(gain, rel=1e-3)
    np.testing.assert_allclose(spread(plain), spread(tuned), rtol=1e-3)


def test_select_by_lip_corr_keeps_the_best_correlated_epoch(lips_dataset: Path, tmp_path: Path) -> None:
    import dataclasses

    cfg = tiny_config("tcn", epochs=5)
    cfg = dataclasses.replace(cfg, mouth_train=dataclasses.replace(
        cfg.mouth_train, select_by="lip_corr", patience=0))
    result = train_mouth(lips_dataset, tmp_path / "r", cfg, progress=False)
    corr = [h["lip_corr"] for h in result.history]
    assert result.epoch == int(np.argmax(corr)) + 1
    assert load_checkpoint(result.checkpoint)["val_loss"] == pytest.approx(result.history[result.epoch - 1]["val_loss"])


def test_cli_fine_tunes_with_base(lips_dataset: Path, tmp_path: Path) -> None:
    from test_train_mouth import command

    sets = ["mouth_model.kind=tcn", "mouth_model.channels=16", "mouth_model.fc_hidden=16",
            "mouth_train.epochs=1", "mouth_train.finetune_epochs=1",
            "mouth_train.threads=1"]
    assert command("train_mouth", sets, [str(lips_dataset), "--out", str(tmp_path / "a")]) == 0
    base = tmp_path / "a" / "tcn" / "checkpoint.pt"
    assert command("train_mouth", sets, [str(lips_dataset), "--out", str(tmp_path / "b"),
                                         "--base", str(base)]) == 0
    assert load_checkpoint(tmp_path / "b" / "tcn" / "checkpoint.pt")["base"]["path"] == str(base)
