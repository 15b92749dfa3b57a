"""Generated head motion (`anchor.compose.motion.HeadMotion`) against real head motion.

Real talking heads from ../shared/media (`real_clips/`, and `presenters/` in a full run) are
decoded at the pipeline's rate (video 25 fps, audio 16 kHz, aligned by the streams' start times).
Per frame:

- **real pose**: `LandmarkDetector` (dlib, as `anchor prepare` runs it) gives 68 points; the
  head position is the centre of the eye and nose points (27..47) divided by the face box side
  (`face.crop_scale` x the landmarks' larger extent, median over the clip: the box `prepare`
  crops and the one `HeadWarper`'s fractions refer to); roll is the angle of the eye line
  (degrees, clockwise on screen positive, as `Pose.tilt_deg`).
- **generated pose**: `HeadMotion(cfg.motion, fps)` stepped over the same audio, 640 samples per
  frame, with `VoiceActivityDetector(cfg.audio)` speech flags and `new_sentence` at the first
  speech frame after >= 0.5 s without speech (and at the first speech frame of the clip). The
  pose is turned into the motion of the same eye-and-nose centre the way `HeadWarper` moves it:
  the shift plus what the tilt about the neck pivot does to that point (its place in the box is
  the real clip's median), so both sides are in face-box units.

Both tracks then get the same conditioning: cuts and lost tracks (a jump over GLITCH_JUMP of the
box in one frame) are stepped over, slow camera drift and zoom are removed with a high-pass (the
DRIFT_WINDOW_S moving average is subtracted), and landmark jitter is low-passed with a Gaussian
of SMOOTH_SIGMA_S. Metrics, identical for real and generated:

- `energy_xy`: RMS frame-to-frame velocity of (x, y), face boxes per second; `energy_roll`: the
  same for roll, degrees per second;
- `prosody_r` / `prosody_lag_s`: the highest Pearson correlation between the speed |v| and the
  frame's audio energy (dB, smoothed over ENERGY_SMOOTH_S) over lags within +-MAX_LAG_S
  (positive lag: the motion follows the audio); `prosody_r0` at lag 0;
- `acf_max`: the highest autocorrelation of the speed at lags 0.3-2.0 s (the metronome check: a
  periodic motion scores high); `acf_peak` / `acf_peak_lag_s`: the highest local maximum of the
  autocorrelation in that range (None when it only decays: no period at all);
- `moving_share`: share of frames whose speed is above MOVING_THRESHOLD (box/s).

`noise_energy_xy` / `noise_energy_roll` are what the landmark jitter alone would score (white
noise of the measured jitter through the same conditioning): real energies near them are
measurement, not motion.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from anchor.config import AnchorConfig, to_dict
from benchmarks.common import BenchOptions, pyplot, save_figure, skipped
from benchmarks.inputs import cache_dir, config_key, shared_media_dir

log = logging.getLogger(__name__)

# (folder under ../shared/media, file): one clip per speaker
CLIPS_TINY = (("real_clips", "pcavs_voxceleb_681600002.mp4"),)
CLIPS_QUICK = (
    ("real_clips", "styletalk_Obama_clip1.mp4"),
    ("real_clips", "styletalk_feifeili_clip1.mp4"),
    ("real_clips", "styletalk_reagan_clip1.mp4"),
    ("real_clips", "pcavs_voxceleb_681600002.mp4"),
    ("real_clips", "infinitetalk_ref_video.mp4"),
    ("presenters", "dfrf_cnn_anchor.mp4"),
)
FULL_FOLDERS = ("real_clips", "presenters")
VIDEO_SUFFIXES = (".mp4", ".mpg", ".mov", ".mkv", ".webm", ".avi")
TINY_SECONDS = 4.0
QUICK_SECONDS = 20.0

SENTENCE_GAP_S = 0.5  # this much non-speech before a speech frame starts a new sentence
GLITCH_JUMP = 0.15  # of the face box in one frame: a cut or a lost track, not head motion
MAX_MISSING = 0.2  # clips with more frames than this without a face are left out
DRIFT_WINDOW_S = 4.0  # high-pass: this long a moving average is subtracted (camera drift, zoom)
SMOOTH_SIGMA_S = 0.06  # low-pass against landmark jitter (Gaussian sigma; -3 dB near 3 Hz)
ENERGY_SMOOTH_S = 0.2
MAX_LAG_S = 0.5
ACF_LAGS_S = (0.3, 2.0)
MOVING_THRESHOLD = 0.05  # face boxes per second (a 200 px box: 10 px/s)
AUDIO_RANGE_DB = 50.0  # frame energies are floored this far below the clip's 99th percentile
TRACE_MAX_S = 20.0  # the plotted clip's traces kept in the figures


@dataclass(frozen=True)
class Clip:
    """One real clip at the pipeline's rates: audio aligned with frame 0, per-frame landmarks."""

    name: str
    samples: np.ndarray  # float32 at cfg.audio.sample_rate
    landmarks: np.ndarray  # (T, 68, 2), gaps interpolated
    found: np.ndarray  # (T,) bool: a face was detected in the frame
    size: tuple[int, int]  # width, height


# --------------------------------------------------------------------------------------------
# inputs


def clip_paths(media: Path, opts: BenchOptions) -> list[Path]:
    if opts.tiny or opts.quick:
        names = CLIPS_TINY if opts.tiny else CLIPS_QUICK
        return [media / d / n for d, n in names if (media / d / n).is_file()]
    out: list[Path] = []
    for folder in FULL_FOLDERS:
        if (media / folder).is_dir():
            out += sorted(p for p in (media / folder).iterdir()
                          if p.suffix.lower() in VIDEO_SUFFIXES)
    return out


def _close(it: Iterator[Any]) -> None:
    close = getattr(it, "close", None)
    if close is not None:
        close()


def _aligned_audio(path: Path, offset_s: float, sample_rate: int, n_samples: int | None
                   ) -> np.ndarray:
    """Audio whose sample 0 plays with video frame 0 (as `prepare` aligns it), at most
    `n_samples` long."""
    from anchor.audio.decode import iter_audio

    shift = int(round(offset_s * sample_rate))
    need = None if n_samples is None else n_samples - shift
    parts: list[np.ndarray] = []
    got = 0
    chunks = iter_audio(path, sample_rate, chunk_s=5.0)
    try:
        for chunk in chunks:
            parts.append(chunk)
            got += chunk.size
            if need is not None and got >= need:
                break
    finally:
        _close(chunks)
    x = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    if shift > 0:
        x = np.concatenate([np.zeros(shift, np.float32), x])
    elif shift < 0:
        x = x[-shift:]
    return x if n_samples is None else x[:n_samples]


def _landmarks(path: Path, cfg: AnchorConfig, max_frames: int | None, detector: Any
               ) -> tuple[np.ndarray, np.ndarray]:
    """(T, 68, 2) landmarks (NaN where no face) and the frame size, cached by file and config."""
    from anchor.face.video import read_frames

    st = path.stat()
    key = config_key({"path": str(path.resolve()), "size": st.st_size, "mtime": st.st_mtime_ns,
                      "frames": max_frames, "fps": cfg.video.fps, "face": to_dict(cfg.face)})
    cached = cache_dir() / f"head-motion-{path.stem}-{key}.npz"
    if cached.is_file():
        with np.load(cached) as data:
            return data["landmarks"], data["frame_size"]
    detector.reset()
    found: list[np.ndarray] = []
    shape: tuple[int, ...] = (0, 0)
    frames = read_frames(path, cfg.video.fps)
    try:
        for frame in frames:
            if max_frames is not None and len(found) >= max_frames:
                break
            shape = frame.shape
            lm = detector.detect(frame)
            found.append(np.full((68, 2), np.nan, np.float32) if lm is None else lm)
    finally:
        _close(frames)  # stops decoding early (the file is closed at once)
    landmarks = np.stack(found) if found else np.zeros((0, 68, 2), np.float32)
    frame_size = np.array([shape[1], shape[0]], np.int64)
    tmp = cached.with_name(f".{cached.stem}.tmp{os.getpid()}.npz")
    np.savez_compressed(tmp, landmarks=landmarks, frame_size=frame_size)
    os.replace(tmp, cached)
    return landmarks, frame_size


def load_clip(path: Path, cfg: AnchorConfig, max_s: float | None, detector: Any) -> Clip | str:
    """The clip, or why it cannot be used."""
    from anchor.errors import AnchorError
    from anchor.face.video import probe_video
    from anchor.train.prepare import interpolate_gaps

    fps = cfg.video.fps
    hop = cfg.audio.sample_rate // fps
    try:
        info = probe_video(path)
        if not info.has_audio:
            return "no audio track"
        max_frames = None if max_s is None else int(round(max_s * fps))
        raw, frame_size = _landmarks(path, cfg, max_frames, detector)
        samples = _aligned_audio(path, info.audio_offset, cfg.audio.sample_rate,
                                 None if max_frames is None else max_frames * hop)
    except (AnchorError, OSError) as exc:
        return str(exc).splitlines()[0]
    n = min(len(raw), samples.size // hop)
    if n < 2 * fps:
        return f"only {n} frames with audio"
    raw = raw[:n]
    found = np.isfinite(raw).all(axis=(1, 2))
    if found.mean() < 1.0 - MAX_MISSING:
        return f"no face found in {int((~found).sum())} of {n} frames"
    landmarks = interpolate_gaps([lm if ok else None for lm, ok in zip(raw, found, strict=True)])
    return Clip(path.name, samples[: n * hop], landmarks, found,
                (int(frame_size[0]), int(frame_size[1])))


# --------------------------------------------------------------------------------------------
# poses


def real_pose(lm: np.ndarray, crop_scale: float) -> tuple[np.ndarray, dict[str, float]]:
    """(T, 3) x, y (face boxes) and roll (degrees) from (T, 68, 2) landmarks, and the geometry:
    box side (px), the eye-and-nose centre's place in the box (of its side), jaw width / side."""
    lm = np.asarray(lm, np.float64)
    extent = (lm.max(axis=1) - lm.min(axis=1)).max(axis=1)
    side = max(1.0, crop_scale * float(np.median(extent)))
    centre = lm[:, 27:48].mean(axis=1)
    box_centre = 0.5 * (lm.min(axis=1) + lm.max(axis=1))
    eye = lm[:, 42:48].mean(axis=1) - lm[:, 36:42].mean(axis=1)
    roll = np.degrees(np.arctan2(eye[:, 1], eye[:, 0]))
    offset = np.median(centre - box_centre, axis=0) / side
    jaw = float(np.median(np.hypot(*(lm[:, 16] - lm[:, 0]).T)))
    pose = np.column_stack([centre / side, roll])
    return pose, {"box_px": round(side, 1), "centre_x": float(offset[0]),
                  "centre_y": float(offset[1]), "jaw_of_box": round(jaw / side, 3)}


def frame_db(samples: np.ndarray, hop: int) -> np.ndarray:
    n = samples.size // hop
    x = samples[: n * hop].astype(np.float64).reshape(n, hop)
    return np.asarray(10.0 * np.log10(np.mean(x * x, axis=1) + 1e-12))


def generated_pose(samples: np.ndarray, cfg: AnchorConfig, centre: tuple[float, float]
                   ) -> tuple[np.ndarray, np.ndarray, int]:
    """(T, 3) x, y, roll of the eye-and-nose centre as `HeadWarper` moves it by `HeadMotion`'s
    poses, the VAD flags, and the number of sentences started."""
    from anchor.audio.vad import VoiceActivityDetector
    from anchor.compose.motion import HeadMotion, HeadWarper

    fps = cfg.video.fps
    hop = cfg.audio.sample_rate // fps
    n = samples.size // hop
    vad = VoiceActivityDetector(cfg.audio)
    motion = HeadMotion(cfg.motion, fps)
    gap = int(round(SENTENCE_GAP_S * fps))
    silent = gap  # the clip's first speech frame starts a sentence
    poses = np.zeros((n, 3))
    speech = np.zeros(n, bool)
    sentences = 0
    for i in range(n):
        chunk = samples[i * hop : (i + 1) * hop]
        s = vad.push(chunk)
        new = s and silent >= gap
        sentences += int(new)
        silent = 0 if s else silent + 1
        p = motion.step(chunk, s, new)
        poses[i] = (p.dx, p.dy, p.tilt_deg)
        speech[i] = s
    # A virtual face box of side 100 px; the point sits where the real clip's centre sits.
    side = 100.0
    warper = HeadWarper(3 * int(side), 4 * int(side), (side, side, 2 * side, 2 * side))
    qx = 1.5 * side + centre[0] * side - warper.pivot[0]
    qy = 1.5 * side + centre[1] * side - warper.pivot[1]
    a = np.radians(poses[:, 2])
    c1, s1 = np.cos(a) - 1.0, np.sin(a)
    dx = c1 * qx - s1 * qy + poses[:, 0] * warper.box_w
    dy = s1 * qx + c1 * qy + poses[:, 1] * warper.box_h
    return np.column_stack([dx / side, dy / side, poses[:, 2]]), speech, sentences


# --------------------------------------------------------------------------------------------
# conditioning and metrics


def condition(pose: np.ndarray, found: np.ndarray, fps: int
              ) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """Step over glitches, high-pass, low-pass: (T, 3) conditioned pose, (T-1,) bool validity of
    each frame-to-frame velocity, and the jitter (RMS of raw minus low-passed) of xy (boxes) and
    of roll (degrees)."""
    from scipy.ndimage import gaussian_filter1d, uniform_filter1d

    p = np.asarray(pose, np.float64).copy()
    d = np.diff(p, axis=0)
    glitch = np.hypot(d[:, 0], d[:, 1]) > GLITCH_JUMP
    d[glitch] = 0.0  # a cut: continue from where the head was
    p = np.concatenate([p[:1], p[:1] + np.cumsum(d, axis=0)])
    sigma = SMOOTH_SIGMA_S * fps
    smooth = gaussian_filter1d(p, sigma, axis=0, mode="nearest")
    res = p - smooth
    jitter = (float(np.sqrt(np.mean(np.sum(res[:, :2] ** 2, axis=1)))),
              float(np.sqrt(np.mean(res[:, 2] ** 2))))
    window = min(len(p), max(3, int(round(DRIFT_WINDOW_S * fps)) | 1))
    out = smooth - uniform_filter1d(smooth, window, axis=0, mode="nearest")
    bad = np.zeros(len(p), bool)
    bad[1:] |= glitch
    bad[:-1] |= glitch
    bad |= ~np.asarray(found, bool)
    reach = int(math.ceil(3 * sigma))  # the low-pass spreads a glitch this far
    if reach and bad.any():
        bad = uniform_filter1d(bad.astype(np.float64), 2 * reach + 1, mode="nearest") > 1e-9
    valid = ~(bad[1:] | bad[:-1])
    return out, valid, jitter


def _pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    if a.size < 3:
        return None
    sa, sb = a.std(), b.std()
    if sa < 1e-12 or sb < 1e-12:
        return None
    return float(np.mean((a - a.mean()) * (b - b.mean())) / (sa * sb))


def _rounded(v: float | None, nd: int = 4) -> float | None:
    return None if v is None or not math.isfinite(v) else round(v, nd)


def smoothed_db(db: np.ndarray, fps: int) -> np.ndarray:
    from scipy.ndimage import uniform_filter1d

    floor = float(np.percentile(db, 99)) - AUDIO_RANGE_DB
    w = max(1, int(round(ENERGY_SMOOTH_S * fps)))
    return np.asarray(uniform_filter1d(np.maximum(db, floor), w, mode="nearest"))


def metrics(pose: np.ndarray, valid: np.ndarray, db: np.ndarray, fps: int) -> dict[str, Any]:
    """The figures of one conditioned track (see the module docstring); `db` per frame."""
    v = np.diff(pose, axis=0) * fps  # velocity into frame t+1
    speed = np.hypot(v[:, 0], v[:, 1])
    ok = np.asarray(valid, bool)
    out: dict[str, Any] = {
        "energy_xy": _rounded(float(np.sqrt(np.mean(speed[ok] ** 2)))),
        "energy_roll": _rounded(float(np.sqrt(np.mean(v[ok, 2] ** 2)))),
        "moving_share": _rounded(float(np.mean(speed[ok] > MOVING_THRESHOLD)), 3),
    }
    energy = smoothed_db(db, fps)[1:]
    max_lag = int(round(MAX_LAG_S * fps))
    best: tuple[float, int] | None = None
    r0: float | None = None
    for lag in range(-max_lag, max_lag + 1):  # speed[t] against energy[t - lag]
        if lag >= 0:
            s, e, m = speed[lag:], energy[: energy.size - lag], ok[lag:]
        else:
            s, e, m = speed[:lag], energy[-lag:], ok[:lag]
        r = _pearson(s[m], e[m])
        if lag == 0:
            r0 = r
        if r is not None and (best is None or r > best[0]):
            best = (r, lag)
    out["prosody_r"] = _rounded(best[0], 3) if best else None
    out["prosody_lag_s"] = round(best[1] / fps, 2) if best else None
    out["prosody_r0"] = _rounded(r0, 3)
    fill = np.where(ok, speed, float(np.mean(speed[ok])) if ok.any() else 0.0)
    lo, hi = (int(round(t * fps)) for t in ACF_LAGS_S)
    acf: dict[int, float] = {}
    for k in range(max(1, lo - 1), min(hi + 1, fill.size - fps) + 1):  # >= 1 s overlap
        r = _pearson(fill[:-k], fill[k:])
        if r is not None:
            acf[k] = r
    inside = {k: r for k, r in acf.items() if lo <= k <= hi}
    out["acf_max"] = _rounded(max(inside.values()), 3) if inside else None
    peaks = {k: r for k, r in inside.items()
             if k - 1 in acf and k + 1 in acf and r > acf[k - 1] and r >= acf[k + 1]}
    if peaks:
        k = max(peaks, key=lambda j: peaks[j])
        out["acf_peak"], out["acf_peak_lag_s"] = _rounded(peaks[k], 3), round(k / fps, 2)
    else:
        out["acf_peak"], out["acf_peak_lag_s"] = None, None
    return out


def noise_energy(jitter: tuple[float, float], n: int, fps: int, seed: int
                 ) -> tuple[float, float]:
    """RMS velocity of xy (boxes/s) and roll (deg/s) that white landmark jitter of the measured
    RMS scores after the same conditioning: the measurement's floor."""
    rng = np.random.default_rng(seed)
    noise = np.column_stack([rng.normal(0.0, jitter[0] / math.sqrt(2), (n, 2)),
                             rng.normal(0.0, jitter[1], n)])
    p, valid, _ = condition(noise, np.ones(n, bool), fps)
    v = np.diff(p, axis=0)[valid] * fps
    return (float(np.sqrt(np.mean(np.sum(v[:, :2] ** 2, axis=1)))),
            float(np.sqrt(np.mean(v[:, 2] ** 2))))


METRICS = ("energy_xy", "energy_roll", "prosody_r", "prosody_lag_s", "prosody_r0", "acf_max",
           "acf_peak", "moving_share")


def _mean(rows: list[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return round(float(np.mean(vals)), 4) if vals else None


# --------------------------------------------------------------------------------------------
# the suite


def run(cfg: AnchorConfig, opts: BenchOptions) -> dict[str, Any]:
    media = shared_media_dir()
    if media is None:
        return skipped("no ../shared/media (real talking-head clips) next to the checkout")
    paths = clip_paths(media, opts)
    if not paths:
        return skipped(f"none of the clips in {media / 'real_clips'}")
    from anchor.errors import AnchorError

    try:
        from anchor.face.landmarks import LandmarkDetector

        detector = LandmarkDetector(cfg.face)
    except (ImportError, AnchorError) as exc:  # dlib or its 68-point model missing
        return skipped(f"no landmark detector ({str(exc).splitlines()[0]})")
    max_s = TINY_SECONDS if opts.tiny else QUICK_SECONDS if opts.quick else None
    fps = cfg.video.fps
    hop = cfg.audio.sample_rate // fps
    clips: list[dict[str, Any]] = []
    left_out: dict[str, str] = {}
    trace: dict[str, Any] | None = None
    for path in paths:
        clip = load_clip(path, cfg, max_s, detector)
        if isinstance(clip, str):
            log.warning("head_motion: %s left out: %s", path.name, clip)
            left_out[path.name] = clip
            continue
        n = len(clip.landmarks)
        raw_real, geom = real_pose(clip.landmarks, cfg.face.crop_scale)
        raw_gen, speech, sentences = generated_pose(
            clip.samples, cfg, (geom["centre_x"], geom["centre_y"]))
        real, real_ok, jitter = condition(raw_real, clip.found, fps)
        gen, gen_ok, _ = condition(raw_gen, np.ones(n, bool), fps)
        db = frame_db(clip.samples, hop)
        floor = noise_energy(jitter, n, fps, opts.seed)
        row: dict[str, Any] = {
            "clip": clip.name, "folder": path.parent.name, "seconds": round(n / fps, 2),
            "frame_size": list(clip.size), "face_found": round(float(clip.found.mean()), 3),
            "speech_share": round(float(speech.mean()), 3), "sentences": sentences,
            "geometry": geom, "jitter_xy": round(jitter[0], 5),
            "jitter_roll": round(jitter[1], 4),
            "noise_energy_xy": round(floor[0], 4), "noise_energy_roll": round(floor[1], 3),
            "valid_share": round(float(real_ok.mean()), 3),
            "real": metrics(real, real_ok, db, fps),
            "generated": metrics(gen, gen_ok, db, fps),
        }
        clips.append(row)
        log.info("head_motion: %s (%.1f s): real %s, generated %s", clip.name, n / fps,
                 row["real"]["energy_xy"], row["generated"]["energy_xy"])
        if trace is None:
            k = min(n, int(TRACE_MAX_S * fps))
            vr = np.diff(real[:k], axis=0) * fps
            vg = np.diff(gen[:k], axis=0) * fps
            trace = {
                "clip": clip.name,
                "speed_real": np.round(np.hypot(vr[:, 0], vr[:, 1]), 4).tolist(),
                "speed_generated": np.round(np.hypot(vg[:, 0], vg[:, 1]), 4).tolist(),
                "energy_db": np.round(smoothed_db(db, fps)[1:k], 2).tolist(),
                "speech": speech[1:k].astype(int).tolist(),
            }
    if not clips:
        return skipped("no usable clip", clips_left_out=left_out)
    mean: dict[str, Any] = {side: {m: _mean([c[side] for c in clips], m) for m in METRICS}
                            for side in ("real", "generated")}
    for key in ("noise_energy_xy", "noise_energy_roll"):
        mean[key] = _mean(clips, key)
    return {
        "media": str(media), "fps": fps, "sample_rate": cfg.audio.sample_rate,
        "max_seconds_per_clip": max_s, "motion": to_dict(cfg.motion),
        "method": {
            "real": "eye+nose centre (points 27..47) / face box side (face.crop_scale x larger "
                    "landmark extent, clip median); roll = eye-line angle",
            "generated": "HeadMotion poses moved onto the same point the way HeadWarper moves "
                         "it (shift + tilt about the neck pivot)",
            "glitch_jump": GLITCH_JUMP, "drift_window_s": DRIFT_WINDOW_S,
            "smooth_sigma_s": SMOOTH_SIGMA_S, "energy_smooth_s": ENERGY_SMOOTH_S,
            "max_lag_s": MAX_LAG_S, "acf_lags_s": list(ACF_LAGS_S),
            "moving_threshold": MOVING_THRESHOLD, "sentence_gap_s": SENTENCE_GAP_S,
        },
        "clips": clips, "clips_left_out": left_out, "mean": mean, "trace": trace,
    }


def plot(figures: dict[str, Any], out_dir: Path) -> list[Path]:
    plt = pyplot()
    trace, mean, clips = figures["trace"], figures["mean"], figures["clips"]
    fig = plt.figure(figsize=(12, 7))
    grid = fig.add_gridspec(2, 5, height_ratios=(1.25, 1.0))
    ax = fig.add_subplot(grid[0, :])
    fps = figures["fps"]
    t = (np.arange(len(trace["speed_real"])) + 1) / fps
    speech = np.asarray(trace["speech"], bool)
    ax.fill_between(t, 0, 1, where=speech, transform=ax.get_xaxis_transform(), color="0.92",
                    label="VAD speech")
    ax.plot(t, trace["speed_real"], color="tab:blue", lw=1.0, label="real |v|")
    ax.plot(t, trace["speed_generated"], color="tab:orange", lw=1.0, label="generated |v|")
    ax.axhline(figures["method"]["moving_threshold"], color="0.5", lw=0.6, ls=":")
    ax.set_xlabel("s")
    ax.set_ylabel("head speed (face boxes / s)")
    ax.set_title(f"{trace['clip']}: head speed, real vs generated, and audio energy", fontsize=10)
    ax2 = ax.twinx()
    ax2.plot(t, trace["energy_db"], color="tab:green", lw=0.8, alpha=0.6, label="energy (dB)")
    ax2.set_ylabel("audio energy (dB, 0.2 s)")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=8, loc="upper right")
    panels = (("energy_xy", "RMS velocity xy\n(boxes/s)"), ("energy_roll", "RMS roll velocity\n"
              "(deg/s)"), ("prosody_r", "r(speed, energy)\nbest lag"), ("acf_max",
              "speed autocorr.\nmax 0.3-2 s"), ("moving_share", "share of time\nmoving"))
    for j, (key, label) in enumerate(panels):
        bx = fig.add_subplot(grid[1, j])
        vals = [mean["real"][key] or 0.0, mean["generated"][key] or 0.0]
        bx.bar([0, 1], vals, color=["tab:blue", "tab:orange"], alpha=0.7)
        for k, side in enumerate(("real", "generated")):
            pts = [c[side][key] for c in clips if c[side][key] is not None]
            bx.scatter(np.full(len(pts), k) + np.linspace(-0.15, 0.15, len(pts)), pts, s=10,
                       color="k", zorder=3)
        floor = {"energy_xy": "noise_energy_xy", "energy_roll": "noise_energy_roll"}.get(key)
        if floor and mean.get(floor) is not None:  # what landmark jitter alone would score
            bx.axhline(mean[floor], color="0.4", ls="--", lw=0.8)
        bx.set_xticks([0, 1], ["real", "gen."])
        bx.set_title(label, fontsize=9)
        bx.tick_params(labelsize=8)
    fig.suptitle(f"head motion: {len(clips)} real clips vs HeadMotion (bars: mean, dots: clips)",
                 fontsize=11)
    fig.tight_layout()
    return [save_figure(fig, out_dir / "head_motion.png")]


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def summary(figures: dict[str, Any]) -> str:
    head = (f"{'clip':<34} {'s':>5}  {'v_xy box/s':>13}  {'v_roll deg/s':>13}  "
            f"{'r(speed,dB) @lag s':>25}  {'acf max':>11}  {'acf peak':>11}  {'moving':>11}")
    sub = (f"{'':<34} {'':>5}  {'real':>6} {'gen':>6}  {'real':>6} {'gen':>6}  "
           f"{'real':>12} {'gen':>12}  {'real':>5} {'gen':>5}  {'real':>5} {'gen':>5}  "
           f"{'real':>5} {'gen':>5}")
    lines = [head, sub]

    def row(name: str, secs: str, r: dict[str, Any], g: dict[str, Any]) -> str:
        def corr(m: dict[str, Any]) -> str:
            if m.get("prosody_r") is None:
                return "-"
            lag = "" if m.get("prosody_lag_s") is None else f" @{m['prosody_lag_s']:+.2f}"
            return f"{m['prosody_r']:.2f}{lag}"

        return (f"{name[:34]:<34} {secs:>5}  {_fmt(r['energy_xy'], '.3f'):>6} "
                f"{_fmt(g['energy_xy'], '.3f'):>6}  {_fmt(r['energy_roll'], '.2f'):>6} "
                f"{_fmt(g['energy_roll'], '.2f'):>6}  {corr(r):>12} {corr(g):>12}  "
                f"{_fmt(r['acf_max'], '.2f'):>5} {_fmt(g['acf_max'], '.2f'):>5}  "
                f"{_fmt(r['acf_peak'], '.2f'):>5} {_fmt(g['acf_peak'], '.2f'):>5}  "
                f"{_fmt(r['moving_share'], '.0%'):>5} {_fmt(g['moving_share'], '.0%'):>5}")

    for c in figures["clips"]:
        lines.append(row(c["clip"], f"{c['seconds']:.1f}", c["real"], c["generated"]))
    m = figures["mean"]
    lines.append(row(f"mean of {len(figures['clips'])} clips", "", m["real"], m["generated"]))
    lines.append(f"landmark-jitter floor (mean): v_xy {_fmt(m.get('noise_energy_xy'), '.3f')} "
                 f"box/s, v_roll {_fmt(m.get('noise_energy_roll'), '.2f')} deg/s; moving = |v| > "
                 f"{figures['method']['moving_threshold']} box/s; lag > 0: motion after the audio")
    for name, why in figures.get("clips_left_out", {}).items():
        lines.append(f"left out {name}: {why}")
    return "\n".join(lines)
