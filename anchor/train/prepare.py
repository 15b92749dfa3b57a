"""`anchor prepare`: talking-head videos -> a training dataset (format: anchor/train/dataset.py).

Per video: probe (fail fast without an audio track), decode audio at 16 kHz aligned to the first
video frame, 68-point landmarks per frame (short face losses interpolated), the A/V offset (below;
the audio may be shifted), MFCC with exactly `video.mfcc_per_frame` rows per 25 fps frame, a
square crop box per frame smoothed forward and backward (zero-phase EMA, so crops neither jitter
nor lag), the face crops (face.mp4), their Canny edges (edges.npz) and the normalised mouth.
Then the mouth PCA is fitted on the training part of every clip (the last
`mouth_train.val_fraction` of each clip is held out, as `ClipData.split` does) and every frame is
projected. Everything is built in a hidden directory beside the output and renamed into place at
the end, the manifest written last, so a failure leaves nothing behind.

A/V offset (anchor/train/av_offset.py): each clip's offset between lips and speech is estimated
from its landmarks and audio, logged, and stored in the clip's manifest entry as "av_offset"
({"mode", "estimated_ms", "correlation", "second", "chance", "confidence", "zero", "confident",
"frames", "applied_ms"}; positive ms: the audio is late). `face.av_offset` (`--av-offset`) says
what is applied: "auto" shifts the audio by the estimate when it is confident and more than one
frame, "off" never shifts, a number is a fixed shift in ms. The shifted audio (same length) is
what audio.npy and the MFCC hold, so row 4t of the MFCC is the sound of frame t's mouth.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from anchor.config import AnchorConfig, to_dict
from anchor.errors import AnchorError, AudioError, DatasetError, FaceError
from anchor.progress import progress_bar
from anchor.train.av_offset import (
    AvOffset,
    estimate_av_offset,
    parse_av_offset,
    planned_shift_ms,
    shift_audio,
)
from anchor.train.dataset import FORMAT, VERSION, Dataset, load_dataset

log = logging.getLogger(__name__)

MAX_FACE_GAP = 10  # frames without a face that are interpolated; a longer gap fails the clip
X264_CRF = 12  # near-lossless face crops


@dataclass
class _Clip:
    """One processed clip before the dataset-wide PCA."""

    name: str
    info: dict[str, Any]
    arrays: dict[str, np.ndarray]
    train: range = field(default_factory=lambda: range(0))


def _clip_name(video: Path, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", video.stem).strip("._") or "clip"
    name, i = base, 2
    while name in taken:
        name, i = f"{base}_{i}", i + 1
    taken.add(name)
    return name


def _check_output(out: Path, force: bool) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise DatasetError(f"{out} exists and is not a dataset directory; choose another output")
    if (out / "manifest.json").is_file():
        if not force:
            raise DatasetError(f"dataset {out} already exists (use --force to replace it)")
        return
    if any(out.iterdir()):
        raise DatasetError(
            f"{out} exists, is not empty and is not a dataset; refusing to replace it"
        )


def align_audio(samples: np.ndarray, offset_s: float, sample_rate: int) -> np.ndarray:
    """Shift audio so that sample 0 plays with the first video frame."""
    shift = int(round(offset_s * sample_rate))
    if shift > 0:  # audio starts after the video: pad its beginning
        return np.concatenate([np.zeros(shift, dtype=np.float32), samples])
    if shift < 0:  # audio starts earlier: drop what precedes the first frame
        return samples[-shift:]
    return samples


def interpolate_gaps(landmarks: list[np.ndarray | None]) -> np.ndarray:
    """(T, 68, 2): missing frames linearly interpolated between their neighbours, or copied from
    the nearest detected frame at the clip's ends. Needs at least one detected frame."""
    valid = [i for i, lm in enumerate(landmarks) if lm is not None]
    if not valid:
        raise ValueError("no detected frame to interpolate from")
    out = np.empty((len(landmarks), 68, 2), dtype=np.float32)
    for i in valid:
        out[i] = landmarks[i]
    idx = np.arange(len(landmarks))
    flat = out.reshape(len(landmarks), -1)
    v = np.asarray(valid)
    for j in range(flat.shape[1]):  # np.interp holds the end values outside the valid range
        flat[:, j] = np.interp(idx, v, flat[v, j])
    return flat.reshape(-1, 68, 2)


def smooth_boxes(landmarks: np.ndarray, crop_scale: float, smoothing: float) -> np.ndarray:
    """(T, 4) square boxes x0, y0, x1, y1: side = crop_scale * the landmarks' larger extent,
    centred on the landmark box; centre and side smoothed by a forward-backward EMA."""
    lo = landmarks.min(axis=1)
    hi = landmarks.max(axis=1)
    params = np.column_stack(
        [(lo + hi) / 2, crop_scale * (hi - lo).max(axis=1)]
    ).astype(np.float64)  # (T, 3): cx, cy, side
    a = float(np.clip(smoothing, 0.0, 0.99))
    if a > 0 and len(params) > 1:
        for order in (slice(None), slice(None, None, -1)):  # forward, then backward: zero phase
            seq = params[order].copy()
            for t in range(1, len(seq)):
                seq[t] = a * seq[t - 1] + (1 - a) * seq[t]
            params[order] = seq
    cx, cy, side = params[:, 0], params[:, 1], params[:, 2]
    return np.column_stack(
        [cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2]
    ).astype(np.float32)


def crop_face(frame: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    """The square `box` of `frame` resized to size x size (outside the frame is black)."""
    import cv2

    x0, y0, x1, _ = (float(v) for v in box)
    k = size / (x1 - x0)
    m = np.array([[k, 0.0, -x0 * k], [0.0, k, -y0 * k]], dtype=np.float64)
    return cv2.warpAffine(
        frame, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )


class _CropWriter:
    """face.mp4: H.264 (libx264, crf 12, yuv420p) at the dataset frame rate."""

    def __init__(self, path: Path, size: int, fps: int) -> None:
        import av

        self._av = av
        self._container = av.open(str(path), "w")
        self._stream = self._container.add_stream("libx264", rate=fps)
        self._stream.width = size
        self._stream.height = size
        self._stream.pix_fmt = "yuv420p"
        self._stream.options = {"crf": str(X264_CRF), "preset": "fast"}
        self._tb = Fraction(1, fps)
        self._n = 0

    def write(self, rgb: np.ndarray) -> None:
        frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = self._n
        frame.time_base = self._tb
        self._n += 1
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def close(self) -> None:
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()


class _LazyDetector:
    """Loads the 100 MB landmark model only once a clip has passed the cheap checks."""

    def __init__(self, cfg: AnchorConfig) -> None:
        self._cfg = cfg
        self._detector: Any = None
        self.detections = 0

    def _get(self) -> Any:
        if self._detector is None:
            from anchor.face.landmarks import LandmarkDetector

            self._detector = LandmarkDetector(self._cfg.face)
        return self._detector

    def reset(self) -> None:
        if self._detector is not None:
            self._detector.reset()

    def detect(self, rgb: np.ndarray) -> np.ndarray | None:
        d = self._get()
        result = d.detect(rgb)
        self.detections = int(d.detections)
        return result  # type: ignore[no-any-return]


def _process_clip(
    video: Path, clip_dir: Path, name: str, cfg: AnchorConfig, detector: Any, progress: bool
) -> _Clip:
    import cv2

    from anchor.audio.decode import decode_audio
    from anchor.audio.mfcc import mfcc_for_frames
    from anchor.face.video import probe_video, read_frames
    from anchor.mouth.features import normalise_mouth

    t_start = time.perf_counter()
    fps = cfg.video.fps
    info = probe_video(video)
    if not info.has_audio:  # fail before the slow landmark pass
        raise AudioError(f"{video}: no audio track")
    samples = decode_audio(video, cfg.audio.sample_rate)
    samples = align_audio(samples, info.audio_offset, cfg.audio.sample_rate)

    # pass 1: landmarks
    detector.reset()
    detections_before = int(getattr(detector, "detections", 0))
    found: list[np.ndarray | None] = []
    gap = 0
    expected = info.frames_at(fps)
    bar = progress_bar(total=expected, desc=f"{name} landmarks", unit="frame", disable=not progress,
               leave=False)
    try:
        for frame in read_frames(video, fps):
            lm = detector.detect(frame)
            found.append(lm)
            bar.update(1)
            gap = gap + 1 if lm is None else 0
            if gap >= MAX_FACE_GAP:
                missing = sum(1 for x in found if x is None)
                raise FaceError(
                    f"{video}: no detectable face in {missing} of {len(found)} frames "
                    f"(lost for {gap} frames in a row at {(len(found) - gap) / fps:.2f} s)"
                )
    finally:
        bar.close()
    n = len(found)
    missing = sum(1 for x in found if x is None)
    if missing == n:
        raise FaceError(f"{video}: no detectable face in {missing} of {n} frames")
    if missing:
        log.info("%s: interpolated landmarks for %d of %d frames", video, missing, n)
    landmarks = interpolate_gaps(found)
    samples, av_info = _correct_av_offset(name, landmarks, samples, cfg)

    # pass 2: crops, edges
    size = cfg.face.crop_size
    boxes = smooth_boxes(landmarks, cfg.face.crop_scale, cfg.face.crop_smoothing)
    edges = np.zeros((n, size, size), dtype=np.uint8)
    clip_dir.mkdir(parents=True)
    writer = _CropWriter(clip_dir / "face.mp4", size, fps)
    written = 0
    bar = progress_bar(total=n, desc=f"{name} crops", unit="frame", disable=not progress, leave=False)
    try:
        for t, frame in enumerate(read_frames(video, fps)):
            if t >= n:
                break
            crop = crop_face(frame, boxes[t], size)
            writer.write(crop)
            edges[t] = cv2.Canny(
                cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY), cfg.face.canny_low, cfg.face.canny_high
            )
            written += 1
            bar.update(1)
    finally:
        bar.close()
        writer.close()
    if written != n:
        raise FaceError(f"{video}: cannot decode (second pass gave {written} of {n} frames)")
    np.savez_compressed(clip_dir / "edges.npz", edges=edges)
    np.save(clip_dir / "audio.npy", samples.astype(np.float32))

    side = boxes[:, 2] - boxes[:, 0]
    crop_landmarks = (landmarks - boxes[:, None, :2]) * (size / side)[:, None, None]
    norm = normalise_mouth(landmarks)
    mfcc = mfcc_for_frames(samples, cfg.audio, n, cfg.video.mfcc_per_frame)
    seconds = time.perf_counter() - t_start
    log.info(
        "%s: %d frames (%.1f s), %d face detections, %d interpolated, %.1f s (%.1f ms/frame)",
        name, n, n / fps, int(getattr(detector, "detections", 0)) - detections_before, missing,
        seconds,
        1000 * seconds / n,
    )
    return _Clip(
        name=name,
        info={
            "name": name,
            "source": str(video.resolve()),
            "frames": n,
            "fps": fps,
            "sample_rate": cfg.audio.sample_rate,
            "width": info.width,
            "height": info.height,
            "mfcc_frames": int(mfcc.shape[0]),
            "source_fps": info.fps,
            "crop_size": size,
            "interpolated_frames": missing,
            "av_offset": av_info,
        },
        arrays={
            "mfcc": mfcc.astype(np.float32),
            "landmarks": landmarks.astype(np.float32),
            "boxes": boxes.astype(np.float32),
            "crop_landmarks": crop_landmarks.astype(np.float32),
            "mouth": norm.mouth,
            "norm_center": norm.center,
            "norm_angle": norm.angle,
            "norm_scale": norm.scale,
        },
    )


def _correct_av_offset(
    name: str, landmarks: np.ndarray, samples: np.ndarray, cfg: AnchorConfig
) -> tuple[np.ndarray, dict[str, Any]]:
    """Estimate the clip's A/V offset, log it, and shift the audio as `face.av_offset` says."""
    mode = parse_av_offset(cfg.face.av_offset)
    fps = cfg.video.fps
    estimate: AvOffset = estimate_av_offset(landmarks, samples, cfg)
    applied = planned_shift_ms(mode, estimate, fps)
    if mode == "auto" and applied:
        action = f"audio shifted by {applied:+.0f} ms"
    elif mode == "auto":
        action = "not shifted (" + ("within one frame" if estimate.confident else "not sure") + ")"
    elif mode == "off":
        action = "not shifted (av offset off)"
    else:
        action = f"audio shifted by the fixed {applied:+.0f} ms"
    log.info(
        "%s: A/V offset %+.0f ms (%+.1f frames; positive: audio late), correlation %.2f, "
        "confidence %.2f (%s): %s",
        name, estimate.offset_ms, estimate.offset_frames(fps), estimate.correlation,
        estimate.confidence, "confident" if estimate.confident else "not confident", action,
    )
    info = {"mode": mode if isinstance(mode, str) else "fixed", **estimate.to_dict(),
            "applied_ms": round(applied, 1)}
    if applied:
        samples = shift_audio(samples, applied, cfg.audio.sample_rate)
    return samples, info


def load_mouth_basis(path: str | Path) -> Any:
    """The mouth PCA basis of a pca.npz, or of a mouth checkpoint (what it predicts in)."""
    from anchor.mouth.features import MouthPca

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"mouth basis {path} does not exist (a pca.npz or a mouth checkpoint.pt)")
    if path.suffix == ".npz":
        return MouthPca.load(path)
    from anchor.mouth.models import load_checkpoint

    try:
        basis = load_checkpoint(path).get("pca")
    except AnchorError as exc:
        raise DatasetError(f"mouth basis {path}: {exc}") from exc
    if basis is None:
        raise DatasetError(f"mouth basis {path}: the checkpoint records no PCA basis")
    comps = np.asarray(basis["components"], np.float32)
    return MouthPca(np.asarray(basis["mean"], np.float32), comps, np.zeros(len(comps), np.float32))


def _fit_pca(clips: list[_Clip], cfg: AnchorConfig, basis: Any = None) -> Any:
    from anchor.mouth.features import MouthPca

    rows = []
    for clip in clips:
        mouth = clip.arrays["mouth"]
        n = mouth.shape[0]
        n_val = int(round(n * cfg.mouth_train.val_fraction))  # as ClipData.split
        clip.train = range(0, n - n_val) if n - n_val > 0 else range(0, n)
        train = mouth[clip.train.start : clip.train.stop]
        mean = train.mean(axis=0) if cfg.face.per_clip_centering else np.zeros(mouth.shape[1])
        clip.arrays["mouth_mean"] = mean.astype(np.float32)
        rows.append(train - mean)
    x = np.concatenate(rows)
    if x.shape[0] <= cfg.face.pca_dims:
        raise DatasetError(
            f"only {x.shape[0]} training frames: too few for a {cfg.face.pca_dims}-D mouth PCA"
        )
    if basis is None:
        pca = MouthPca.fit(x, cfg.face.pca_dims)
    else:
        # A fixed basis (a generic model's, to fine-tune it): its share of this data's variance.
        centred = x - basis.mean
        total = float((centred.astype(np.float64) ** 2).sum())
        proj = centred @ basis.components.T
        ratio = (proj.astype(np.float64) ** 2).sum(axis=0) / total if total > 0 else np.zeros(basis.dims)
        pca = MouthPca(basis.mean, basis.components, ratio.astype(np.float32))
    for clip in clips:
        clip.arrays["mouth_pca"] = pca.transform(clip.arrays["mouth"] - clip.arrays["mouth_mean"])
    return pca


def prepare_dataset(
    videos: Sequence[str | Path],
    out: str | Path,
    cfg: AnchorConfig,
    *,
    skip_bad: bool = False,
    force: bool = False,
    progress: bool = True,
    mouth_basis: str | Path | None = None,
) -> Dataset:
    """Build the dataset at `out` from `videos` (see the module docstring) and load it back.

    A bad video (no audio track, no detectable face, undecodable) raises its AnchorError, or with
    `skip_bad` is logged as a one-line warning and skipped. An existing dataset at `out` is only
    replaced with `force`; any other existing non-empty path is never touched.
    """
    out = Path(out)
    if not videos:
        raise DatasetError("no input videos given")
    parse_av_offset(cfg.face.av_offset)  # a bad setting fails before any work
    basis = load_mouth_basis(mouth_basis) if mouth_basis is not None else None
    _check_output(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    t_start = time.perf_counter()
    try:
        (tmp / "clips").mkdir(parents=True)
        detector = _LazyDetector(cfg)
        clips: list[_Clip] = []
        taken: set[str] = set()
        skipped: list[str] = []
        for video in progress_bar(
            [Path(v) for v in videos], desc="videos", unit="video", disable=not progress
        ):
            name = _clip_name(video, taken)
            clip_dir = tmp / "clips" / name
            try:
                clips.append(_process_clip(video, clip_dir, name, cfg, detector, progress))
            except AnchorError as exc:
                shutil.rmtree(clip_dir, ignore_errors=True)
                if not skip_bad:
                    raise
                log.warning("skipping %s", exc)
                skipped.append(str(video))
                taken.discard(name)
        if not clips:
            raise DatasetError(f"none of the {len(videos)} videos gave a usable clip")

        pca = _fit_pca(clips, cfg, basis)
        pca.save(tmp / "pca.npz")
        for clip in clips:
            arrays: dict[str, Any] = clip.arrays
            np.savez(tmp / "clips" / clip.name / "features.npz", **arrays)
        ratio = [float(r) for r in pca.explained_variance_ratio]
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "config": {
                "audio": to_dict(cfg.audio),
                "video": to_dict(cfg.video),
                "face": to_dict(cfg.face),
            },
            "clips": [c.info for c in clips],
            "pca": {
                "dims": pca.dims,
                "explained_variance_ratio": ratio,
                "total": float(sum(ratio)),
                "val_fraction": cfg.mouth_train.val_fraction,
                "train_frames": int(sum(len(c.train) for c in clips)),
                "per_clip_centering": cfg.face.per_clip_centering,
                "basis_from": str(mouth_basis) if mouth_basis is not None else None,
            },
            "skipped": skipped,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        _replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info(
        "dataset %s: %d clips, %d frames, mouth PCA %d-D explains %.2f%% of the variance (%.1f s)",
        out, len(clips), sum(c.info["frames"] for c in clips), pca.dims, 100 * sum(ratio),
        time.perf_counter() - t_start,
    )
    return load_dataset(out)


def _replace(tmp: Path, out: Path) -> None:
    """Move the finished dataset into place; an existing one is removed only after that."""
    if not out.exists():
        tmp.rename(out)
        return
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    out.rename(old)
    try:
        tmp.rename(out)
    except OSError:
        old.rename(out)
        raise
    shutil.rmtree(old, ignore_errors=True)
