"""Voice activity detection around webrtcvad, with hangover, fed float chunks of any size."""

from __future__ import annotations

import numpy as np
import webrtcvad

from anchor.config import AudioConfig
from anchor.errors import AudioError

_VAD_RATES = (8000, 16000, 32000, 48000)
_VAD_FRAME_MS = (10, 20, 30)


class VoiceActivityDetector:
    """`.push(samples)` -> speech state after the chunk.

    Samples are float32 in [-1, 1] at cfg.sample_rate; they are cut into cfg.vad_frame_ms PCM16
    frames internally (a partial frame waits for the next chunk); frames below cfg.vad_min_dbfs RMS
    are unvoiced whatever webrtcvad says. The state stays True for
    cfg.vad_hangover_ms after the last voiced frame so short pauses between words do not flap.
    """

    def __init__(self, cfg: AudioConfig) -> None:
        if cfg.sample_rate not in _VAD_RATES:
            raise AudioError(f"vad: sample rate {cfg.sample_rate} not one of {_VAD_RATES}")
        if cfg.vad_frame_ms not in _VAD_FRAME_MS:
            raise AudioError(f"vad: vad_frame_ms {cfg.vad_frame_ms} not one of {_VAD_FRAME_MS}")
        if not 0 <= cfg.vad_aggressiveness <= 3:
            raise AudioError(f"vad: aggressiveness {cfg.vad_aggressiveness} not in 0..3")
        self.cfg = cfg
        self.frame_samples = cfg.sample_rate * cfg.vad_frame_ms // 1000
        self.hangover_frames = -(-max(0, cfg.vad_hangover_ms) // cfg.vad_frame_ms)  # ceil
        # Energy gate on top of webrtcvad, which calls steady low-level hiss speech.
        self._min_sq = (32768.0 * 10.0 ** (cfg.vad_min_dbfs / 20.0)) ** 2
        self._vad = webrtcvad.Vad(cfg.vad_aggressiveness)
        self.reset()

    def reset(self) -> None:
        self._pending = np.zeros(0, dtype="<i2")
        self._hangover_left = 0
        self.speech = False
        self.frames_seen = 0

    def push(self, samples: np.ndarray) -> bool:
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        pcm = (np.clip(x, -1.0, 1.0) * 32767.0).round().astype("<i2")
        buf = np.concatenate([self._pending, pcm]) if pcm.size else self._pending
        n_full = buf.size // self.frame_samples
        frames = buf[: n_full * self.frame_samples].reshape(n_full, self.frame_samples)
        loud = np.mean(frames.astype(np.float64) ** 2, axis=1) >= self._min_sq
        for frame, is_loud in zip(frames, loud, strict=True):  # webrtcvad: one frame per call
            voiced = bool(is_loud) and self._vad.is_speech(frame.tobytes(), self.cfg.sample_rate)
            if voiced:
                self._hangover_left = self.hangover_frames
                self.speech = True
            elif self._hangover_left > 0:
                self._hangover_left -= 1
                self.speech = True
            else:
                self.speech = False
        self.frames_seen += n_full
        self._pending = buf[n_full * self.frame_samples :].copy()
        return self.speech
