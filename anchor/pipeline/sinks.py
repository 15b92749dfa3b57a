"""Where offline frames go: an MP4 file (H.264 video + AAC audio) written with PyAV.

The file is written to a temporary name next to the target and renamed when complete, so a
failed render never leaves a half-written MP4 behind. Audio is the pipeline's 16 kHz timeline,
upsampled to 48 kHz for AAC (a 1024-sample AAC frame is then 21 ms, so the audio track's length
stays within a video frame of the picture's).
"""

from __future__ import annotations

import contextlib
import logging
import os
from fractions import Fraction
from pathlib import Path

import numpy as np

from anchor.errors import RenderError

log = logging.getLogger(__name__)

AAC_RATE = 48000


class Mp4Writer:
    """Synchronous writer: `write(image, audio)` per frame, then `close()` (or `abort()`)."""

    def __init__(
        self,
        path: str | Path,
        *,
        fps: int,
        sample_rate: int,
        width: int,
        height: int,
        crf: int = 20,
        preset: str = "veryfast",
    ) -> None:
        import av

        self.path = Path(path)
        self.fps = fps
        self.sample_rate = sample_rate
        # yuv420p needs even dimensions: crop the last row/column if odd.
        self.width = width - width % 2
        self.height = height - height % 2
        self.frames = 0
        self.audio_samples = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.stem}.tmp-{os.getpid()}{self.path.suffix}")
        try:
            self._container = av.open(str(self._tmp), "w", format="mp4")
        except (av.FFmpegError, OSError) as exc:
            raise RenderError(f"{self.path}: cannot create output ({exc})") from exc
        self._video = self._container.add_stream("libx264", rate=fps)
        self._video.width = self.width
        self._video.height = self.height
        self._video.pix_fmt = "yuv420p"
        self._video.options = {"crf": str(crf), "preset": preset}
        self._audio = self._container.add_stream("aac", rate=AAC_RATE)
        self._audio.layout = "mono"
        self._resampler = av.AudioResampler(format="fltp", layout="mono", rate=AAC_RATE)
        self._closed = False

    def write(self, image: np.ndarray, audio: np.ndarray) -> None:
        import av

        img = np.ascontiguousarray(image[: self.height, : self.width])
        vf = av.VideoFrame.from_ndarray(img, format="rgb24")
        vf.pts = self.frames
        vf.time_base = Fraction(1, self.fps)
        for packet in self._video.encode(vf):
            self._container.mux(packet)
        self.frames += 1
        a = np.asarray(audio, dtype=np.float32).reshape(1, -1)
        af = av.AudioFrame.from_ndarray(a, format="flt", layout="mono")
        af.sample_rate = self.sample_rate
        af.pts = self.audio_samples
        af.time_base = Fraction(1, self.sample_rate)
        self.audio_samples += a.shape[1]
        for rf in self._resampler.resample(af):
            for packet in self._audio.encode(rf):
                self._container.mux(packet)

    def close(self) -> Path:
        if self._closed:
            return self.path
        try:
            for rf in self._resampler.resample(None):
                for packet in self._audio.encode(rf):
                    self._container.mux(packet)
            for packet in self._audio.encode(None):
                self._container.mux(packet)
            for packet in self._video.encode(None):
                self._container.mux(packet)
            self._container.close()
        except Exception:
            self.abort()
            raise
        self._closed = True
        os.replace(self._tmp, self.path)
        log.info("wrote %s: %d frames (%.2f s)", self.path, self.frames, self.frames / self.fps)
        return self.path

    def abort(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):  # a broken container: nothing more to save
            self._container.close()
        self._tmp.unlink(missing_ok=True)
