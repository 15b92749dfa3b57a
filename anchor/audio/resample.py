"""Rational-ratio polyphase resampling, offline and streaming (live input of any chunk size).

Both use scipy's `resample_poly` design (Kaiser-windowed FIR, beta 5, 10 zero crossings per side
at the lower rate) and alignment, so a stream fed in chunks reproduces the one-shot result up to
float rounding; `flush()` emits the tail so the total length is ceil(N * out / in).
"""

from __future__ import annotations

from math import gcd

import numpy as np
import scipy.signal

from anchor.errors import AudioError


def _ratio(in_rate: int, out_rate: int) -> tuple[int, int]:
    if int(in_rate) != in_rate or int(out_rate) != out_rate or in_rate <= 0 or out_rate <= 0:
        raise AudioError(f"resample: rates must be positive integers (got {in_rate} -> {out_rate})")
    g = gcd(int(in_rate), int(out_rate))
    return int(out_rate) // g, int(in_rate) // g


def resample(samples: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    """Mono float32 `samples` at in_rate -> float32 at out_rate (length ceil(N*out/in))."""
    up, down = _ratio(in_rate, out_rate)
    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    if up == down or x.size == 0:
        return x.copy()
    return scipy.signal.resample_poly(x.astype(np.float64), up, down).astype(np.float32)


class StreamResampler:
    """Stateful `resample`: `.process(chunk)` returns every output sample whose input support is
    complete so far; `.flush()` treats the future as silence and returns the rest."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.in_rate = int(in_rate)
        self.out_rate = int(out_rate)
        self.up, self.down = _ratio(in_rate, out_rate)
        up, down = self.up, self.down
        if up == down:
            self._bank = np.ones((1, 1))
            self._pre_remove = 0
        else:
            # Same filter and alignment as scipy.signal.resample_poly.
            max_rate = max(up, down)
            half_len = 10 * max_rate
            h = scipy.signal.firwin(2 * half_len + 1, 1.0 / max_rate, window=("kaiser", 5.0))
            h *= up
            n_pre_pad = down - half_len % down
            h = np.concatenate([np.zeros(n_pre_pad), h])
            self._pre_remove = (half_len + n_pre_pad) // down
            taps = -(-h.size // up)
            h = np.pad(h, (0, taps * up - h.size))
            # bank[p, j] = h[p + j*up]: output at up-rate time t uses x[t//up - j] * bank[t%up, j].
            self._bank = h.reshape(taps, up).T.copy()
        self._taps = self._bank.shape[1]
        self.reset()

    def reset(self) -> None:
        # History starts with `taps` virtual zeros before sample 0.
        self._hist = np.zeros(self._taps, dtype=np.float64)
        self._hist_start = -self._taps  # absolute input index of _hist[0]
        self._n_in = 0
        self._n_out = 0

    def _emit(self, stop: int) -> np.ndarray:
        """Output samples [self._n_out, stop) from the history (zeros beyond the input)."""
        if stop <= self._n_out:
            return np.zeros(0, dtype=np.float32)
        m = np.arange(self._n_out, stop, dtype=np.int64)
        t = (m + self._pre_remove) * self.down
        base = t // self.up - self._hist_start  # index into _hist of the newest input used
        need = int(base[-1]) + 1
        hist = self._hist
        if need > hist.size:  # flush: pad the future with silence
            hist = np.concatenate([hist, np.zeros(need - hist.size)])
        idx = base[:, None] - np.arange(self._taps)[None, :]
        y = np.einsum("ij,ij->i", hist[idx], self._bank[t % self.up])
        self._n_out = stop
        return y.astype(np.float32)

    def _trim(self) -> None:
        # Drop history the next output sample can no longer reach.
        t = (self._n_out + self._pre_remove) * self.down
        first = t // self.up - self._taps + 1 - self._hist_start
        if first > 0:
            self._hist = self._hist[first:]
            self._hist_start += first

    def process(self, samples: np.ndarray) -> np.ndarray:
        """float32 output for this chunk (may be empty while the filter fills)."""
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        if self.up == self.down:
            self._n_in += x.size
            self._n_out += x.size
            return x.copy()
        if x.size:
            self._hist = np.concatenate([self._hist, x.astype(np.float64)])
            self._n_in += x.size
        # Output m is ready once input floor((m + pre) * down / up) has arrived, and never
        # beyond the total length flush() will settle on.
        ready = (self._n_in * self.up - 1) // self.down - self._pre_remove + 1
        total = -(-self._n_in * self.up // self.down)
        y = self._emit(max(self._n_out, min(ready, total)))
        self._trim()
        return y

    def flush(self) -> np.ndarray:
        """The remaining output (input followed by silence); the stream can then be reused."""
        if self.up == self.down:
            self.reset()
            return np.zeros(0, dtype=np.float32)
        total = -(-self._n_in * self.up // self.down)
        y = self._emit(total)
        self.reset()
        return y
