"""Decode any file PyAV reads (wav, mp3, mp4, ...) to mono float32 at one sample rate.

`iter_audio` decodes incrementally, in fixed-size chunks, and can stop at a duration limit
(`AudioTooLong`) before it has decoded more than the limit: a tiny file of hours of silence must
not become gigabytes of samples. `decode_audio` is the whole-file convenience built on it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

from anchor.errors import AudioError

log = logging.getLogger(__name__)

# Container padding / resampler delay can make a file's declared duration overshoot what it
# decodes to by a few milliseconds; a file is rejected up front only past this much slack.
_DECLARED_SLACK_S = 0.1


class AudioTooLong(AudioError):
    """The audio is longer than a duration limit (raised before decoding past the limit)."""

    def __init__(self, path: str | Path, limit_s: float, seconds: float | None) -> None:
        self.limit_s = limit_s
        self.seconds = seconds  # declared duration when known, else None ("more than")
        length = f"{seconds:.0f} s long" if seconds is not None else f"more than {limit_s:g} s long"
        super().__init__(f"{path}: the audio is {length}, longer than the {limit_s:g} s limit")


class DecodeCancelled(AudioError):
    """`iter_audio`'s `cancel` event was set (the caller stopped waiting)."""


def iter_audio(
    path: str | Path,
    sample_rate: int = 16000,
    *,
    chunk_s: float = 0.2,
    max_seconds: float | None = None,
    cancel: threading.Event | None = None,
) -> Iterator[np.ndarray]:
    """Mono float32 chunks in [-1, 1] of the first audio track, resampled to `sample_rate`.

    Every chunk has round(chunk_s * sample_rate) samples except the last. With `max_seconds`,
    raises AudioTooLong up front when the container declares a longer duration, and otherwise as
    soon as the decoded audio passes the limit (so at most `max_seconds` are ever decoded).
    Raises AudioError "PATH: no such file" / "PATH: no audio track" / "PATH: cannot decode (why)";
    DecodeCancelled once `cancel` is set. Errors surface on the first `next()` (it is a generator).
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if not path.is_file():
        raise AudioError(f"{path}: not a file")
    if sample_rate <= 0:
        raise AudioError(f"{path}: invalid target sample rate {sample_rate}")
    chunk = max(1, round(chunk_s * sample_rate))
    limit = None if max_seconds is None else int(max_seconds * sample_rate)
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise AudioError(f"{path}: cannot decode ({_reason(exc)})") from exc
    try:
        if not container.streams.audio:
            raise AudioError(f"{path}: no audio track")
        stream = container.streams.audio[0]
        if max_seconds is not None:
            declared = _declared_seconds(container, stream)
            if declared is not None and declared > max_seconds + _DECLARED_SLACK_S:
                raise AudioTooLong(path, max_seconds, declared)
        # ffmpeg's stereo->mono downmix is equal-power (+3 dB when L == R, clipping loud
        # speech), so stereo is resampled as two planes and averaged; other layouts use
        # ffmpeg's downmix, which knows what a centre or LFE channel is.
        stereo = stream.codec_context.layout.nb_channels == 2
        resampler = av.AudioResampler(
            format="fltp" if stereo else "flt",
            layout="stereo" if stereo else "mono",
            rate=sample_rate,
        )
        pending: list[np.ndarray] = []
        pending_n = 0
        total = 0

        def resampled(frame: av.AudioFrame | None) -> Iterator[np.ndarray]:
            for out in resampler.resample(frame):
                planes = out.to_ndarray()
                yield planes.mean(axis=0) if stereo else planes.reshape(-1)

        def frames() -> Iterator[np.ndarray]:
            for frame in container.decode(stream):
                if cancel is not None and cancel.is_set():
                    raise DecodeCancelled(f"{path}: decoding cancelled")
                yield from resampled(frame)
            yield from resampled(None)  # drain the resampler's delay line

        for piece in frames():
            total += piece.size
            if limit is not None and total > limit:
                raise AudioTooLong(path, float(max_seconds or 0.0), None)
            pending.append(piece)
            pending_n += piece.size
            if pending_n < chunk:
                continue
            buf = np.concatenate(pending)
            n_full = buf.size - buf.size % chunk
            for i in range(0, n_full, chunk):
                # A copy, so a chunk never pins a bigger buffer once its neighbours are freed.
                yield _finish(buf[i : i + chunk].copy())
            pending = [buf[n_full:]] if n_full < buf.size else []
            pending_n = buf.size - n_full
        if pending_n:
            yield _finish(np.concatenate(pending))
        if total == 0:
            raise AudioError(f"{path}: cannot decode (audio track has no samples)")
        log.debug("decoded %s: %d samples at %d Hz", path, total, sample_rate)
    except AudioError:
        raise
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise AudioError(f"{path}: cannot decode ({_reason(exc)})") from exc
    finally:
        container.close()


def decode_audio(
    path: str | Path, sample_rate: int = 16000, *, max_seconds: float | None = None
) -> np.ndarray:
    """Mono float32 samples in [-1, 1] of the first audio track, resampled to `sample_rate`.

    Raises AudioError "PATH: no such file" / "PATH: no audio track" / "PATH: cannot decode (why)",
    and AudioTooLong past `max_seconds`.
    """
    # 30 s chunks: few pieces to join, and only one extra chunk of memory while joining.
    chunks = list(iter_audio(path, sample_rate, chunk_s=30.0, max_seconds=max_seconds))
    return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)


def _finish(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32, copy=False)
    # Resampling can overshoot full-scale input slightly; the contract is [-1, 1].
    np.clip(x, -1.0, 1.0, out=x)
    return x


def _declared_seconds(container: av.container.InputContainer, stream: av.AudioStream) -> float | None:
    """The duration the file declares (stream, else container), or None when it declares none."""
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    return None


def _reason(exc: BaseException) -> str:
    """One-line reason without the path PyAV repeats in its messages."""
    text = getattr(exc, "strerror", None) or str(exc)
    return " ".join(str(text).split()) or type(exc).__name__
