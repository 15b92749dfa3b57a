"""Sliding non-causal windows over an MFCC stream (paper §3.1: overlapping windows, edges trimmed).

A window yields `window_out` (50) frames from `window_in` (200) MFCC rows. Window k covers video
frames [k*hop - keep_start, k*hop - keep_start + window_out) and keeps the `hop` frames
[k*hop, (k+1)*hop), i.e. output positions [keep_start, keep_start + hop); the
`right_context_frames` positions after them are future audio that is heard but thrown away, and
the `keep_start` positions before them are past audio. With the paper's hop 30 and 10 trimmed
each side, keep_start = 10.

The stream is padded with silence MFCC rows before frame 0 and after the last frame, so the first
window starts `keep_start` frames before frame 0 and the output has exactly total_rows // 4
frames. `windowed_inference` (offline) and `MouthWindowScheduler` (streaming) produce the same
numbers: the scheduler runs a window as soon as its last MFCC row has arrived.

Lookahead: the last frame a window keeps needs `right_context_frames` frames of audio after its
own end (StreamingConfig.lookahead_ms); the first kept frame waits a further hop - 1 frames.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from anchor.config import MouthModelConfig, StreamingConfig
from anchor.errors import MouthError

log = logging.getLogger(__name__)

InferFn = Callable[[np.ndarray], np.ndarray]  # (B, 200, 13) float32 -> (B, 50, 10)


def _check(streaming: StreamingConfig, model: MouthModelConfig) -> int:
    """Validate the pairing and return MFCC rows per video frame."""
    streaming.validate()
    if streaming.window_out != model.window_out:
        raise MouthError(
            f"streaming.window_out ({streaming.window_out}) differs from the mouth model's "
            f"window_out ({model.window_out})"
        )
    if model.window_in % model.window_out:
        raise MouthError(
            f"mouth_model.window_in ({model.window_in}) must be a multiple of window_out ({model.window_out})"
        )
    return model.window_in // model.window_out


def frames_available_for(frame: int, streaming: StreamingConfig) -> int:
    """Video frames of audio that must have arrived before `frame`'s features can be produced.

    Frame t is kept by window k = t // hop, which ends at frame (k+1)*hop + right_context.
    """
    k = frame // streaming.hop_frames
    return (k + 1) * streaming.hop_frames + streaming.right_context_frames


def window_count(n_frames: int, streaming: StreamingConfig) -> int:
    return -(-n_frames // streaming.hop_frames)


def windowed_inference(
    mfcc: np.ndarray,
    infer: InferFn,
    streaming: StreamingConfig,
    model: MouthModelConfig,
    pad_row: np.ndarray,
    batch_size: int = 64,
) -> np.ndarray:
    """Offline sliding-window inference: MFCC (M, 13) -> mouth features (M // 4, pca_dims)."""
    r = _check(streaming, model)
    mfcc = np.asarray(mfcc, dtype=np.float32)
    n_frames = mfcc.shape[0] // r
    out = np.zeros((n_frames, model.pca_dims), dtype=np.float32)
    if n_frames == 0:
        return out
    hop, ks, w_in = streaming.hop_frames, streaming.keep_start, model.window_in
    n_win = window_count(n_frames, streaming)
    front = ks * r
    end_row = ((n_win - 1) * hop - ks) * r + w_in  # last window's end, in unpadded rows
    back = max(0, end_row - mfcc.shape[0])
    pad = np.asarray(pad_row, dtype=np.float32).reshape(1, -1)
    padded = np.concatenate([np.repeat(pad, front, 0), mfcc, np.repeat(pad, back, 0)])
    starts = [k * hop * r for k in range(n_win)]  # in padded rows (front pad = ks*r)
    for b0 in range(0, n_win, batch_size):
        ks_batch = range(b0, min(n_win, b0 + batch_size))
        batch = np.stack([padded[starts[k] : starts[k] + w_in] for k in ks_batch])
        pred = np.asarray(infer(batch), dtype=np.float32)  # (B, 50, 10)
        for j, k in enumerate(ks_batch):
            f0 = k * hop
            n = min(hop, n_frames - f0)
            out[f0 : f0 + n] = pred[j, ks : ks + n]
    return out


class MouthWindowScheduler:
    """Streaming counterpart of `windowed_inference`: push MFCC rows, get frames when ready.

    `push` returns (frame index, features (pca_dims,)) for every frame whose window is complete;
    `flush` pads the stream end with silence rows and returns the remaining frames, so that after
    it exactly total_rows // 4 frames have been emitted, equal to `windowed_inference`.
    """

    def __init__(
        self,
        streaming: StreamingConfig,
        model: MouthModelConfig,
        infer: InferFn,
        pad_row: np.ndarray,
        max_batch: int = 16,
    ) -> None:
        self.rows_per_frame = _check(streaming, model)
        self.streaming = streaming
        self.model = model
        self.infer = infer
        self.pad_row = np.asarray(pad_row, dtype=np.float32).reshape(1, -1)
        self.max_batch = max_batch
        log.info(
            "mouth windows: hop %d frames (%.0f ms), lookahead %.0f ms (right context %d frames)",
            streaming.hop_frames, streaming.hop_ms, streaming.lookahead_ms,
            streaming.right_context_frames,
        )
        self.reset()

    @property
    def lookahead_ms(self) -> float:
        return self.streaming.lookahead_ms

    def reset(self) -> None:
        """Forget the stream; the next row pushed is row 0 of a new one."""
        front = self.streaming.keep_start * self.rows_per_frame
        self._buf = np.repeat(self.pad_row, front, 0)  # rows from _buf_start on, padded coordinates
        self._buf_start = 0
        self._next_window = 0
        self._rows_in = 0  # real rows pushed

    @property
    def rows_pushed(self) -> int:
        return self._rows_in

    @property
    def next_frame(self) -> int:
        """Index of the next frame to be emitted."""
        return self._next_window * self.streaming.hop_frames

    def push(self, rows: np.ndarray) -> list[tuple[int, np.ndarray]]:
        rows = np.asarray(rows, dtype=np.float32).reshape(-1, self.model.n_mfcc)
        if len(rows):
            self._buf = np.concatenate([self._buf, rows])
            self._rows_in += len(rows)
        return self._run(limit_frames=None)

    def flush(self) -> list[tuple[int, np.ndarray]]:
        """Pad the end with silence, emit the remaining frames, and reset for a new stream."""
        n_frames = self._rows_in // self.rows_per_frame
        n_win = window_count(n_frames, self.streaming)
        if self._next_window < n_win:
            need = self._window_start(n_win - 1) + self.model.window_in - self._buf_start
            if need > len(self._buf):
                self._buf = np.concatenate(
                    [self._buf, np.repeat(self.pad_row, need - len(self._buf), 0)]
                )
        out = self._run(limit_frames=n_frames)
        self.reset()
        return out

    def _window_start(self, k: int) -> int:
        return k * self.streaming.hop_frames * self.rows_per_frame  # padded coordinates

    def _run(self, limit_frames: int | None) -> list[tuple[int, np.ndarray]]:
        hop, ks, w_in = self.streaming.hop_frames, self.streaming.keep_start, self.model.window_in
        ready: list[int] = []
        k = self._next_window
        while self._window_start(k) + w_in - self._buf_start <= len(self._buf):
            if limit_frames is not None and k * hop >= limit_frames:
                break
            ready.append(k)
            k += 1
        out: list[tuple[int, np.ndarray]] = []
        for b0 in range(0, len(ready), self.max_batch):
            chunk = ready[b0 : b0 + self.max_batch]
            batch = np.stack(
                [
                    self._buf[self._window_start(j) - self._buf_start :][:w_in]
                    for j in chunk
                ]
            )
            pred = np.asarray(self.infer(batch), dtype=np.float32)
            for i, j in enumerate(chunk):
                for p in range(hop):
                    f = j * hop + p
                    if limit_frames is not None and f >= limit_frames:
                        break
                    out.append((f, pred[i, ks + p].copy()))
        if ready:
            self._next_window = ready[-1] + 1
            # Drop rows no future window needs.
            drop = self._window_start(self._next_window) - self._buf_start
            if drop > 0:
                self._buf = self._buf[drop:]
                self._buf_start += drop
        return out
