"""The synchronous per-frame path shared by the streaming pipeline and offline rendering.

mouth features (B, 10) + template indices -> facial maps (B, R, R, 3) -> renderer backend ->
face crops (B, R, R, 3) -> compositor -> full frames. Every step is a plain method so the
pipeline can run each in its own worker (maps and compose on the CPU, inference on the backend's
thread) and tests can drive it without asyncio.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np

from anchor.avatar.bundle import AvatarBundle
from anchor.compose.compositor import Compositor
from anchor.compose.idle import IdleLoop
from anchor.config import AnchorConfig, BackendConfig
from anchor.errors import AvatarError

if TYPE_CHECKING:
    from anchor.render.backends import RendererBackend

log = logging.getLogger(__name__)


class IdleIndex(Protocol):
    def index(self, counter: int) -> int: ...


class FrameEngine(Protocol):
    """Synchronous per-frame image maker (anchor.render.engine.AvatarEngine).

    The render stage calls maps + infer in its render worker and compose in its compose
    worker, so consecutive frames overlap."""

    @property
    def frame_size(self) -> tuple[int, int]:
        """(width, height) of the composited frames."""
        ...

    @property
    def idle_loop(self) -> IdleIndex: ...

    def maps(
        self, mouth_features: np.ndarray, template_indices: Sequence[int] | np.ndarray
    ) -> np.ndarray:
        """(B, 10) PCA mouth features -> (B, R, R, 3) uint8 facial maps."""
        ...

    def infer(self, maps: np.ndarray) -> np.ndarray:
        """(B, R, R, 3) maps -> (B, R, R, 3) faces (the renderer backend)."""
        ...

    def compose(
        self, faces: np.ndarray, template_indices: Sequence[int] | np.ndarray
    ) -> list[np.ndarray]:
        """(B, R, R, 3) faces -> B composited frames (H, W, 3) uint8."""
        ...

    def idle_frame_at(self, counter: int) -> np.ndarray: ...

    def warmup(self) -> None: ...

    def close(self) -> None: ...


class AvatarEngine:
    """One avatar's frame maker. Not thread-safe: use it from one worker thread at a time."""

    def __init__(self, bundle: AvatarBundle, cfg: AnchorConfig, backend: RendererBackend) -> None:
        from anchor.face.facial_map import FacialMapBuilder

        if int(backend.resolution) != bundle.face_resolution:
            raise AvatarError(
                f"{bundle.path}: renderer backend {backend.name!r} works at {backend.resolution} px, "
                f"the avatar's faces are {bundle.face_resolution} px"
            )
        self.bundle = bundle
        self.cfg = cfg
        self.backend = backend
        self.resolution = bundle.face_resolution
        self.builder = FacialMapBuilder(bundle.face_resolution, bundle.pca, bundle.jaw)
        self.compositor = Compositor(cfg.compose, bundle.body)
        self.idle_loop = IdleLoop.from_config(len(bundle.templates), cfg.compose)
        self.max_batch = max(1, int(cfg.backend.max_batch))

    @property
    def n_templates(self) -> int:
        return len(self.bundle.templates)

    @property
    def frame_size(self) -> tuple[int, int]:
        """(width, height) of the composited frames."""
        return self.bundle.body.width, self.bundle.body.height

    def _indices(self, template_indices: Sequence[int] | np.ndarray, n: int) -> list[int]:
        idx = [int(i) % self.n_templates for i in np.asarray(template_indices).reshape(-1)]
        if len(idx) != n:
            raise AvatarError(f"{n} items but {len(idx)} template indices")
        return idx

    def maps(
        self, mouth_features: np.ndarray, template_indices: Sequence[int] | np.ndarray
    ) -> np.ndarray:
        """(B, 10) PCA mouth features -> (B, R, R, 3) uint8 facial maps."""
        feats = np.asarray(mouth_features, dtype=np.float32)
        if feats.ndim == 1:
            feats = feats[None]
        if feats.ndim != 2 or feats.shape[1] != self.bundle.pca.dims:
            raise AvatarError(
                f"mouth features must be (B, {self.bundle.pca.dims}), got {feats.shape}"
            )
        idx = self._indices(template_indices, len(feats))
        templates = self.bundle.templates
        return np.stack([self.builder.build(templates[i], f) for i, f in zip(idx, feats, strict=True)])

    def infer(self, maps: np.ndarray) -> np.ndarray:
        """(B, R, R, 3) maps -> (B, R, R, 3) faces, in chunks of backend.max_batch."""
        if len(maps) <= self.max_batch:
            return self.backend.infer(maps)
        parts = [
            self.backend.infer(maps[s : s + self.max_batch])
            for s in range(0, len(maps), self.max_batch)
        ]
        return np.concatenate(parts)

    def compose(
        self, faces: np.ndarray, template_indices: Sequence[int] | np.ndarray
    ) -> list[np.ndarray]:
        """(B, R, R, 3) faces -> B full frames (H, W, 3) uint8."""
        idx = self._indices(template_indices, len(faces))
        return [self.compositor.compose(f, i) for f, i in zip(faces, idx, strict=True)]

    def render_frames(
        self, mouth_features: np.ndarray, template_indices: Sequence[int] | np.ndarray
    ) -> list[np.ndarray]:
        """The whole path: features -> maps -> faces -> composited frames."""
        maps = self.maps(mouth_features, template_indices)
        return self.compose(self.infer(maps), template_indices)

    def idle_frame(self, template_index: int) -> np.ndarray:
        """Body frame `template_index` as shown while the anchor is silent (no renderer)."""
        return self.compositor.base_frame(template_index).copy()

    def idle_frame_at(self, counter: int) -> np.ndarray:
        """The idle frame for a running frame counter, cross-faded at the loop point if the
        idle mode is `crossfade`."""
        a, b, w = self.idle_loop.weights(counter)
        if w <= 0.0 or a == b:
            return self.idle_frame(a)
        return Compositor.crossfade(
            self.compositor.base_frame(a), self.compositor.base_frame(b), w
        )

    def warmup(self) -> None:
        """Run the backend once and fill the compositor caches of every template index."""
        self.backend.warmup()
        self.bundle.body.frames  # noqa: B018  (decode a lazily loaded body now, not mid-stream)
        feats = np.zeros((1, self.bundle.pca.dims), np.float32)
        for i in range(self.n_templates):
            self.compositor.base_frame(i)
        self.render_frames(feats, [0])

    def close(self) -> None:
        self.backend.close()


def create_engine(
    bundle: AvatarBundle, cfg: AnchorConfig, backend_cfg: BackendConfig | None = None
) -> AvatarEngine:
    """An engine with the backend named by cfg.backend, built from the bundle's renderer.onnx."""
    from anchor.render.backends import create_backend

    backend = create_backend(backend_cfg or cfg.backend, bundle.renderer_onnx)
    log.info(
        "avatar %r: %d templates, %d px faces into %dx%d frames, backend %s",
        bundle.name, len(bundle.templates), bundle.face_resolution, bundle.body.width,
        bundle.body.height, backend.name,
    )
    return AvatarEngine(bundle, cfg, backend)
