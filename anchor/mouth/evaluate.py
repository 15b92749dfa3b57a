"""Held-out scoring of every trained mouth model: Table 1 (MSE, MAE, inter-frame MSE), Table 2
(inference time for one minute of audio) and Fig. 5 (MSE at each position of the 50-frame window).

All errors are in PCA units on the held-out split (the last `val_fraction` of every clip) of the
dataset. Table 1 uses the streaming scheme (`windowed_inference` over each whole clip, scored on
held-out frames). Fig. 5 predicts every held-out frame at every output position (stride-1
windows, silence rows outside the clip), so each position is scored on the same frames.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from anchor.audio.mfcc import silence_mfcc
from anchor.config import AnchorConfig, to_dict
from anchor.errors import MouthError
from anchor.mouth.streaming import windowed_inference
from anchor.train.dataset import Dataset, load_dataset

log = logging.getLogger(__name__)

InferFn = Callable[[np.ndarray], np.ndarray]


@dataclass
class ModelResult:
    kind: str
    checkpoint: str
    epoch: int
    mse: float
    mae: float
    interframe_mse: float
    frames: int
    lip_corr: float  # correlation of predicted / true inner-lip opening, held-out frames
    seconds_per_minute: float  # wall time to infer 60 s of audio (CPU, one batch of windows)
    position_mse: list[float] = field(default_factory=list)  # (window_out,)


def find_checkpoints(runs: str | Path) -> list[Path]:
    """runs/<kind>/checkpoint.pt for every trained model, in the paper's table order."""
    from anchor.mouth.models import KINDS

    root = Path(runs)
    found = sorted(root.glob("*/checkpoint.pt"))
    order = {k: i for i, k in enumerate(KINDS)}
    return sorted(found, key=lambda p: (order.get(p.parent.name, len(order)), p.parent.name))


def window_position_mse(ds: Dataset, infer: InferFn, cfg: AnchorConfig, val_fraction: float,
                        batch_size: int = 64) -> np.ndarray:
    """(window_out,) MSE at each output position over the same frames: every held-out frame.

    Each held-out frame f is predicted at every position p by the window starting at f - p
    (stride 1); audio outside the clip is the silence row, as at the edges of a stream.
    """
    mm = cfg.mouth_model
    w = mm.window_out
    r = mm.window_in // w
    pad_row = silence_mfcc(cfg.audio).reshape(1, -1).astype(np.float32)
    se = np.zeros(w)
    cnt = np.zeros(w)
    for clip in ds.clips:
        _, val = clip.split(val_fraction)
        if not len(val):
            continue
        pad = np.repeat(pad_row, (w - 1) * r, 0)
        mfcc = np.concatenate([pad, clip.mfcc[: clip.frames * r], pad])  # frame f -> f + w - 1
        starts = list(range(val.start - w + 1, val.stop))  # every window touching a held-out frame
        for b0 in range(0, len(starts), batch_size):
            chunk = starts[b0 : b0 + batch_size]
            x = np.stack([mfcc[(s + w - 1) * r : (s + 2 * w - 1) * r] for s in chunk])
            pred = np.asarray(infer(x.astype(np.float32)), dtype=np.float64)
            for i, s in enumerate(chunk):
                f = np.arange(s, s + w)
                in_val = (f >= val.start) & (f < val.stop)
                y = clip.mouth_pca[f[in_val]].astype(np.float64)
                se[in_val] += ((pred[i][in_val] - y) ** 2).mean(axis=1)
                cnt[in_val] += 1
    if not cnt.any():
        raise MouthError(f"dataset {ds.path}: no held-out frames (val_fraction {val_fraction})")
    return se / np.maximum(cnt, 1)


def seconds_per_minute(infer: InferFn, ds: Dataset, cfg: AnchorConfig, repeats: int = 10) -> float:
    """Best-of-`repeats` wall time to turn one minute of (real, tiled) MFCC into mouth features.

    The minimum, not the median: on a shared machine the other runs only ever add time.
    """
    rows = int(round(60 * cfg.audio.feature_rate))
    src = np.concatenate([c.mfcc for c in ds.clips])
    mfcc = np.resize(src, (rows, src.shape[1])).astype(np.float32)
    pad = silence_mfcc(cfg.audio)
    n_windows = -(-rows // (4 * cfg.streaming.hop_frames)) + 1

    def once() -> float:
        t0 = time.perf_counter()
        windowed_inference(mfcc, infer, cfg.streaming, cfg.mouth_model, pad, batch_size=n_windows)
        return time.perf_counter() - t0

    once()  # warm-up (allocations, lazy init)
    return min(once() for _ in range(repeats))


def evaluate_checkpoint(path: Path, ds: Dataset, cfg: AnchorConfig) -> ModelResult:
    """Score one checkpoint; `cfg` supplies audio and streaming, the checkpoint its model."""
    import dataclasses

    import torch

    from anchor.mouth.models import inference_from_checkpoint
    from anchor.train.mouth import heldout_metrics, predict_clips, torch_infer

    module, ckpt_cfg, ckpt = inference_from_checkpoint(path)
    run_cfg = dataclasses.replace(cfg, mouth_model=ckpt_cfg.mouth_model)
    val_fraction = ckpt_cfg.mouth_train.val_fraction
    torch.set_num_threads(max(1, cfg.mouth_train.threads))
    infer = torch_infer(module)
    metrics = heldout_metrics(ds, predict_clips(ds, infer, run_cfg), val_fraction)
    pos = window_position_mse(ds, infer, run_cfg, val_fraction)
    spm = seconds_per_minute(infer, ds, run_cfg)
    return ModelResult(
        kind=ckpt_cfg.mouth_model.kind, checkpoint=str(path), epoch=int(ckpt.get("epoch", 0)),
        mse=metrics["mse"], mae=metrics["mae"], interframe_mse=metrics["interframe_mse"],
        frames=int(metrics["frames"]), lip_corr=metrics["lip_corr"], seconds_per_minute=spm, position_mse=pos.tolist(),
    )


def evaluate_runs(dataset: str | Path, runs: str | Path, cfg: AnchorConfig) -> list[ModelResult]:
    paths = find_checkpoints(runs)
    if not paths:
        raise MouthError(f"{runs}: no trained mouth models (expected {runs}/<kind>/checkpoint.pt)")
    ds = load_dataset(dataset)
    results = []
    for p in paths:
        log.info("evaluating %s", p)
        results.append(evaluate_checkpoint(p, ds, cfg))
    return results


def format_table(results: list[ModelResult]) -> str:
    head = (f"{'model':<16} {'epoch':>5} {'MSE':>10} {'MAE':>10} {'inter-frame MSE':>16} "
            f"{'lip corr':>8} {'1 min audio (ms)':>17}")
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(
            f"{r.kind:<16} {r.epoch:>5} {r.mse:>10.3e} {r.mae:>10.3e} {r.interframe_mse:>16.3e} "
            f"{r.lip_corr:>8.3f} {1000 * r.seconds_per_minute:>17.1f}"
        )
    return "\n".join(lines)


def plot_position_mse(results: list[ModelResult], cfg: AnchorConfig, path: str | Path) -> Path:
    """Fig. 5: MSE against output position in the window, the kept span shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4))
    st = cfg.streaming
    ax.axvspan(st.keep_start - 0.5, st.keep_start + st.hop_frames - 0.5, color="0.9",
               label=f"kept frames (hop {st.hop_frames})")
    for r in results:
        ax.plot(np.arange(len(r.position_mse)), r.position_mse, marker=".", label=r.kind)
    ax.set_xlabel("position in the 50-frame output window")
    ax.set_ylabel("MSE (PCA units, held-out frames)")
    ax.set_title("Error across the output window (cf. paper Fig. 5)")
    ax.legend()
    fig.tight_layout()
    tmp = out.with_name(out.name + f".tmp{os.getpid()}.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, out)
    return out


def results_json(results: list[ModelResult], cfg: AnchorConfig, dataset: str | Path) -> dict[str, Any]:
    return {
        "dataset": str(dataset),
        "lookahead_ms": cfg.streaming.lookahead_ms,
        "config": to_dict(cfg),
        "models": [r.__dict__ for r in results],
    }


def write_json(data: dict[str, Any], path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, out)
    return out
