"""Pipeline test helpers: the tiny synthetic avatar bundle with a test engine and a loudness mouth.

The mouth "model" maps each output frame's MFCC energy (c0, rows 4t..4t+3 of the window) to the
first PCA feature, so louder audio opens the mouth: tests can tell speech frames from silence by
looking at the pictures, and compare with offline sliding-window inference.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tiny_bundle import make_tiny_bundle

from anchor.avatar.bundle import AvatarBundle, load_avatar
from anchor.config import AnchorConfig, StreamingConfig
from anchor.pipeline.models import PipelineModels, mouth_box
from anchor.render.engine import AvatarEngine

SR = 16000
SPF = 640


class EchoBackend:
    """The facial map is the face (what the tiny bundle's identity renderer computes)."""

    name = "echo"

    def __init__(self, resolution: int) -> None:
        self.resolution = resolution

    def warmup(self) -> None:
        pass

    def infer(self, maps: np.ndarray) -> np.ndarray:
        return maps.copy()

    def close(self) -> None:
        pass


def loudness_infer(batch: np.ndarray) -> np.ndarray:
    """(B, 200, 13) MFCC -> (B, 50, 10): feature 0 rises with the frame's c0 (energy)."""
    b = batch.shape[0]
    c0 = batch[:, :, 0].reshape(b, 50, 4).mean(axis=2)  # (B, 50): rows 4j..4j+3 -> frame j
    out = np.zeros((b, 50, 10), np.float32)
    out[:, :, 0] = np.clip((c0 + 260.0) / 150.0, 0.0, 0.6)  # silence 0, speech 0.1..0.6
    return out


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> AvatarBundle:
    path = make_tiny_bundle(tmp_path_factory.mktemp("pipeline") / "tiny", n_frames=6)
    return load_avatar(path)


def make_models(bundle: AvatarBundle, hop_frames: int = 2, right_context: int = 4) -> PipelineModels:
    cfg = AnchorConfig()
    engine = AvatarEngine(bundle, cfg, EchoBackend(bundle.face_resolution))
    streaming = dataclasses.replace(
        StreamingConfig(), hop_frames=hop_frames, right_context_frames=right_context
    )
    return PipelineModels(
        engine=engine, infer=loudness_infer, audio=cfg.audio, streaming=streaming,
        mouth_model=cfg.mouth_model, fps=25, name="tiny",
        info={"mouth_box": mouth_box(bundle), "frame_size": engine.frame_size},
    )


@pytest.fixture()
def models(tiny_bundle: AvatarBundle) -> PipelineModels:
    return make_models(tiny_bundle)


def speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    """Voiced, syllable-modulated harmonic sound webrtcvad calls speech (16 kHz float32)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 140 + 20 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 4 * t)  # ~4 syllables per second
    x = x * envelope + 0.02 * rng.standard_normal(t.size)
    return (0.25 * x / np.max(np.abs(x))).astype(np.float32)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SR), np.float32)


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1 s of silence, 2 s of speech-like sound, 1 s of silence as a 16-bit WAV."""
    import wave

    x = np.concatenate([silence(1.0), speechlike(2.0), silence(1.0)])
    path = tmp_path_factory.mktemp("audio") / "speech.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes((x * 32767).astype("<i2").tobytes())
    return path


async def run_stage(make: Any, items: list[Any], *, out_ms: float = 1e7) -> list[Any]:
    """Run one stage over `items` (EndOfStream appended) and return what it put out, in order.

    `make(inq, outq)` builds the stage between two unbounded test queues; the stage runs until
    it forwards EndOfStream. A stage test is then a few lines: items in, items out."""
    from anchor.pipeline.items import EndOfStream
    from anchor.pipeline.queues import DropPolicy, MediaQueue

    inq: MediaQueue[Any] = MediaQueue("in", 1e7, DropPolicy.BLOCK, lambda _i: 0.0)
    outq: MediaQueue[Any] = MediaQueue("out", out_ms, DropPolicy.BLOCK, lambda _i: 0.0)
    for item in [*items, EndOfStream()]:
        await inq.put(item)
    stage = make(inq, outq)
    await stage.run()
    out = []
    while True:
        item = await outq.get()
        if isinstance(item, EndOfStream):
            return out
        out.append(item)
