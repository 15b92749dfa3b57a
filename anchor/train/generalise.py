"""Does the mouth model work for people it has never heard? Leave-speaker-out scoring.

The clips are split into folds of whole speakers (`anchor.train.speakers`). Each fold's model is
trained on the other folds (validated, for its best epoch, on the last `val_fraction` of those
clips) and then scored on every frame of the held-out speakers, who took no part in training or
model selection. Per speaker:

- `lip_corr`: correlation of the predicted inner-lip gap with the real one (dlib landmarks of
  the video, normalised mouth; signed, so a closed mouth is not mistaken for an open one);
- `best_lag`: the shift of the prediction, in frames, with the highest correlation within
  +-`max_lag` (positive: the predicted mouth is late);
- `energy_corr`: the same correlation for the audio-energy baseline (log RMS per frame);
- `amplitude`: the predicted gap's spread over the real one's (under-articulation shows < 1);
- MSE and inter-frame MSE in PCA units, next to predicting a still mouth (the clip's mean).

The PCA basis is the dataset's, fitted on the train split of every clip, held-out speakers
included: a 10-D linear basis of mouth shapes, not anything that maps audio to a mouth.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from anchor.config import AnchorConfig, to_dict
from anchor.errors import MouthError
from anchor.train.dataset import ClipData, Dataset
from anchor.train.speakers import is_generated, speaker_folds, speaker_of

log = logging.getLogger(__name__)

MAX_LAG = 5  # frames


@dataclass(frozen=True)
class SpeakerScore:
    speaker: str
    fold: int
    clips: list[str]
    frames: int
    mse: float
    interframe_mse: float
    still_mse: float  # predicting the clip's mean mouth
    lip_corr: float
    best_lag: int  # frames; positive = the prediction is late
    best_lag_corr: float
    energy_corr: float  # audio-energy baseline
    amplitude: float  # std of the predicted gap / std of the real gap (1 = fully articulated)


@dataclass
class LeaveSpeakerOut:
    folds: list[list[str]]
    checkpoints: list[str]
    scores: list[SpeakerScore] = field(default_factory=list)

    def mean(self, key: str) -> float:
        return float(np.mean([getattr(s, key) for s in self.scores]))


def real_gap(clip: ClipData) -> np.ndarray:
    """The clip's measured inner-lip gap per frame (T,), relative to its mean mouth."""
    from anchor.train.mouth import lip_opening

    return lip_opening(clip.mouth.astype(np.float64) - clip.mouth_mean.astype(np.float64))


def frame_energy(audio: np.ndarray, frames: int, samples_per_frame: int = 640) -> np.ndarray:
    """Log RMS energy of each video frame's audio (T,), floored at -80 dB."""
    x = np.zeros(frames * samples_per_frame, np.float64)
    n = min(len(audio), len(x))
    x[:n] = audio[:n]
    rms = np.sqrt(np.mean(x.reshape(frames, samples_per_frame) ** 2, axis=1))
    return 20 * np.log10(np.maximum(rms, 1e-4))


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def lagged_correlations(pred: list[np.ndarray], real: list[np.ndarray], max_lag: int) -> dict[int, float]:
    """lag -> correlation of pred[t + lag] with real[t], pooled over clips."""
    out: dict[int, float] = {}
    for lag in range(-max_lag, max_lag + 1):
        ps, rs = [], []
        for p, r in zip(pred, real, strict=True):
            if len(p) <= abs(lag) + 2:
                continue
            if lag >= 0:
                ps.append(p[lag:])
                rs.append(r[: len(r) - lag])
            else:
                ps.append(p[: len(p) + lag])
                rs.append(r[-lag:])
        out[lag] = correlation(np.concatenate(ps), np.concatenate(rs)) if ps else 0.0
    return out


def score_speaker(speaker: str, fold: int, clips: list[ClipData], preds: list[np.ndarray],
                  components: np.ndarray, max_lag: int = MAX_LAG) -> SpeakerScore:
    from anchor.train.mouth import lip_opening

    pred_gap = [lip_opening(p.astype(np.float64) @ components) for p in preds]
    gap = [real_gap(c) for c in clips]
    energy = [frame_energy(c.audio(), c.frames) for c in clips]
    y = np.concatenate([c.mouth_pca for c in clips]).astype(np.float64)
    p = np.concatenate(preds).astype(np.float64)
    d_se = sum(float(((np.diff(pp, axis=0) - np.diff(c.mouth_pca, axis=0)) ** 2).sum())
               for pp, c in zip(preds, clips, strict=True))
    nd = sum(max(0, c.frames - 1) for c in clips) * y.shape[1]
    lags = lagged_correlations(pred_gap, gap, max_lag)
    best = max(lags, key=lambda k: (lags[k], -abs(k)))
    return SpeakerScore(
        speaker=speaker, fold=fold, clips=[c.name for c in clips], frames=int(len(y)),
        mse=float(((p - y) ** 2).mean()), interframe_mse=d_se / max(1, nd),
        still_mse=float((y**2).mean()), lip_corr=lags[0], best_lag=int(best),
        best_lag_corr=lags[best],
        energy_corr=correlation(np.concatenate(energy), np.concatenate(gap)),
        amplitude=float(np.concatenate(pred_gap).std() / max(1e-9, np.concatenate(gap).std())),
    )


def leave_speaker_out(ds: Dataset, out_root: str | Path, cfg: AnchorConfig, folds: int = 3,
                      progress: bool = True) -> LeaveSpeakerOut:
    """Train one model per fold (OUT_ROOT/fold<k>/<kind>/checkpoint.pt) and score the speakers
    it never heard. A fold whose checkpoint already exists is not retrained."""
    import torch

    from anchor.mouth.models import inference_from_checkpoint
    from anchor.train.mouth import predict_clips, torch_infer, train_mouth

    generated = [c.name for c in ds.clips if is_generated(c.name)]
    if generated:  # another system's mouths are not a person's: neither taught nor scored
        log.info("leaving out %d generated clips: %s", len(generated), ", ".join(generated))
        ds = ds.subset([c.name for c in ds.clips if c.name not in set(generated)])
    try:
        fold_clips = speaker_folds({c.name: c.frames for c in ds.clips}, folds)
    except ValueError as exc:
        raise MouthError(f"dataset {ds.path}: {exc}") from exc
    result = LeaveSpeakerOut(fold_clips, [])
    for k, held in enumerate(fold_clips):
        train = [c.name for c in ds.clips if c.name not in set(held)]
        root = Path(out_root) / f"fold{k}"
        ckpt = root / cfg.mouth_model.kind / "checkpoint.pt"
        log.info("fold %d/%d: training on %d clips, holding out %d speakers (%d clips)", k + 1,
                 folds, len(train), len({speaker_of(c) for c in held}), len(held))
        if not ckpt.is_file():
            train_mouth(ds.subset(train), root, cfg, progress=progress)
        result.checkpoints.append(str(ckpt))
        module, ckpt_cfg, _ = inference_from_checkpoint(ckpt)
        torch.set_num_threads(max(1, cfg.mouth_train.threads))
        held_ds = ds.subset(held)
        run_cfg = dataclasses.replace(cfg, mouth_model=ckpt_cfg.mouth_model)
        preds = predict_clips(held_ds, torch_infer(module), run_cfg)
        by_speaker: dict[str, list[int]] = {}
        for i, c in enumerate(held_ds.clips):
            by_speaker.setdefault(speaker_of(c.name), []).append(i)
        for speaker, idx in by_speaker.items():
            score = score_speaker(speaker, k, [held_ds.clips[i] for i in idx],
                                  [preds[i] for i in idx], ds.pca_components)
            log.info("fold %d %s: lip corr %.3f (best %+d frames: %.3f), energy %.3f", k, speaker,
                     score.lip_corr, score.best_lag, score.best_lag_corr, score.energy_corr)
            result.scores.append(score)
    result.scores.sort(key=lambda s: s.speaker)
    return result


def format_scores(result: LeaveSpeakerOut) -> str:
    head = (f"{'speaker':<34} {'fold':>4} {'frames':>6} {'lip r':>6} {'lag':>4} {'r@lag':>6} "
            f"{'energy r':>8} {'ampl':>5} {'MSE':>9} {'still MSE':>9}")
    rows = [head, "-" * len(head)]
    for s in result.scores:
        rows.append(f"{s.speaker:<34} {s.fold:>4} {s.frames:>6} {s.lip_corr:>6.3f} {s.best_lag:>+4d} "
                    f"{s.best_lag_corr:>6.3f} {s.energy_corr:>8.3f} {s.amplitude:>5.2f} {s.mse:>9.3g} "
                    f"{s.still_mse:>9.3g}")
    rows.append("-" * len(head))
    rows.append(f"{'mean over speakers':<34} {'':>4} {sum(s.frames for s in result.scores):>6} "
                f"{result.mean('lip_corr'):>6.3f} {result.mean('best_lag'):>+4.1f} "
                f"{result.mean('best_lag_corr'):>6.3f} {result.mean('energy_corr'):>8.3f} "
                f"{result.mean('amplitude'):>5.2f} "
                f"{result.mean('mse'):>9.3g} {result.mean('still_mse'):>9.3g}")
    return "\n".join(rows)


def results_json(result: LeaveSpeakerOut, cfg: AnchorConfig, dataset: str | Path) -> dict[str, Any]:
    keys = ("lip_corr", "best_lag", "best_lag_corr", "energy_corr", "amplitude", "mse",
            "interframe_mse", "still_mse")
    return {
        "what": "leave-speaker-out mouth model scores", "dataset": str(dataset),
        "folds": result.folds, "checkpoints": result.checkpoints,
        "speakers": [dataclasses.asdict(s) for s in result.scores],
        "mean": {k: result.mean(k) for k in keys},
        "config": to_dict(cfg),
    }


def write_json(data: dict[str, Any], path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(data, indent=2) + "\n")
    return p
