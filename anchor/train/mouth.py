"""Training of the audio-to-mouth models (paper §3.1, Eq. 1-4) and their held-out scoring.

Windows of 200 MFCC rows / 50 frames are cut with stride `mouth_train.window_stride` frames from
the train split of every clip (`ClipData.split`: the last `val_fraction` is held out). MFCC are
standardised with the train-set mean/std; PCA targets are divided by their RMS
(`mouth_train.target_scaling`); both are stored in the checkpoint and baked into the ONNX export.

Losses: "adversarial-tcn" trains MouthTcn against MouthDiscriminator with
GAN + l2_weight * L2 + interframe_weight * inter-frame (MSE of consecutive-frame differences);
"tcn", "lstm" and "bilstm" are trained with L2 only (the paper's baselines).

Validation = the streaming scheme itself: `windowed_inference` over each whole clip, scored on the
held-out frames only, in PCA units. `checkpoint.pt` holds the weights of the epoch with the best
held-out MSE (what eval and export use); `last.pt` the latest epoch (what --resume continues);
`mouth_train.patience` stops training once the held-out MSE has not improved for that many epochs.

Regularisation against the small, many-speaker data: dropout inside the TCN and on the input
MFCC, AdamW weight decay, and MFCC augmentation of the training windows (`augment_mfcc`:
Gaussian noise, a per-window c0 offset = gain change, SpecAugment-style time and coefficient
masks), all in standardised MFCC units and only while training.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from anchor.audio.mfcc import silence_mfcc
from anchor.avatar.bundle import sha256_file
from anchor.config import AnchorConfig, MouthTrainConfig, from_dict, to_dict
from anchor.errors import MouthError
from anchor.mouth.models import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    KINDS,
    MouthDiscriminator,
    MouthInference,
    build_generator,
    load_checkpoint,
)
from anchor.mouth.streaming import windowed_inference
from anchor.progress import progress_bar
from anchor.train.dataset import Dataset, load_dataset

log = logging.getLogger(__name__)

SCALINGS = ("none", "global", "per-dim")


@dataclass(frozen=True)
class Normalisation:
    mfcc_mean: np.ndarray  # (13,)
    mfcc_std: np.ndarray  # (13,)
    target_scale: np.ndarray  # (10,) raw PCA = network output * target_scale

    def to_checkpoint(self) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in
                dataclasses.asdict(self).items()}

    @staticmethod
    def from_checkpoint(d: dict[str, Any]) -> Normalisation:
        return Normalisation(**{k: np.asarray(d[k], dtype=np.float32) for k in
                                ("mfcc_mean", "mfcc_std", "target_scale")})


@dataclass(frozen=True)
class TrainResult:
    checkpoint: Path
    epoch: int
    val_loss: float
    history: list[dict[str, float]]


def resolve_config(cfg: AnchorConfig, kind: str | None = None, epochs: int | None = None) -> AnchorConfig:
    """`cfg` with the model kind / epoch count from the command line applied and checked."""
    mm, mt = cfg.mouth_model, cfg.mouth_train
    if kind is not None:
        if kind not in KINDS:
            raise MouthError(f"unknown mouth model kind {kind!r} (choose from {', '.join(KINDS)})")
        mm = dataclasses.replace(mm, kind=kind)  # type: ignore[arg-type]  # checked above
    if epochs is not None:
        mt = dataclasses.replace(mt, epochs=epochs)
    if mm.kind not in KINDS:
        raise MouthError(f"unknown mouth model kind {mm.kind!r} (choose from {', '.join(KINDS)})")
    if mt.target_scaling not in SCALINGS:
        raise MouthError(f"mouth_train.target_scaling must be one of {', '.join(SCALINGS)}")
    if mt.epochs < 0:
        raise MouthError("mouth_train.epochs must be >= 0")
    return dataclasses.replace(cfg, mouth_model=mm, mouth_train=mt)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def clip_windows(mfcc: np.ndarray, target: np.ndarray, frames: range, window_out: int,
                 rows_per_frame: int, stride: int, pad_row: np.ndarray | None = None,
                 edge_frames: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows over `frames`, optionally running `edge_frames` into silence at both ends.

    Returns MFCC (N, 50*r, 13), targets (N, 50, dims) and a mask (N, 50) of real frames: the
    silence-padded frames (as at the edges of a stream) carry target 0 and are left out of the loss.
    """
    r, e = rows_per_frame, edge_frames if pad_row is not None else 0
    seg_x = mfcc[frames.start * r : frames.stop * r]
    seg_y = target[frames.start : frames.stop]
    if e:
        pad = np.repeat(np.asarray(pad_row, np.float32).reshape(1, -1), e * r, 0)
        seg_x = np.concatenate([pad, seg_x, pad])
        seg_y = np.concatenate([np.zeros((e, target.shape[1])), seg_y, np.zeros((e, target.shape[1]))])
    real = np.zeros(len(seg_y), bool)
    real[e : e + len(frames)] = True
    starts = list(range(0, len(seg_y) - window_out + 1, stride))
    if not starts or len(frames) < window_out:
        return (np.zeros((0, window_out * r, mfcc.shape[1]), np.float32),
                np.zeros((0, window_out, target.shape[1]), np.float32),
                np.zeros((0, window_out), bool))
    x = np.stack([seg_x[s * r : (s + window_out) * r] for s in starts])
    y = np.stack([seg_y[s : s + window_out] for s in starts])
    m = np.stack([real[s : s + window_out] for s in starts])
    return x.astype(np.float32), y.astype(np.float32), m


def clip_gains(ds: Dataset, mt: MouthTrainConfig) -> list[float]:
    """Per-clip target gains: 1, or (clip_amplitude = "equalised") the factor that brings each
    clip's train-split RMS to the RMS over all clips."""
    if mt.clip_amplitude == "raw":
        return [1.0] * len(ds.clips)
    rms = []
    for clip in ds.clips:
        train, _ = clip.split(mt.val_fraction)
        y = clip.mouth_pca[train.start : train.stop].astype(np.float64)
        rms.append(float(np.sqrt(np.mean(y**2))) if len(y) else 0.0)
    overall = float(np.sqrt(np.mean(np.square([v for v in rms if v > 0])))) if any(rms) else 1.0
    return [overall / v if v > 0 else 1.0 for v in rms]


def train_windows(ds: Dataset, cfg: AnchorConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All training windows of the dataset (raw MFCC, raw PCA, real-frame mask).

    Besides the windows inside each clip's train split, windows that run up to 3/4 of their
    length into silence at the split's ends teach the model the stream edges, which streaming
    inference pads with the silence MFCC row.
    """
    mm, mt = cfg.mouth_model, cfg.mouth_train
    r = mm.window_in // mm.window_out
    pad = silence_mfcc(cfg.audio)
    xs, ys, ms = [], [], []
    gains = clip_gains(ds, mt)
    for clip, gain in zip(ds.clips, gains, strict=True):
        train, _ = clip.split(mt.val_fraction)
        x, y, m = clip_windows(clip.mfcc, clip.mouth_pca * gain, train, mm.window_out, r,
                               mt.window_stride, pad, 3 * mm.window_out // 4)
        if not len(x):
            log.warning("clip %s: train split (%d frames) is shorter than one window; skipped",
                        clip.name, len(train))
        xs.append(x)
        ys.append(y)
        ms.append(m)
    x_all, y_all, m_all = np.concatenate(xs), np.concatenate(ys), np.concatenate(ms)
    if not len(x_all):
        raise MouthError(f"dataset {ds.path}: no clip has {mm.window_out} training frames")
    if y_all.shape[2] != mm.pca_dims:
        raise MouthError(
            f"dataset {ds.path}: mouth_pca has {y_all.shape[2]} dims, mouth_model.pca_dims is {mm.pca_dims}"
        )
    return x_all, y_all, m_all


def fit_normalisation(ds: Dataset, cfg: AnchorConfig) -> Normalisation:
    """MFCC mean/std and target scale from the train split of every clip."""
    mt = cfg.mouth_train
    r = cfg.mouth_model.window_in // cfg.mouth_model.window_out
    rows, targets = [], []
    for clip in ds.clips:
        train, _ = clip.split(mt.val_fraction)
        rows.append(clip.mfcc[train.start * r : train.stop * r])
        targets.append(clip.mouth_pca[train.start : train.stop])
    m = np.concatenate(rows).astype(np.float64)
    t = np.concatenate(targets).astype(np.float64)
    std = np.maximum(m.std(0), 1e-6)
    if mt.target_scaling == "none":
        scale = np.ones(t.shape[1])
    elif mt.target_scaling == "global":
        scale = np.full(t.shape[1], np.sqrt(np.mean(t**2)))
    else:
        scale = np.sqrt(np.mean(t**2, axis=0))
    scale = np.maximum(scale, 1e-8)
    return Normalisation(m.mean(0).astype(np.float32), std.astype(np.float32), scale.astype(np.float32))


def selection_score(metrics: dict[str, float], mt: MouthTrainConfig) -> float:
    """Lower is better: the held-out MSE, or (select_by = "lip_corr") minus the held-out
    inner-lip gap correlation."""
    return -float(metrics["lip_corr"]) if mt.select_by == "lip_corr" else float(metrics["mse"])


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MSE over the real frames only: pred/target (B, T, D), mask (B, T) bool."""
    w = mask.unsqueeze(-1).to(pred.dtype)
    return ((pred - target) ** 2 * w).sum() / (w.sum() * pred.shape[-1]).clamp_min(1.0)


def interframe_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """MSE of consecutive-frame differences (the paper's inter-frame loss), (B, T, D) inputs."""
    dp, dt = pred[:, 1:] - pred[:, :-1], target[:, 1:] - target[:, :-1]
    if mask is None:
        return F.mse_loss(dp, dt)
    return masked_mse(dp, dt, mask[:, 1:] & mask[:, :-1])


def masked_bce(logits: torch.Tensor, real: bool, mask: torch.Tensor) -> torch.Tensor:
    """Per-frame GAN loss over the real frames: logits (B, T), mask (B, T) bool."""
    target = torch.full_like(logits, 1.0 if real else 0.0)
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    w = mask.to(logits.dtype)
    return (loss * w).sum() / w.sum().clamp_min(1.0)


def augment_mfcc(x: torch.Tensor, mt: MouthTrainConfig, gen: torch.Generator) -> torch.Tensor:
    """Augmented copy of standardised MFCC windows (B, rows, coefs); `x` itself is not changed.

    Masked spans / bands are set to 0, the train-set mean, so they carry no information.
    """
    b, rows, coefs = x.shape
    out = x.clone()
    if mt.aug_noise > 0:
        out += mt.aug_noise * torch.randn(out.shape, generator=gen)
    if mt.aug_gain > 0:
        out[:, :, 0] += mt.aug_gain * torch.randn((b, 1), generator=gen)
    keep = torch.ones(b, rows, coefs)
    if mt.aug_time_masks > 0 and mt.aug_time_mask_rows > 0:
        r = torch.arange(rows).view(1, -1)
        for _ in range(mt.aug_time_masks):
            length = torch.randint(0, mt.aug_time_mask_rows + 1, (b, 1), generator=gen)
            start = torch.randint(0, rows, (b, 1), generator=gen)
            keep *= (~((r >= start) & (r < start + length))).float().unsqueeze(-1)
    if mt.aug_coef_masks > 0 and mt.aug_coef_mask_width > 0:
        c = torch.arange(coefs).view(1, -1)
        for _ in range(mt.aug_coef_masks):
            width = torch.randint(0, mt.aug_coef_mask_width + 1, (b, 1), generator=gen)
            start = torch.randint(0, coefs, (b, 1), generator=gen)
            keep *= (~((c >= start) & (c < start + width))).float().unsqueeze(1)
    return out * keep


def augmentation_on(mt: MouthTrainConfig) -> bool:
    return (mt.aug_noise > 0 or mt.aug_gain > 0 or (mt.aug_time_masks > 0 and mt.aug_time_mask_rows > 0)
            or (mt.aug_coef_masks > 0 and mt.aug_coef_mask_width > 0))


def torch_infer(module: nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    """An `infer` function (numpy in/out, no grad) for windowed_inference."""
    def infer(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))).numpy()
    return infer


def predict_clips(ds: Dataset, infer: Callable[[np.ndarray], np.ndarray],
                  cfg: AnchorConfig) -> list[np.ndarray]:
    """Streaming-scheme predictions (T, dims) for every whole clip, raw PCA units."""
    pad = silence_mfcc(cfg.audio)
    r = cfg.mouth_model.window_in // cfg.mouth_model.window_out
    return [windowed_inference(c.mfcc[: r * c.frames], infer, cfg.streaming, cfg.mouth_model, pad)
            for c in ds.clips]


INNER_LIP_PAIRS = ((61, 67), (62, 66), (63, 65))  # dlib 68-point upper / lower inner lip


def lip_opening(mouth: np.ndarray) -> np.ndarray:
    """Inner-lip opening (T,) of normalised mouths (T, 40) (points 48..67, x/y interleaved):
    mean vertical gap of the three inner-lip point pairs. Linear, so it applies to deviations
    from the mean mouth (PCA reconstructions) too."""
    gaps = [mouth[:, 2 * (lo - 48) + 1] - mouth[:, 2 * (up - 48) + 1] for up, lo in INNER_LIP_PAIRS]
    return np.mean(gaps, axis=0)


def heldout_metrics(ds: Dataset, preds: list[np.ndarray], val_fraction: float) -> dict[str, float]:
    """MSE, MAE and inter-frame MSE (Eq. 5) over the held-out frames of every clip, PCA units,
    and `lip_corr`: the correlation of predicted and true inner-lip opening over those frames."""
    se, ae, d_se = 0.0, 0.0, 0.0
    n, nd, dims = 0, 0, 1
    open_p: list[np.ndarray] = []
    open_y: list[np.ndarray] = []
    for clip, pred in zip(ds.clips, preds, strict=True):
        _, val = clip.split(val_fraction)
        if not len(val):
            continue
        p = pred[val.start : val.stop].astype(np.float64)
        y = clip.mouth_pca[val.start : val.stop].astype(np.float64)
        dims = y.shape[1]
        open_p.append(lip_opening(p @ ds.pca_components))
        open_y.append(lip_opening(y @ ds.pca_components))
        se += float(((p - y) ** 2).sum())
        ae += float(np.abs(p - y).sum())
        n += len(val)
        if len(val) > 1:
            d_se += float(((np.diff(p, axis=0) - np.diff(y, axis=0)) ** 2).sum())
            nd += len(val) - 1
    if n == 0:
        raise MouthError(f"dataset {ds.path}: no held-out frames (val_fraction {val_fraction})")
    op, oy = np.concatenate(open_p), np.concatenate(open_y)
    corr = float(np.corrcoef(op, oy)[0, 1]) if op.std() > 0 and oy.std() > 0 else 0.0
    return {"mse": se / (n * dims), "mae": ae / (n * dims),
            "interframe_mse": d_se / max(1, nd * dims), "frames": float(n), "lip_corr": corr}


def _atomic_save(obj: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


MAX_AMPLITUDE_GAIN = 2.5


def amplitude_gain(ds: Dataset, preds: list[np.ndarray], val_fraction: float) -> float:
    """The factor that gives the predicted inner-lip gap the real gap's spread over the train
    split (1 .. MAX_AMPLITUDE_GAIN). An L2-trained model regresses towards the mean mouth and
    under-articulates; scaling every PCA output by one factor keeps the mouth shapes' mix."""
    p, y = [], []
    for clip, pred in zip(ds.clips, preds, strict=True):
        train, _ = clip.split(val_fraction)
        p.append(lip_opening(pred[train.start : train.stop].astype(np.float64) @ ds.pca_components))
        y.append(lip_opening(clip.mouth_pca[train.start : train.stop].astype(np.float64) @ ds.pca_components))
    sp, sy = float(np.concatenate(p).std()), float(np.concatenate(y).std())
    return float(np.clip(sy / sp, 1.0, MAX_AMPLITUDE_GAIN)) if sp > 0 else 1.0


def uncalibrated(ckpt: dict[str, Any]) -> Normalisation:
    """A checkpoint's normalisation without its amplitude gain: the scale training works in."""
    norm = Normalisation.from_checkpoint(ckpt["norm"])
    gain = np.float32(ckpt.get("amplitude_gain") or 1.0)
    return dataclasses.replace(norm, target_scale=norm.target_scale / gain)


def base_checkpoint(path: str | Path, ds: Dataset, cfg: AnchorConfig) -> dict[str, Any]:
    """A generic model to fine-tune from: same network config, same PCA basis as DATASET."""
    path = Path(path)
    if not path.is_file():
        raise MouthError(f"base mouth model {path} does not exist")
    b = load_checkpoint(path)
    old = from_dict(AnchorConfig, b["config"]).mouth_model
    if old != cfg.mouth_model:
        diff = [f.name for f in dataclasses.fields(old)
                if getattr(old, f.name) != getattr(cfg.mouth_model, f.name)]
        raise MouthError(f"base mouth model {path}: its mouth_model config differs ({', '.join(diff)})")
    basis = b.get("pca")
    if basis is None:
        raise MouthError(f"base mouth model {path} records no PCA basis; retrain it with this anchor")
    same = (np.asarray(basis["components"]).shape == ds.pca_components.shape
            and np.allclose(np.asarray(basis["components"]), ds.pca_components, atol=1e-5)
            and np.allclose(np.asarray(basis["mean"]), ds.pca_mean, atol=1e-5))
    if not same:
        raise MouthError(
            f"dataset {ds.path} has its own mouth PCA basis, not the base model's: prepare it with "
            f"`anchor prepare ... --mouth-basis {path}`"
        )
    return b


def train_mouth(
    dataset: str | Path | Dataset,
    out_root: str | Path,
    cfg: AnchorConfig,
    *,
    resume: bool = False,
    progress: bool = True,
    base: str | Path | None = None,
) -> TrainResult:
    """Train `cfg.mouth_model.kind` on DATASET; best weights at OUT_ROOT/<kind>/checkpoint.pt.

    With `base`, fine-tune that generic checkpoint instead of starting from random weights: its
    MFCC standardisation and target scale are kept (the weights expect them), the step and epoch
    count are `mouth_train.finetune_lr` / `finetune_epochs`, and the base itself is epoch 0, so
    the result is never worse on the held-out split than the model it started from.
    """
    cfg = resolve_config(cfg)
    if base is not None:
        mt0 = cfg.mouth_train
        cfg = dataclasses.replace(cfg, mouth_train=dataclasses.replace(
            mt0, lr=mt0.finetune_lr, epochs=mt0.finetune_epochs))
    mm, mt = cfg.mouth_model, cfg.mouth_train
    torch.set_num_threads(max(1, mt.threads))
    ckpt_path = Path(out_root) / mm.kind / "checkpoint.pt"
    last_path = ckpt_path.with_name("last.pt")
    ds = dataset if isinstance(dataset, Dataset) else load_dataset(dataset)
    base_ckpt = base_checkpoint(base, ds, cfg) if base is not None else None
    base_info = ({"path": str(base), "sha256": sha256_file(Path(base)),
                  "dataset": base_ckpt.get("dataset"), "clips": base_ckpt.get("clips")}
                 if base is not None and base_ckpt is not None else None)

    seed_everything(mt.seed)
    gen = build_generator(mm)
    # AdamW: decoupled weight decay (Adam's L2 term is scaled away by the adaptive step).
    opt = torch.optim.AdamW(gen.parameters(), lr=mt.lr, weight_decay=mt.weight_decay)
    adversarial = mm.kind == "adversarial-tcn"
    disc = MouthDiscriminator(mm) if adversarial else None
    disc_opt = (torch.optim.Adam(disc.parameters(), lr=mt.disc_lr, betas=(0.5, 0.999))
                if disc is not None else None)

    start_epoch = 0
    history: list[dict[str, float]] = []
    best: dict[str, Any] | None = None  # {"epoch", "val_loss", "model"} of the best epoch so far
    resume_from = last_path if last_path.is_file() else ckpt_path
    if resume and resume_from.is_file():
        ckpt = load_checkpoint(resume_from)
        old = from_dict(AnchorConfig, ckpt["config"])
        if old.mouth_model != mm:
            raise MouthError(f"{resume_from}: --resume with a different mouth_model config")
        gen.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        if disc is not None and disc_opt is not None:
            disc.load_state_dict(ckpt["discriminator"])
            disc_opt.load_state_dict(ckpt["disc_optimizer"])
        norm = uncalibrated(ckpt)
        start_epoch = int(ckpt["epoch"])
        history = list(ckpt.get("history", []))
        if ckpt_path.is_file() and resume_from != ckpt_path:
            b = load_checkpoint(ckpt_path)
            best = {"epoch": int(b["epoch"]), "val_loss": float(b["val_loss"]), "model": b["model"]}
        else:
            best = {"epoch": start_epoch, "val_loss": float(ckpt["val_loss"]), "model": ckpt["model"]}
        if 0 < int(best["epoch"]) <= len(history):  # the selection score of the kept epoch
            h = history[int(best["epoch"]) - 1]
            best["score"] = selection_score({"mse": h["val_loss"], "lip_corr": h.get("lip_corr", 0.0)}, mt)
        log.info("resuming %s from epoch %d", resume_from, start_epoch)
    elif base_ckpt is not None:
        if resume:
            log.warning("%s does not exist; fine-tuning %s from its start", resume_from, base)
        gen.load_state_dict(base_ckpt["model"])
        if disc is not None and base_ckpt.get("discriminator"):
            disc.load_state_dict(base_ckpt["discriminator"])
        norm = uncalibrated(base_ckpt)
        log.info("fine-tuning %s (%s) on %d clips", base, mm.kind, len(ds.clips))
    else:
        if resume:
            log.warning("%s does not exist; starting from scratch", resume_from)
        norm = fit_normalisation(ds, cfg)

    x_raw, y_raw, m_raw = train_windows(ds, cfg)
    if mm.window_cmn:
        x_raw = x_raw - x_raw.mean(axis=1, keepdims=True)
        if base_ckpt is None and not (resume and resume_from.is_file()):
            # Standardise what the network sees: the mean-free windows.
            rows = x_raw.reshape(-1, x_raw.shape[-1]).astype(np.float64)
            norm = dataclasses.replace(norm, mfcc_mean=rows.mean(0).astype(np.float32),
                                       mfcc_std=np.maximum(rows.std(0), 1e-6).astype(np.float32))
    x_all = torch.from_numpy((x_raw - norm.mfcc_mean) / norm.mfcc_std)
    y_all = torch.from_numpy(y_raw / norm.target_scale)
    m_all = torch.from_numpy(m_raw)
    n = len(x_all)
    log.info("%s: %d training windows from %d clips, %d epochs, lookahead %.0f ms",
             mm.kind, n, len(ds.clips), mt.epochs, cfg.streaming.lookahead_ms)

    inference = MouthInference(gen, torch.from_numpy(norm.mfcc_mean),
                               torch.from_numpy(norm.mfcc_std), torch.from_numpy(norm.target_scale),
                               window_cmn=mm.window_cmn)
    val_loss = float(history[-1]["val_loss"]) if history else float("nan")
    augment = augmentation_on(mt)

    def save(path: Path, epoch: int, model: dict[str, Any], loss: float, gain: float = 1.0) -> None:
        saved_norm = dataclasses.replace(norm, target_scale=norm.target_scale * np.float32(gain))
        _atomic_save({
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "kind": mm.kind,
            "config": to_dict(cfg), "epoch": epoch, "model": model,
            "optimizer": opt.state_dict(),
            "discriminator": disc.state_dict() if disc is not None else None,
            "disc_optimizer": disc_opt.state_dict() if disc_opt is not None else None,
            "norm": saved_norm.to_checkpoint(), "amplitude_gain": gain, "val_loss": loss,
            "history": history,
            "dataset": str(ds.path), "clips": [c.name for c in ds.clips],
            # The basis the outputs live in: what a fine-tune's dataset must share.
            "pca": {"mean": torch.from_numpy(np.asarray(ds.pca_mean, np.float32)),
                    "components": torch.from_numpy(np.asarray(ds.pca_components, np.float32))},
            "base": base_info,
        }, path)

    def stale() -> int:
        return 0 if best is None else len(history) - int(best["epoch"])

    if base_ckpt is not None and best is None:
        # Epoch 0 is the base model itself, scored on this data's held-out split.
        gen.eval()
        m0 = heldout_metrics(ds, predict_clips(ds, torch_infer(inference), cfg), mt.val_fraction)
        best = {"epoch": 0, "val_loss": m0["mse"], "score": selection_score(m0, mt),
                "model": {k: v.detach().clone() for k, v in gen.state_dict().items()}}
        log.info("%s base model: held-out MSE %.4g, lip corr %.3f", mm.kind, m0["mse"], m0["lip_corr"])
    bar = progress_bar(range(start_epoch, mt.epochs), desc=f"train {mm.kind}", unit="epoch",
               disable=not progress, initial=start_epoch, total=mt.epochs)
    last_epoch = start_epoch
    for epoch in bar:
        if mt.patience > 0 and stale() >= mt.patience:
            log.info("%s: no better held-out %s for %d epochs; stopping at epoch %d", mm.kind, mt.select_by,
                     stale(), epoch)
            break
        t0, c0 = time.monotonic(), time.process_time()
        # Seeded per epoch, so a resumed run shuffles exactly like an uninterrupted one.
        torch.manual_seed(mt.seed + epoch)
        aug_gen = torch.Generator().manual_seed(10_000 + mt.seed + epoch)
        perm = np.random.default_rng(mt.seed + epoch).permutation(n)
        gen.train()
        if disc is not None:
            disc.train()
        total, count = 0.0, 0
        for b0 in range(0, n, mt.batch_size):
            idx = torch.from_numpy(perm[b0 : b0 + mt.batch_size])
            x, y, m = x_all[idx], y_all[idx], m_all[idx]
            if augment:
                x = augment_mfcc(x, mt, aug_gen)
            pred = gen(x)  # (B, 50, 10)
            l2 = masked_mse(pred, y, m)
            if disc is not None and disc_opt is not None:
                # Discriminator: real (audio, mouth) pairs vs generated ones; silence-padded
                # frames show the same zeros in both so they carry no cue.
                fake = pred * m.unsqueeze(-1)
                d_real = disc(x, y)
                d_fake = disc(x, fake.detach())
                d_loss = 0.5 * (masked_bce(d_real, True, m) + masked_bce(d_fake, False, m))
                disc_opt.zero_grad(set_to_none=True)
                d_loss.backward()
                disc_opt.step()
                g_adv = disc(x, fake)
                loss = (mt.gan_weight * masked_bce(g_adv, True, m) + mt.l2_weight * l2
                        + mt.interframe_weight * interframe_mse(pred, y, m))
            else:
                loss = mt.l2_weight * l2
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(gen.parameters(), 5.0)
            opt.step()
            total += float(l2.detach()) * float(m.sum())
            count += int(m.sum())
        gen.eval()
        metrics = heldout_metrics(ds, predict_clips(ds, torch_infer(inference), cfg), mt.val_fraction)
        val_loss = metrics["mse"]
        train_mse = total / max(1, count) * float(np.mean(norm.target_scale**2))
        history.append({"epoch": float(epoch + 1), "train_mse": train_mse, "val_loss": val_loss,
                        "lip_corr": metrics["lip_corr"],
                        "seconds": time.monotonic() - t0, "cpu_seconds": time.process_time() - c0})
        last_epoch = epoch + 1
        score = selection_score(metrics, mt)
        improved = best is None or score < float(best.get("score", best["val_loss"]))
        if improved:
            best = {"epoch": epoch + 1, "val_loss": val_loss, "score": score,
                    "model": {k: v.detach().clone() for k, v in gen.state_dict().items()}}
        assert best is not None
        bar.set_postfix(train=f"{train_mse:.3g}", val=f"{val_loss:.3g}", best=int(best["epoch"]))
        log.info("%s epoch %d/%d: train MSE %.4g, val MSE %.4g, lip corr %.3f%s (%.1f s wall, %.1f s CPU)",
                 mm.kind, epoch + 1, mt.epochs, train_mse, val_loss, metrics["lip_corr"],
                 " *best*" if improved else "", history[-1]["seconds"], history[-1]["cpu_seconds"])
        if (epoch + 1) % max(1, mt.checkpoint_every) == 0 and epoch + 1 < mt.epochs:
            save(last_path, epoch + 1, gen.state_dict(), val_loss)
    bar.close()
    if last_epoch > start_epoch:
        save(last_path, last_epoch, gen.state_dict(), val_loss)
    if best is None:  # zero epochs: the untrained weights
        best = {"epoch": start_epoch, "val_loss": val_loss, "model": gen.state_dict()}
    gain = 1.0
    if mt.calibrate_amplitude:
        gen.load_state_dict(best["model"])
        gen.eval()
        gain = amplitude_gain(ds, predict_clips(ds, torch_infer(inference), cfg), mt.val_fraction)
        log.info("%s: mouth amplitude x%.2f (predicted inner-lip gap's spread brought to the "
                 "real one's on the train split)", mm.kind, gain)
    # The best epoch's weights with the whole history: what eval and export read.
    save(ckpt_path, int(best["epoch"]), best["model"], float(best["val_loss"]), gain)
    return TrainResult(ckpt_path, int(best["epoch"]), float(best["val_loss"]), history)


def slim_checkpoint(src: str | Path, dst: str | Path) -> Path:
    """A checkpoint to ship: weights in float16 (the generator and its discriminator), the
    normalisation, PCA basis, config and history; no optimizer state. Loads like any other
    (load_state_dict casts back to float32) and fine-tunes from where `src` ended."""
    ckpt = load_checkpoint(src)

    def half(state: dict[str, Any] | None) -> dict[str, Any] | None:
        if state is None:
            return None
        return {k: v.half() if v.is_floating_point() else v for k, v in state.items()}

    slim = {k: v for k, v in ckpt.items() if k not in ("optimizer", "disc_optimizer")}
    slim["model"] = half(ckpt["model"])
    slim["discriminator"] = half(ckpt.get("discriminator"))
    slim["optimizer"] = None
    slim["disc_optimizer"] = None
    _atomic_save(slim, Path(dst))
    return Path(dst)


def calibrate_checkpoint(path: str | Path, ds: Dataset) -> float:
    """Give an already trained checkpoint the amplitude calibration training now does (on the
    train split of the clips it was trained on, looked up in `ds`); returns the gain. A
    checkpoint that has a gain already is recalibrated from its uncalibrated scale."""
    from anchor.mouth.models import inference_from_checkpoint

    ckpt = load_checkpoint(path)
    cfg = from_dict(AnchorConfig, ckpt["config"])
    norm = uncalibrated(ckpt)
    ckpt["norm"] = norm.to_checkpoint()
    ckpt["amplitude_gain"] = 1.0
    _atomic_save(ckpt, Path(path))
    module, _, _ = inference_from_checkpoint(path)
    train_ds = ds.subset(ckpt.get("clips") or [c.name for c in ds.clips])
    gain = amplitude_gain(train_ds, predict_clips(train_ds, torch_infer(module), cfg),
                          cfg.mouth_train.val_fraction)
    ckpt["norm"] = dataclasses.replace(norm, target_scale=norm.target_scale * np.float32(gain)).to_checkpoint()
    ckpt["amplitude_gain"] = gain
    _atomic_save(ckpt, Path(path))
    return gain
