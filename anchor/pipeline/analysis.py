"""Audio analysis as plain synchronous code: 16 kHz samples -> one `SpeechFrame` per video frame.

`SpeechAnalyzer` chains VAD (webrtcvad), streaming MFCC and the sliding TCN window scheduler for
one segment of audio. It is testable without asyncio; the pipeline's analysis stage calls it in
a worker thread. Frame t owns samples [t*640, (t+1)*640) and MFCC rows 4t..4t+3; the scheduler
emits a frame once its window's future context (the lookahead) has arrived.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from anchor.audio.mfcc import MfccExtractor, silence_mfcc
from anchor.audio.vad import VoiceActivityDetector
from anchor.config import AudioConfig, MouthModelConfig, StreamingConfig
from anchor.mouth.streaming import InferFn, MouthWindowScheduler
from anchor.mouth.visemes import SpeechCues, VisemeShaper, frame_weights
from anchor.pipeline.items import STAMP_ANALYSED, STAMP_AUDIO_IN, SpeechFrame

log = logging.getLogger(__name__)


def preroll_speech(voiced: list[bool], t: int, preroll: int) -> bool:
    """Frame t speaks if it is voiced or a voiced frame follows within `preroll` frames.

    The pre-roll opens the mouth slightly before the sound onset, as people do; it only looks
    at frames the lookahead has already delivered (frames not yet seen count as unvoiced).
    """
    return any(voiced[t : t + preroll + 1])


@dataclass
class _PendingFrame:
    audio: np.ndarray
    voiced: bool
    audio_in: float


class SpeechAnalyzer:
    """VAD + MFCC + sliding TCN for one audio segment at `audio_cfg.sample_rate`.

    `push(samples, arrival)` returns the frames completed so far; `finish()` pads the segment end
    (audio with zeros up to a whole frame, MFCC windows with silence rows) and returns the rest,
    so a segment of N samples yields exactly ceil(N / samples_per_frame) frames.
    """

    def __init__(
        self,
        audio_cfg: AudioConfig,
        streaming: StreamingConfig,
        model_cfg: MouthModelConfig,
        infer: InferFn,
        *,
        fps: int = 25,
        preroll_frames: int = 2,
        time_fn: Callable[[], float] = time.monotonic,
        shaper: VisemeShaper | None = None,
    ) -> None:
        if audio_cfg.sample_rate % fps:
            raise ValueError(f"sample rate {audio_cfg.sample_rate} is not a multiple of fps {fps}")
        self.audio_cfg = audio_cfg
        self.streaming = streaming
        self.fps = fps
        self.samples_per_frame = audio_cfg.sample_rate // fps
        self.preroll_frames = min(preroll_frames, streaming.right_context_frames)
        self._mfcc = MfccExtractor(audio_cfg)
        self._vad = VoiceActivityDetector(audio_cfg)
        self._scheduler = MouthWindowScheduler(streaming, model_cfg, infer, silence_mfcc(audio_cfg))
        self._time_fn = time_fn
        self.shaper = shaper
        self.reset()

    @property
    def lookahead_ms(self) -> float:
        return self.streaming.lookahead_ms

    def reset(self) -> None:
        self._mfcc.reset()
        self._vad.reset()
        self._scheduler.reset()
        self._partial = np.zeros(0, dtype=np.float32)
        self._partial_in: float | None = None  # arrival of the partial frame's first sample
        self._frames: dict[int, _PendingFrame] = {}
        self._voiced: list[bool] = []
        self._n_samples = 0
        self._next_out = 0
        self._viseme_weights: dict[str, np.ndarray] = {}
        self._words: dict[int, tuple[str, ...]] = {}

    def begin(self, cues: SpeechCues | None) -> None:
        """A new segment starts (after `reset`): its TTS cues, if it has any. Phonemes constrain
        the mouth through the shaper; words are handed on with the frame they start in."""
        if cues is None:
            return
        fps = self.fps
        ends = [p.end_s for p in cues.phonemes] + [w.end_s for w in cues.words]
        n = int(max(ends, default=0.0) * fps) + 2
        if self.shaper is not None and cues.phonemes:
            self._viseme_weights = frame_weights(cues.phonemes, n, fps)
        words: dict[int, list[str]] = {}
        for w in cues.words:
            words.setdefault(max(0, int(w.start_s * fps + 1e-9)), []).append(w.word)
        self._words = {t: tuple(ws) for t, ws in words.items()}

    @property
    def samples_pushed(self) -> int:
        return self._n_samples

    def push(self, samples: np.ndarray, arrival: float) -> list[SpeechFrame]:
        """Feed float32 samples (any length) that reached the server at monotonic `arrival`."""
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        if x.size == 0:
            return []
        self._n_samples += x.size
        self._split_frames(x, arrival)
        emitted = self._scheduler.push(self._mfcc.push(x))
        return self._collect(emitted, arrival, final=False)

    def finish(self, arrival: float = 0.0) -> list[SpeechFrame]:
        """End of segment: emit every remaining frame, then reset for the next segment."""
        spf = self.samples_per_frame
        n_frames = -(-self._n_samples // spf)
        emitted: list[tuple[int, np.ndarray]] = []
        if n_frames:
            if self._partial.size:
                pad = np.zeros(spf - self._partial.size, dtype=np.float32)
                self._add_frame(np.concatenate([self._partial, pad]), self._partial_in or arrival)
                self._partial = np.zeros(0, dtype=np.float32)
            # MFCC rows 4t..4t+3 of the last frame need (win - hop) samples past its end.
            cfg = self.audio_cfg
            rows_needed = self.streaming_rows_per_frame * n_frames
            samples_needed = cfg.hop_samples * (rows_needed - 1) + cfg.win_samples
            tail = samples_needed - self._n_samples
            rows = self._mfcc.push(np.zeros(max(0, tail), dtype=np.float32))
            emitted = self._scheduler.push(rows) + self._scheduler.flush()
        out = self._collect(emitted, arrival, final=True)
        if len(self._frames):
            log.warning("analysis: %d frames had no mouth features at segment end", len(self._frames))
        self.reset()
        return out

    @property
    def streaming_rows_per_frame(self) -> int:
        return self._scheduler.rows_per_frame

    # -- internals -----------------------------------------------------------------------------
    def _split_frames(self, x: np.ndarray, arrival: float) -> None:
        spf = self.samples_per_frame
        if self._partial_in is None:
            self._partial_in = arrival
        buf = np.concatenate([self._partial, x]) if self._partial.size else x
        n_full = buf.size // spf
        for i in range(n_full):
            # Frames completed by this chunk: the first one started in an earlier chunk.
            first_in = self._partial_in if i == 0 else arrival
            self._add_frame(buf[i * spf : (i + 1) * spf].copy(), first_in)
        self._partial = buf[n_full * spf :].copy()
        if n_full:
            self._partial_in = arrival if self._partial.size else None

    def _add_frame(self, audio: np.ndarray, audio_in: float) -> None:
        voiced = self._vad.push(audio)
        t = len(self._voiced)
        self._voiced.append(voiced)
        self._frames[t] = _PendingFrame(audio, voiced, audio_in)

    def _collect(
        self, emitted: list[tuple[int, np.ndarray]], arrival: float, final: bool
    ) -> list[SpeechFrame]:
        out: list[SpeechFrame] = []
        now = self._time_fn()
        for t, features in emitted:
            pending = self._frames.pop(t, None)
            if pending is None:  # features beyond the audio (cannot happen with finish's padding)
                continue
            speech = preroll_speech(self._voiced, t, self.preroll_frames)
            feats = np.asarray(features, dtype=np.float32)
            if self._viseme_weights and self.shaper is not None:
                w = {k: v[t : t + 1] for k, v in self._viseme_weights.items() if t < v.size}
                if any(float(v[0]) > 0 for v in w.values()):
                    feats = self.shaper.apply(feats[None], w)[0]
            out.append(
                SpeechFrame(
                    index=t,
                    features=feats,
                    speech=speech,
                    audio=pending.audio,
                    timestamps={STAMP_AUDIO_IN: pending.audio_in, STAMP_ANALYSED: now},
                    words=self._words.get(t, ()),
                )
            )
            self._next_out = t + 1
        return out
