"""Reading video files: probe the streams, decode frames resampled to a fixed rate by timestamp.

Source clips come at 22-30 fps; everything downstream counts 25 fps frames, so `read_frames`
picks, for output frame k (time k / fps from the first frame), the source frame whose timestamp
is nearest. That drops or repeats frames but never shifts the timeline against the audio.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anchor.errors import FaceError


@dataclass(frozen=True)
class VideoInfo:
    """What `probe_video` found. `frames` is the source stream's frame count (estimated from the
    duration when the container does not say); `duration` is the video stream's length in seconds.
    `audio_offset` is the audio stream's start minus the video stream's start, in seconds."""

    width: int
    height: int
    fps: float
    duration: float
    has_audio: bool
    frames: int
    audio_offset: float = 0.0

    def frames_at(self, fps: float) -> int:
        """Expected number of frames `read_frames(path, fps)` yields (for progress bars)."""
        return max(1, round(self.duration * fps))


def _open(path: Path):  # type: ignore[no-untyped-def]
    import av

    if not path.is_file():
        raise FaceError(f"{path}: no such file")
    try:
        return av.open(str(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise FaceError(f"{path}: cannot decode ({_reason(exc)})") from exc


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _stream_start(stream) -> float:  # type: ignore[no-untyped-def]
    if stream.start_time is None or stream.time_base is None:
        return 0.0
    return float(stream.start_time * stream.time_base)


def probe_video(path: str | Path) -> VideoInfo:
    """Stream facts without decoding. FaceError when the file cannot be opened or has no video."""
    p = Path(path)
    container = _open(p)
    try:
        if not container.streams.video:
            raise FaceError(f"{p}: no video stream")
        vs = container.streams.video[0]
        ctx = vs.codec_context
        rate = vs.average_rate or vs.guessed_rate or vs.base_rate
        fps = float(rate) if rate else 0.0
        if vs.duration is not None and vs.time_base is not None:
            duration = float(vs.duration * vs.time_base)
        elif container.duration is not None:
            duration = container.duration / 1e6
        else:
            duration = 0.0
        frames = int(vs.frames or 0)
        if frames <= 0 and fps > 0:
            frames = int(round(duration * fps))
        if frames > 0 and fps > 0 and duration <= 0:
            duration = frames / fps
        has_audio = bool(container.streams.audio)
        offset = 0.0
        if has_audio:
            offset = _stream_start(container.streams.audio[0]) - _stream_start(vs)
        if ctx.width <= 0 or ctx.height <= 0:
            raise FaceError(f"{p}: cannot decode (video stream has no frame size)")
        return VideoInfo(
            width=int(ctx.width), height=int(ctx.height), fps=fps, duration=duration,
            has_audio=has_audio, frames=frames, audio_offset=offset,
        )
    finally:
        container.close()


def read_frames(path: str | Path, fps: float = 25) -> Iterator[np.ndarray]:
    """Decode RGB uint8 frames (H, W, 3) resampled to `fps` by timestamp (nearest source frame).

    Output frame k shows time k / fps after the first source frame; the stream yields
    round((last_pts - first_pts + 1 / source_fps) * fps) frames, i.e. the video's duration.
    """
    import av

    p = Path(path)
    container = _open(p)
    try:
        if not container.streams.video:
            raise FaceError(f"{p}: no video stream")
        vs = container.streams.video[0]
        vs.thread_type = "AUTO"
        rate = vs.average_rate or vs.guessed_rate
        src_period = 1.0 / float(rate) if rate else 1.0 / fps
        t0: float | None = None
        prev = None  # the latest decoded source frame, kept as an av.VideoFrame until needed
        prev_rgb: np.ndarray | None = None
        prev_t = 0.0
        k = 0
        n_src = 0
        try:
            for frame in container.decode(vs):
                t_abs = frame.time if frame.time is not None else n_src * src_period
                n_src += 1
                if t0 is None:
                    t0 = t_abs
                t = t_abs - t0
                if prev is not None:
                    if t <= prev_t:  # duplicate/out-of-order timestamp: keep the newer picture
                        prev, prev_rgb = frame, None
                        continue
                    mid = 0.5 * (prev_t + t)
                    while k / fps < mid - 1e-9:
                        if prev_rgb is None:
                            prev_rgb = prev.to_ndarray(format="rgb24")
                        yield prev_rgb
                        k += 1
                prev, prev_rgb, prev_t = frame, None, t
        except av.error.FFmpegError as exc:
            if prev is None:
                raise FaceError(f"{p}: cannot decode ({_reason(exc)})") from exc
            # a damaged tail: keep what decoded (the caller sees fewer frames)
        if prev is None:
            raise FaceError(f"{p}: cannot decode (no video frames)")
        n_total = max(k + 1, int(math.floor((prev_t + src_period) * fps + 0.5)))
        while k < n_total:
            if prev_rgb is None:
                prev_rgb = prev.to_ndarray(format="rgb24")
            yield prev_rgb
            k += 1
    finally:
        container.close()
