"""Streaming windows: the scheduler equals offline windowed inference; lookahead arithmetic."""

from __future__ import annotations

import numpy as np
import pytest

from anchor.config import AudioConfig, MouthModelConfig, StreamingConfig
from anchor.errors import MouthError
from anchor.mouth.streaming import (
    MouthWindowScheduler,
    frames_available_for,
    windowed_inference,
)

MODEL = MouthModelConfig()
PAD = np.linspace(-1.0, 1.0, 13).astype(np.float32)  # distinct from the data, to see padding


def numpy_infer(batch: np.ndarray) -> np.ndarray:
    """Deterministic window function whose every output depends on the whole window and position."""
    b = batch.shape[0]
    frames = batch.reshape(b, 50, 4, 13).mean(axis=2)  # (B, 50, 13)
    w = np.sin(np.arange(13 * 10).reshape(13, 10)).astype(np.float32)
    pos = np.arange(50, dtype=np.float32)[None, :, None] * 0.01
    ctx = batch.mean(axis=(1, 2))[:, None, None]
    return (frames @ w + pos + ctx).astype(np.float32)


def stream(sched: MouthWindowScheduler, mfcc: np.ndarray, chunks: list[int]) -> np.ndarray:
    got: list[tuple[int, np.ndarray]] = []
    i, c = 0, 0
    while i < len(mfcc):
        n = chunks[c % len(chunks)]
        got += sched.push(mfcc[i : i + n])
        i += n
        c += 1
    got += sched.flush()
    idx = [f for f, _ in got]
    assert idx == list(range(len(idx))), "frames must come out once each, in order"
    return np.stack([v for _, v in got]) if got else np.zeros((0, 10), np.float32)


@pytest.mark.parametrize("hop,right", [(30, 10), (5, 10), (1, 10), (1, 0), (40, 0), (20, 5)])
@pytest.mark.parametrize("rows", [1203, 400, 37])
def test_streamed_equals_offline(hop: int, right: int, rows: int) -> None:
    st = StreamingConfig(hop_frames=hop, right_context_frames=right)
    mfcc = np.random.default_rng(rows).standard_normal((rows, 13)).astype(np.float32)
    offline = windowed_inference(mfcc, numpy_infer, st, MODEL, PAD)
    assert offline.shape == (rows // 4, 10)
    sched = MouthWindowScheduler(st, MODEL, numpy_infer, PAD)
    streamed = stream(sched, mfcc, [7, 1, 33, 13, 120])
    assert streamed.shape == offline.shape
    np.testing.assert_allclose(streamed, offline, atol=1e-6)


def test_streamed_equals_offline_with_torch_model() -> None:
    torch = pytest.importorskip("torch")
    from anchor.mouth.models import MouthTcn

    torch.manual_seed(0)
    torch.set_num_threads(1)
    cfg = MouthModelConfig(channels=16, fc_hidden=16, dilations=(1, 2))
    net = MouthTcn(cfg).eval()

    def infer(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return net(torch.from_numpy(batch)).numpy()

    mfcc = np.random.default_rng(1).standard_normal((811, 13)).astype(np.float32)
    for hop in (1, 5, 30):
        st = StreamingConfig(hop_frames=hop, right_context_frames=10)
        offline = windowed_inference(mfcc, infer, st, cfg, PAD)
        streamed = stream(MouthWindowScheduler(st, cfg, infer, PAD), mfcc, [3, 50, 11])
        np.testing.assert_allclose(streamed, offline, atol=1e-5)


def test_first_window_starts_keep_start_frames_before_zero_with_silence() -> None:
    st = StreamingConfig()  # hop 30, right 10 -> keep_start 10
    seen: list[np.ndarray] = []

    def recording(batch: np.ndarray) -> np.ndarray:
        seen.extend(batch)
        return numpy_infer(batch)

    mfcc = np.random.default_rng(2).standard_normal((1000, 13)).astype(np.float32)
    windowed_inference(mfcc, recording, st, MODEL, PAD)
    first = seen[0]
    np.testing.assert_array_equal(first[: 4 * st.keep_start], np.tile(PAD, (40, 1)))
    np.testing.assert_array_equal(first[4 * st.keep_start :], mfcc[: 200 - 40])
    # The last window is padded with silence after the stream's end.
    assert len(seen) == -(-(1000 // 4) // 30)
    np.testing.assert_array_equal(seen[-1][-1], PAD)


def test_silence_row_pads_real_streams() -> None:
    """The audio helper's silence row has the right shape for the scheduler's padding."""
    mfcc_mod = pytest.importorskip("anchor.audio.mfcc")
    pad = mfcc_mod.silence_mfcc(AudioConfig())
    assert pad.shape == (13,)
    sched = MouthWindowScheduler(StreamingConfig(), MODEL, numpy_infer, pad)
    out = sched.push(np.zeros((0, 13), np.float32)) + sched.flush()
    assert out == []


def test_lookahead_math() -> None:
    st = StreamingConfig()  # paper: hop 30, 10 trimmed each side
    assert st.keep_start == 10
    assert st.lookahead_ms == pytest.approx(400.0)
    st5 = StreamingConfig(hop_frames=5, right_context_frames=10)
    assert st5.keep_start == 35 and st5.lookahead_ms == pytest.approx(400.0)
    # A frame is emitted exactly when its window's last MFCC row arrives.
    for cfg in (st, st5, StreamingConfig(hop_frames=1, right_context_frames=3)):
        sched = MouthWindowScheduler(cfg, MODEL, numpy_infer, PAD)
        emitted_at: dict[int, int] = {}
        for row in range(4 * 200):
            for f, _ in sched.push(np.zeros((1, 13), np.float32)):
                emitted_at[f] = row + 1
        for f, rows in emitted_at.items():
            assert rows == 4 * frames_available_for(f, cfg)
            # The last kept frame of a window needs exactly right_context frames of future audio.
            wait = rows / 4 - (f + 1)
            assert cfg.right_context_frames <= wait <= cfg.right_context_frames + cfg.hop_frames - 1
        last_kept = [f for f in emitted_at if f % cfg.hop_frames == cfg.hop_frames - 1]
        assert last_kept
        for f in last_kept:
            assert (emitted_at[f] / 4 - (f + 1)) * 1000 / cfg.fps == pytest.approx(cfg.lookahead_ms)


def test_reset_starts_a_new_stream() -> None:
    st = StreamingConfig(hop_frames=5)
    mfcc = np.random.default_rng(3).standard_normal((300, 13)).astype(np.float32)
    sched = MouthWindowScheduler(st, MODEL, numpy_infer, PAD)
    sched.push(np.ones((123, 13), np.float32))
    sched.reset()
    again = stream(sched, mfcc, [17])
    np.testing.assert_allclose(again, windowed_inference(mfcc, numpy_infer, st, MODEL, PAD), atol=1e-6)


def test_mismatched_window_is_rejected() -> None:
    with pytest.raises(MouthError, match="window_out"):
        MouthWindowScheduler(StreamingConfig(window_out=40), MODEL, numpy_infer, PAD)
