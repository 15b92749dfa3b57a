"""The body template: the full frames the rendered face is pasted into (paper Fig. 9).

Frame i of the body template belongs to template frame i of the avatar: its face box is where the
renderer's face crop goes, and the blend mask (in face-crop pixels) says which part of that crop
replaces the body frame. Frames can be large, so they may be decoded lazily on first use.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from anchor.errors import ComposeError


class BodyTemplate:
    """Body frames (N, H, W, 3) uint8 RGB, face boxes (N, 4) x0, y0, x1, y1 and blend mask (S, S).

    Pass `frames` directly, or `loader` (returning the frames) plus `n_frames`, `height` and
    `width`, so that a bundle loads without decoding video until a frame is first needed.
    """

    def __init__(
        self,
        face_boxes: np.ndarray,
        blend_mask: np.ndarray,
        frames: np.ndarray | None = None,
        *,
        loader: Callable[[], np.ndarray] | None = None,
        n_frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
    ) -> None:
        boxes = np.asarray(face_boxes, dtype=np.float32)
        mask = np.asarray(blend_mask, dtype=np.float32)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ComposeError(f"body template: face_boxes must be (N, 4), got {boxes.shape}")
        if mask.ndim != 2 or mask.shape[0] != mask.shape[1]:
            raise ComposeError(f"body template: blend_mask must be square (S, S), got {mask.shape}")
        if not np.all(boxes[:, 2] > boxes[:, 0]) or not np.all(boxes[:, 3] > boxes[:, 1]):
            raise ComposeError("body template: every face box needs x1 > x0 and y1 > y0")
        self.face_boxes = boxes
        self.blend_mask = np.clip(mask, 0.0, 1.0)
        self._lock = threading.Lock()
        if frames is not None:
            frames = np.asarray(frames)
            self._check_frames(frames, len(boxes))
            self._frames: np.ndarray | None = frames
            self._loader: Callable[[], np.ndarray] | None = None
            self.n_frames, self.height, self.width = (
                frames.shape[0], frames.shape[1], frames.shape[2]
            )
        else:
            if loader is None or n_frames is None or height is None or width is None:
                raise ComposeError("body template: give frames, or loader with n_frames/height/width")
            if n_frames != len(boxes):
                raise ComposeError(
                    f"body template: {n_frames} frames but {len(boxes)} face boxes"
                )
            self._frames = None
            self._loader = loader
            self.n_frames, self.height, self.width = int(n_frames), int(height), int(width)
        if self.n_frames < 1:
            raise ComposeError("body template has no frames")

    @staticmethod
    def _check_frames(frames: np.ndarray, n_boxes: int) -> None:
        if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8:
            raise ComposeError(
                f"body template: frames must be (N, H, W, 3) uint8, got {frames.shape} {frames.dtype}"
            )
        if frames.shape[0] != n_boxes:
            raise ComposeError(
                f"body template: {frames.shape[0]} frames but {n_boxes} face boxes"
            )

    @property
    def loaded(self) -> bool:
        return self._frames is not None

    @property
    def frames(self) -> np.ndarray:
        """All frames (N, H, W, 3) uint8 RGB, decoded on first access."""
        if self._frames is None:
            with self._lock:
                if self._frames is None:
                    assert self._loader is not None
                    frames = np.asarray(self._loader())
                    self._check_frames(frames, len(self.face_boxes))
                    if frames.shape[1:3] != (self.height, self.width):
                        raise ComposeError(
                            f"body template: decoded frames are {frames.shape[2]}x{frames.shape[1]}, "
                            f"expected {self.width}x{self.height}"
                        )
                    self._frames = frames
        return self._frames

    def frame(self, index: int) -> np.ndarray:
        return self.frames[index % self.n_frames]

    @property
    def mask_size(self) -> int:
        return int(self.blend_mask.shape[0])

    def __len__(self) -> int:
        return self.n_frames

    def __repr__(self) -> str:
        return (
            f"BodyTemplate({self.n_frames} frames {self.width}x{self.height}, "
            f"mask {self.mask_size}^2, loaded={self.loaded})"
        )
