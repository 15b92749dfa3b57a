"""Does phoneme timing help the mouth? TCN alone versus TCN + phoneme constraints, on TTS speech.

A 3-paragraph news script is synthesised with each installed engine. The avatar's mouth model
runs over it twice through the same `SpeechAnalyzer` the pipeline uses: without cues (what audio
input gets) and with the TTS's phoneme timings (what text input gets). Per frame the inner-lip
gap (normalised units, inter-ocular distance = 1) is compared with a phoneme-derived opening
target (`anchor.mouth.visemes.phoneme_target`: open vowels 1, rounded 0.6, other sounds 0.35,
bilabials and pauses 0):

- `r`: Pearson correlation of the gap with the target over the speech frames;
- `bilabial_closed`: share of bilabial (p b m) midpoint frames whose gap is below a quarter of
  the median open-vowel gap (the lips visibly meet);
- mean gap on bilabial and on open-vowel frames.

The plot is a strip of rendered mouths: bilabial frames and open-vowel frames, TCN alone
(top) and with phonemes (bottom). `docs/phoneme_mouth_strip.png` in the README is this plot.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from anchor.config import AnchorConfig, replace_checked
from benchmarks.common import BenchOptions

SCRIPT = (
    "Good evening. Our top story tonight: the city council has approved a new budget for public "
    "transport, with more buses on the busiest routes and a plan to modernise the metro.\n\n"
    "Members debated the proposal for more than five hours. Supporters said it would cut "
    "commuting times by a quarter, but opponents warned about the cost to taxpayers.\n\n"
    "In other news, the weather service expects a mild and sunny weekend, with temperatures "
    "rising to twenty-two degrees. Back to you in the studio."
)
TINY_SCRIPT = "Bob met a man by the pool."


def _engines(cfg: AnchorConfig, tiny: bool) -> list[str]:
    from anchor.tts.engines import available_engines

    names = available_engines()
    return names[:1] if tiny else names


def _synth(cfg: AnchorConfig, engine: str, text: str) -> tuple[np.ndarray, Any]:
    """The whole text and its cues, as `anchor render --text` synthesises it."""
    from anchor.commands.render import synthesise_text

    tts_cfg = dataclasses.replace(cfg, tts=replace_checked(cfg.tts, engine=engine))
    return synthesise_text(text, tts_cfg, None, None)


def _analyse(models: Any, samples: np.ndarray, cues: Any, shaper: Any) -> tuple[np.ndarray,
                                                                               np.ndarray]:
    from anchor.pipeline.analysis import SpeechAnalyzer

    a = SpeechAnalyzer(models.audio, models.streaming, models.mouth_model, models.infer,
                       fps=models.fps, shaper=shaper)
    a.begin(cues)
    frames = []
    step = models.audio.sample_rate // 5
    for i in range(0, len(samples), step):
        frames += a.push(samples[i : i + step], 0.0)
    frames += a.finish()
    frames.sort(key=lambda f: f.index)
    return np.stack([f.features for f in frames]), np.array([f.speech for f in frames])


def _figures(shaper: Any, feats: np.ndarray, speech: np.ndarray, cues: Any, fps: int
             ) -> dict[str, Any]:
    from anchor.mouth.visemes import phoneme_target

    n = len(feats)
    gap = shaper.gap(feats)
    target = phoneme_target(cues.phonemes, n, fps)
    mask = speech & np.isfinite(gap)
    r = float(np.corrcoef(gap[mask], target[mask])[0, 1]) if mask.sum() > 2 else float("nan")
    bil = sorted({int(0.5 * (p.start_s + p.end_s) * fps) for p in cues.phonemes
                  if p.viseme == "bilabial"} & set(range(n)))
    opn = sorted({int(0.5 * (p.start_s + p.end_s) * fps) for p in cues.phonemes
                  if p.viseme == "open" and p.end_s - p.start_s >= 0.06} & set(range(n)))
    open_gap = float(np.median(gap[opn])) if opn else float("nan")
    closed = float(np.mean(gap[bil] < 0.25 * open_gap)) if bil and open_gap > 0 else float("nan")
    return {
        "r": round(r, 3), "bilabial_closed": round(closed, 3),
        "gap_bilabial": round(float(np.mean(gap[bil])), 4) if bil else None,
        "gap_open": round(open_gap, 4), "frames": n, "speech_frames": int(mask.sum()),
        "bilabial_frames": bil, "open_frames": opn,
    }


def run(cfg: AnchorConfig, opts: BenchOptions) -> dict[str, Any]:
    from anchor.mouth.visemes import VisemeShaper
    from anchor.pipeline.models import load_models

    engines = _engines(cfg, opts.tiny)
    if not engines:
        return {"skipped": True, "reason": "no TTS engine installed (apt-get install festival "
                                            "festvox-us-slt-hts, or espeak-ng)"}
    models = load_models(opts.avatar, cfg, warmup=False)
    shaper = models.shaper or VisemeShaper(models.engine.bundle.pca)  # type: ignore[attr-defined]
    text = TINY_SCRIPT if opts.tiny else SCRIPT
    out: dict[str, Any] = {"avatar": models.name, "script_chars": len(text),
                           "strength": shaper.strength, "targets": dataclasses.asdict(
                               shaper.targets), "engines": {}}
    keep: dict[str, Any] = {}
    try:
        for engine in engines:
            samples, cues = _synth(cfg, engine, text)
            base, speech = _analyse(models, samples, cues, None)
            with_ph, _ = _analyse(models, samples, cues, shaper)
            out["engines"][engine] = {
                "seconds": round(len(samples) / 16000, 2),
                "tcn": _figures(shaper, base, speech, cues, models.fps),
                "tcn_phonemes": _figures(shaper, with_ph, speech, cues, models.fps),
            }
            keep.setdefault("strip", (engine, base, with_ph, out["engines"][engine]["tcn"]))
        engine, base, with_ph, fig = keep["strip"]
        out["strip"] = _strip_frames(models, base, with_ph, fig, opts.out)
        out["strip"]["engine"] = engine
    finally:
        models.engine.close()
    for v in out["engines"].values():  # long lists are for the strip only
        for k in ("tcn", "tcn_phonemes"):
            v[k].pop("bilabial_frames", None)
            v[k].pop("open_frames", None)
    return out


def _strip_frames(models: Any, base: np.ndarray, with_ph: np.ndarray, fig: dict[str, Any],
                  out_dir: Path) -> dict[str, Any]:
    """Mouth crops of 3 bilabial and 3 open-vowel frames, TCN alone and with phonemes, saved as
    an .npz beside the results for `plot`."""
    from anchor.pipeline.models import mouth_box

    bil, opn = fig["bilabial_frames"], fig["open_frames"]
    pick_b = [bil[i] for i in np.linspace(0, len(bil) - 1, min(3, len(bil))).astype(int)]
    pick_o = [opn[i] for i in np.linspace(0, len(opn) - 1, min(3, len(opn))).astype(int)]
    frames = pick_b + pick_o
    x0, y0, x1, y1 = mouth_box(models.engine.bundle, margin=0.6)
    engine = models.engine
    rows = []
    for feats in (base, with_ph):
        idx = [engine.idle_loop.index(t) for t in frames]
        imgs = engine.render_frames(feats[frames], idx)
        rows.append(np.stack([im[y0:y1, x0:x1] for im in imgs]))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "phonemes_strip.npz"
    np.savez_compressed(path, tcn=rows[0], tcn_phonemes=rows[1])
    return {"file": path.name, "frames": frames, "bilabial": len(pick_b), "open": len(pick_o)}


def plot(figures: dict[str, Any], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    strip = figures.get("strip")
    if not strip:
        return []
    data = np.load(out_dir / strip["file"])
    rows = [data["tcn"], data["tcn_phonemes"]]
    n = rows[0].shape[0]
    fig, axes = plt.subplots(2, n, figsize=(1.9 * n, 4.2), squeeze=False)
    nb = strip["bilabial"]
    for r, (row, label) in enumerate(zip(rows, ("TCN alone", "TCN + phonemes"), strict=True)):
        for c in range(n):
            ax = axes[r][c]
            ax.imshow(row[c])
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(("p/b/m" if c < nb else "open vowel") + f"\nframe {strip['frames'][c]}",
                             fontsize=8)
            if c == 0:
                ax.set_ylabel(label, fontsize=9)
    eng = figures["engines"][strip["engine"]]
    fig.suptitle(
        f"{figures['avatar']}, {strip['engine']} speech: lips closed on p/b/m "
        f"{eng['tcn']['bilabial_closed']:.0%} -> {eng['tcn_phonemes']['bilabial_closed']:.0%}, "
        f"r(gap, phoneme target) {eng['tcn']['r']:.2f} -> {eng['tcn_phonemes']['r']:.2f}",
        fontsize=9,
    )
    fig.tight_layout()
    path = out_dir / "phonemes.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def summary(figures: dict[str, Any]) -> str:
    lines = ["engine      mouth           r(gap,target)  p/b/m closed  gap p/b/m  gap vowel"]
    for engine, v in figures["engines"].items():
        for key, label in (("tcn", "TCN alone"), ("tcn_phonemes", "TCN + phonemes")):
            f = v[key]
            lines.append(f"{engine:<11} {label:<15} {f['r']:>13.3f}  {f['bilabial_closed']:>12.0%}"
                         f"  {f['gap_bilabial']:>9.4f}  {f['gap_open']:>9.4f}")
    return "\n".join(lines)
