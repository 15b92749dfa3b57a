"""Mouth models on people they never heard, and fine-tuned on one presenter.

    anchor prepare <every real clip in ../shared/media> -o data/real_ds
    anchor bench mouth_generalise --dataset data/real_ds

1. Leave-speaker-out (`anchor.train.generalise`): FOLDS folds of whole speakers; each speaker is
   scored by the model of the fold that held them out, against the audio-energy baseline and a
   still mouth. Full mode also trains the folds with per-window CMN (`mouth_model.window_cmn`)
   switched the other way ("alt"). The base folds are also scored through the live window
   scheme (hop 1 frame, 80 ms lookahead), where the server runs them.
2. Fine-tuning, per presenter (`presenters/` in the shared media): the first 80 % of the
   recording is the person's training data (its last 15 % picks the best epoch), the last 20 %
   is the test. Compared: the generic fold model that never heard the presenter, a model trained
   from scratch on the 80 %, and that generic model fine-tuned on it (`train_mouth(base=...)`).

Fold and fine-tune checkpoints are kept under benchmarks/results/tmp/mouth_generalise/<config key>/ and reused,
so a rerun only rescores. MSE and amplitude depend on `mouth_train.calibrate_amplitude` (one gain
on every output); the correlations and lags do not.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np

from anchor.config import AnchorConfig, StreamingConfig, to_dict
from benchmarks.common import BenchOptions, pyplot, save_figure, skipped
from benchmarks.inputs import config_key

log = logging.getLogger(__name__)

FOLDS = 3
TEST_FRACTION = 0.2
LIVE_STREAMING = {"hop_frames": 1, "right_context_frames": 2}  # the server's 80 ms scheme


def runs_root(cfg: AnchorConfig, opts: BenchOptions) -> Path:
    """Beside the results, in the git-ignored tmp/ (benchmarks/results/tmp/ by default)."""
    key = config_key({"mouth_model": to_dict(cfg.mouth_model), "mouth_train": to_dict(cfg.mouth_train),
                      "streaming": to_dict(cfg.streaming)})
    return opts.out.parent / "tmp" / "mouth_generalise" / key


def head_of(clip: Any, fraction: float) -> Any:
    """The clip's first `fraction` of frames, as a training clip of its own."""
    n = int(round(clip.frames * fraction))
    return dataclasses.replace(
        clip, frames=n, mfcc=clip.mfcc[: 4 * n], mouth_pca=clip.mouth_pca[:n], mouth=clip.mouth[:n],
        landmarks=clip.landmarks[:n], boxes=clip.boxes[:n], crop_landmarks=clip.crop_landmarks[:n],
        norm_center=clip.norm_center[:n], norm_angle=clip.norm_angle[:n],
        norm_scale=clip.norm_scale[:n],
    )


def score_tail(clip: Any, pred: np.ndarray, components: np.ndarray, start: int) -> dict[str, float]:
    """Inner-lip gap r, best lag, amplitude, MSE and still-mouth MSE on frames [start:]."""
    from anchor.train.generalise import score_speaker

    tail = head_of_tail(clip, start)
    s = score_speaker(clip.name, -1, [tail], [pred[start:]], components)
    return {"lip_corr": s.lip_corr, "best_lag": s.best_lag, "best_lag_corr": s.best_lag_corr,
            "energy_corr": s.energy_corr, "amplitude": s.amplitude, "mse": s.mse,
            "still_mse": s.still_mse, "frames": s.frames}


def head_of_tail(clip: Any, start: int) -> Any:
    """Frames [start:] of a clip (its audio() still reads the whole file: offset handled)."""

    class Tail:
        def __init__(self) -> None:
            self.name, self.frames = clip.name, clip.frames - start
            self.mouth, self.mouth_mean = clip.mouth[start:], clip.mouth_mean
            self.mouth_pca = clip.mouth_pca[start:]

        def audio(self) -> np.ndarray:
            return clip.audio()[start * 640 :]

    return Tail()


def leave_speaker_out_figures(ds: Any, cfg: AnchorConfig, root: Path, quiet: bool) -> dict[str, Any]:
    from anchor.train.generalise import leave_speaker_out, results_json

    result = leave_speaker_out(ds, root, cfg, folds=FOLDS, progress=not quiet)
    out = results_json(result, cfg, ds.path)
    out.pop("config")
    return out


def run(cfg: AnchorConfig, opts: BenchOptions) -> dict[str, Any]:
    try:
        import torch
    except ImportError:
        return skipped("needs torch (pip install 'anchor[train]')")
    from anchor.mouth.models import inference_from_checkpoint
    from anchor.train.dataset import load_dataset
    from anchor.train.mouth import predict_clips, resolve_config, torch_infer, train_mouth
    from anchor.train.speakers import speaker_of

    if opts.dataset is None:
        return skipped("needs --dataset DATASET: `anchor prepare` of the shared media's real clips")
    ds = load_dataset(opts.dataset)
    cfg = resolve_config(cfg)
    if opts.tiny:
        cfg = dataclasses.replace(cfg, mouth_train=dataclasses.replace(
            cfg.mouth_train, epochs=1, finetune_epochs=1))
    root = runs_root(cfg, opts)
    figures: dict[str, Any] = {"dataset": str(opts.dataset), "folds": FOLDS, "runs": str(root),
                               "lookahead_ms": cfg.streaming.lookahead_ms}
    figures["base"] = leave_speaker_out_figures(ds, cfg, root / "base", opts.tiny)

    live_cfg = dataclasses.replace(cfg, streaming=StreamingConfig(**{
        **to_dict(cfg.streaming), **LIVE_STREAMING}))
    figures["base_live"] = leave_speaker_out_figures(ds, live_cfg, root / "base", opts.tiny)
    figures["base_live"]["streaming"] = to_dict(live_cfg.streaming)

    if not opts.quick:
        # The same with per-window CMN switched the other way: what it is worth.
        flip = not cfg.mouth_model.window_cmn
        alt_cfg = dataclasses.replace(cfg, mouth_model=dataclasses.replace(cfg.mouth_model,
                                                                            window_cmn=flip))
        figures["alt"] = leave_speaker_out_figures(ds, alt_cfg, root / f"cmn_{flip}", opts.tiny)
        figures["alt"]["change"] = f"mouth_model.window_cmn = {str(flip).lower()}"

    # Fine-tuning on each presenter, with the fold model that never heard them as the base.
    folds = figures["base"]["folds"]
    presenters = [c for c in ds.clips if c.name.startswith(("dfrf_", "edtalk_"))]
    rows = []
    torch.set_num_threads(max(1, cfg.mouth_train.threads))
    for clip in presenters:
        fold = next(k for k, f in enumerate(folds) if clip.name in f)
        generic = Path(figures["base"]["checkpoints"][fold])
        start = clip.frames - int(round(clip.frames * TEST_FRACTION))
        person = dataclasses.replace(ds, clips=[head_of(clip, 1 - TEST_FRACTION)])
        row: dict[str, Any] = {"presenter": clip.name, "speaker": speaker_of(clip.name),
                               "fold": fold, "train_s": start / cfg.video.fps,
                               "test_s": (clip.frames - start) / cfg.video.fps}
        models = {"generic": generic}
        for name, base in (("scratch", None), ("finetuned", generic)):
            out = root / "person" / clip.name / name
            ckpt = out / cfg.mouth_model.kind / "checkpoint.pt"
            if not ckpt.is_file():
                train_mouth(person, out, cfg, progress=not opts.tiny, base=base)
            models[name] = ckpt
        for name, ckpt in models.items():
            module, ckpt_cfg, meta = inference_from_checkpoint(ckpt)
            run_cfg = dataclasses.replace(cfg, mouth_model=ckpt_cfg.mouth_model)
            pred = predict_clips(dataclasses.replace(ds, clips=[clip]), torch_infer(module), run_cfg)[0]
            row[name] = {**score_tail(clip, pred, ds.pca_components, start),
                         "epoch": int(meta.get("epoch", 0))}
        rows.append(row)
        log.info("%s: lip r generic %.3f, scratch %.3f, fine-tuned %.3f", clip.name,
                 row["generic"]["lip_corr"], row["scratch"]["lip_corr"], row["finetuned"]["lip_corr"])
    figures["finetune"] = rows
    return figures


def summary(figures: dict[str, Any]) -> str:
    lines = []
    for key, title in (("base", f"leave-speaker-out, {figures['lookahead_ms']:.0f} ms lookahead"),
                       ("base_live", "the same models, live windows (hop 1, 80 ms lookahead)"),
                       ("alt", "leave-speaker-out, with")):
        part = figures.get(key)
        if not part:
            continue
        lines.append(f"{title} {part['change']}:" if key == "alt" else f"{title}:")
        lines.append(f"  {'speaker':<34} {'frames':>6} {'lip r':>6} {'lag':>4} {'energy r':>8} "
                     f"{'ampl':>5} {'MSE':>8} {'still':>8}")
        for s in part["speakers"]:
            lines.append(f"  {s['speaker']:<34} {s['frames']:>6} {s['lip_corr']:>6.3f} "
                         f"{s['best_lag']:>+4d} {s['energy_corr']:>8.3f} {s['amplitude']:>5.2f} "
                         f"{s['mse']:>8.2e} {s['still_mse']:>8.2e}")
        m = part["mean"]
        lines.append(f"  {'mean over speakers':<34} {'':>6} {m['lip_corr']:>6.3f} "
                     f"{m['best_lag']:>+4.1f} {m['energy_corr']:>8.3f} {m['amplitude']:>5.2f} "
                     f"{m['mse']:>8.2e} {m['still_mse']:>8.2e}")
    if figures.get("finetune"):
        lines.append("fine-tuning on the first 80 % of a presenter, scored on the last 20 %:")
        lines.append(f"  {'presenter':<36} {'model':<10} {'lip r':>6} {'lag':>4} {'ampl':>5} "
                     f"{'MSE':>8} {'still':>8} {'epoch':>5}")
        for row in figures["finetune"]:
            for name in ("generic", "scratch", "finetuned"):
                r = row[name]
                lines.append(f"  {row['presenter']:<36} {name:<10} {r['lip_corr']:>6.3f} "
                             f"{r['best_lag']:>+4d} {r['amplitude']:>5.2f} {r['mse']:>8.2e} "
                             f"{r['still_mse']:>8.2e} {r['epoch']:>5}")
    return "\n".join(lines)


def plot(figures: dict[str, Any], out_dir: Path) -> list[Path]:
    plt = pyplot()
    parts = [k for k in ("base", "base_live", "alt") if figures.get(k)]
    speakers = [s["speaker"] for s in figures["base"]["speakers"]]
    fig, ax = plt.subplots(figsize=(12, 4.5))
    width = 0.8 / (len(parts) + 1)
    x = np.arange(len(speakers))
    for i, key in enumerate(parts):
        by = {s["speaker"]: s["lip_corr"] for s in figures[key]["speakers"]}
        ax.bar(x + i * width, [by.get(s, 0.0) for s in speakers], width, label=f"model ({key})")
    ax.bar(x + len(parts) * width, [s["energy_corr"] for s in figures["base"]["speakers"]], width,
           color="0.6", label="audio-energy baseline")
    ax.axhline(0.5, color="k", lw=0.6, ls=":")
    ax.set_xticks(x + 0.4 - width / 2, speakers, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("r (predicted vs real inner-lip gap)")
    ax.set_title("leave-speaker-out: every speaker scored by a model that never heard them")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return [save_figure(fig, out_dir / "mouth_generalise.png")]
