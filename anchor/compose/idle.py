"""The idle loop: a running frame counter -> template frame, with no visible jump at the loop.

`pingpong` plays 0, 1, ..., N-1, N-2, ..., 1, 0, 1, ... so consecutive indices never differ by
more than one. `crossfade` plays C..N-1 forward and, over the last C positions, dissolves the end
of the footage into its start; `weights(counter)` says which two frames to mix and how much.
"""

from __future__ import annotations

from anchor.config import ComposeConfig
from anchor.errors import ComposeError

MODES = ("pingpong", "crossfade")


class IdleLoop:
    def __init__(self, n_frames: int, mode: str = "pingpong", crossfade_frames: int = 8) -> None:
        if n_frames < 1:
            raise ComposeError("idle loop: the template has no frames")
        if mode not in MODES:
            raise ComposeError(f"idle loop: unknown mode {mode!r} (known: {', '.join(MODES)})")
        self.n_frames = int(n_frames)
        self.mode = mode
        self.crossfade_frames = int(crossfade_frames)
        if mode == "crossfade":
            if self.crossfade_frames < 1:
                raise ComposeError("idle loop: crossfade needs compose.idle_crossfade_frames >= 1")
            if self.n_frames <= 2 * self.crossfade_frames:
                raise ComposeError(
                    f"idle loop: {self.n_frames} template frames are too few for a "
                    f"{self.crossfade_frames}-frame crossfade (need more than twice as many)"
                )

    @classmethod
    def from_config(cls, n_frames: int, cfg: ComposeConfig) -> IdleLoop:
        return cls(n_frames, cfg.idle_mode, cfg.idle_crossfade_frames)

    @property
    def period(self) -> int:
        """Frames after which the sequence of indices repeats."""
        if self.n_frames == 1:
            return 1
        if self.mode == "pingpong":
            return 2 * self.n_frames - 2
        return self.n_frames - self.crossfade_frames

    def weights(self, counter: int) -> tuple[int, int, float]:
        """(a, b, w): show (1 - w) * frame a + w * frame b for this counter value."""
        if self.n_frames == 1:
            return 0, 0, 0.0
        p = counter % self.period
        if self.mode == "pingpong":
            i = p if p < self.n_frames else self.period - p
            return i, i, 0.0
        c = self.crossfade_frames
        if p < c:
            # the tail (N-C+p) dissolves into the head (p); w rises from ~0 to ~1
            return self.n_frames - c + p, p, (p + 0.5) / c
        return p, p, 0.0

    def index(self, counter: int) -> int:
        """The template frame for this counter (for crossfade: the dominant one of the pair)."""
        a, b, w = self.weights(counter)
        return b if w >= 0.5 else a
