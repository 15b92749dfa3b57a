"""Decode any file PyAV reads (wav, mp3, mp4, ...) to mono float32 at one sample rate."""

from __future__ import annotations

import logging
from pathlib import Path

import av
import numpy as np

from anchor.errors import AudioError

log = logging.getLogger(__name__)


def decode_audio(path: str | Path, sample_rate: int = 16000) -> np.ndarray:
    """Mono float32 samples in [-1, 1] of the first audio track, resampled to `sample_rate`.

    Raises AudioError "PATH: no such file" / "PATH: no audio track" / "PATH: cannot decode (why)".
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if not path.is_file():
        raise AudioError(f"{path}: not a file")
    if sample_rate <= 0:
        raise AudioError(f"{path}: invalid target sample rate {sample_rate}")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise AudioError(f"{path}: cannot decode ({_reason(exc)})") from exc
    chunks: list[np.ndarray] = []
    try:
        if not container.streams.audio:
            raise AudioError(f"{path}: no audio track")
        stream = container.streams.audio[0]
        # ffmpeg's stereo->mono downmix is equal-power (+3 dB when L == R, clipping loud
        # speech), so stereo is resampled as two planes and averaged; other layouts use
        # ffmpeg's downmix, which knows what a centre or LFE channel is.
        stereo = stream.codec_context.layout.nb_channels == 2
        resampler = av.AudioResampler(
            format="fltp" if stereo else "flt",
            layout="stereo" if stereo else "mono",
            rate=sample_rate,
        )

        def collect(frames: list[av.AudioFrame]) -> None:
            for out in frames:
                planes = out.to_ndarray()
                chunks.append(planes.mean(axis=0) if stereo else planes.reshape(-1))

        for frame in container.decode(stream):
            collect(resampler.resample(frame))
        collect(resampler.resample(None))  # drain the resampler's delay line
    except AudioError:
        raise
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise AudioError(f"{path}: cannot decode ({_reason(exc)})") from exc
    finally:
        container.close()
    if not chunks:
        raise AudioError(f"{path}: cannot decode (audio track has no samples)")
    samples = np.concatenate(chunks).astype(np.float32, copy=False)
    # Resampling can overshoot full-scale input slightly; the contract is [-1, 1].
    np.clip(samples, -1.0, 1.0, out=samples)
    log.debug("decoded %s: %d samples at %d Hz", path, samples.size, sample_rate)
    return samples


def _reason(exc: BaseException) -> str:
    """One-line reason without the path PyAV repeats in its messages."""
    text = getattr(exc, "strerror", None) or str(exc)
    return " ".join(str(text).split()) or type(exc).__name__
