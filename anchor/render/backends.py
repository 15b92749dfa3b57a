"""Renderer backends behind one protocol: uint8 RGB facial maps in, uint8 RGB faces out.

- "onnxruntime": CPU execution provider, `threads` intra-op threads (the serving default; no torch).
- "torch": the checkpoint's generator on CPU in fp32 (reference / debugging).
- "torch-cuda": the checkpoint's generator on CUDA in fp16, channels_last, one CUDA graph per
  batch size up to `max_batch` (captured in `warmup`).
- "tensorrt": a cached fp16 TensorRT engine built from the ONNX file (anchor/render/tensorrt.py).

`create_backend` starts (and warms up) the configured backend and falls back to
`BackendConfig.fallback` with a logged warning when it cannot start, so a missing GPU, engine or
library is a warning at startup, never a crash mid-stream. torch and tensorrt are imported only by
the backends that need them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from anchor.config import BackendConfig, RendererConfig, from_dict
from anchor.errors import ConfigError, RenderError

if TYPE_CHECKING:
    import onnxruntime

log = logging.getLogger(__name__)

BACKEND_NAMES = ("onnxruntime", "torch", "torch-cuda", "tensorrt")
INPUT_NAME = "map"  # same names as anchor.render.export (kept here so serving needs no torch)
OUTPUT_NAME = "face"
META_RENDERER = "anchor.renderer_config"


@runtime_checkable
class RendererBackend(Protocol):
    name: str
    resolution: int

    def warmup(self) -> None: ...

    def infer(self, maps: np.ndarray) -> np.ndarray: ...

    def close(self) -> None: ...


def check_maps(maps: np.ndarray, resolution: int, backend: str) -> None:
    """Maps must be uint8 (B, R, R, 3) with B >= 1 at the backend's resolution."""
    if not isinstance(maps, np.ndarray) or maps.dtype != np.uint8:
        raise RenderError(f"{backend} backend: maps must be a uint8 numpy array")
    if maps.ndim != 4 or maps.shape[1:] != (resolution, resolution, 3) or maps.shape[0] < 1:
        raise RenderError(
            f"{backend} backend: maps must be (B, {resolution}, {resolution}, 3), got {maps.shape}"
        )


def maps_to_input(maps: np.ndarray) -> np.ndarray:
    """uint8 (B, R, R, 3) RGB -> float32 (B, 3, R, R) in [-1, 1]."""
    x = maps.astype(np.float32).transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x * (1.0 / 127.5) - 1.0, dtype=np.float32)


def output_to_faces(y: np.ndarray) -> np.ndarray:
    """float (B, 3, R, R) in [-1, 1] -> uint8 (B, R, R, 3) RGB (rounded, clipped)."""
    faces = np.clip((y.astype(np.float32) + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(faces.transpose(0, 2, 3, 1))


def renderer_config_from_metadata(meta: dict[str, str], where: str) -> RendererConfig | None:
    raw = meta.get(META_RENDERER)
    if raw is None:
        return None
    try:
        return from_dict(RendererConfig, json.loads(raw))
    except (ValueError, ConfigError) as exc:
        raise RenderError(f"{where}: unreadable renderer config in ONNX metadata ({exc})") from exc


class OnnxRuntimeBackend:
    """onnxruntime on CPU with cfg.threads intra-op threads (one call at a time)."""

    name = "onnxruntime"

    def __init__(self, onnx_path: str | Path, cfg: BackendConfig) -> None:
        import onnxruntime as ort

        path = Path(onnx_path)
        if not path.is_file():
            raise RenderError(f"{path}: renderer ONNX file does not exist")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, cfg.threads)
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # no busy-waiting between ops: the renderer shares the CPU with the rest of the pipeline;
        # spinning cost ~60% more CPU per frame and was slower whenever anything else ran
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session: onnxruntime.InferenceSession | None = ort.InferenceSession(
                str(path), opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types
            raise RenderError(f"{path}: onnxruntime cannot load it ({exc})") from exc
        inputs = self._session.get_inputs()
        if [i.name for i in inputs] != [INPUT_NAME]:
            raise RenderError(f"{path}: expected one input named {INPUT_NAME!r}")
        meta = dict(self._session.get_modelmeta().custom_metadata_map)
        self.config = renderer_config_from_metadata(meta, str(path))
        shape = inputs[0].shape
        if self.config is not None:
            self.resolution = self.config.resolution
        elif isinstance(shape[-1], int):
            self.resolution = int(shape[-1])
        else:
            raise RenderError(f"{path}: cannot tell the renderer resolution (no metadata)")
        self.path = path

    def warmup(self) -> None:
        self.infer(np.zeros((1, self.resolution, self.resolution, 3), np.uint8))

    def infer(self, maps: np.ndarray) -> np.ndarray:
        if self._session is None:
            raise RenderError(f"{self.path}: onnxruntime backend is closed")
        check_maps(maps, self.resolution, self.name)
        y = self._session.run([OUTPUT_NAME], {INPUT_NAME: maps_to_input(maps)})[0]
        return output_to_faces(np.asarray(y))

    def close(self) -> None:
        self._session = None


class TorchBackend:
    """The checkpoint's generator in torch on CPU, fp32 (a reference; slower than onnxruntime)."""

    name = "torch"

    def __init__(self, checkpoint_path: str | Path | None, cfg: BackendConfig) -> None:
        if checkpoint_path is None:
            raise RenderError("torch backend: needs a renderer checkpoint (none given)")
        import torch

        from anchor.render.networks import load_generator

        self._torch = torch
        # the process-wide thread count is the configured one (the torch backend owns the CPU)
        torch.set_num_threads(max(1, cfg.threads))
        self.model, self.config = load_generator(checkpoint_path)
        self.resolution = self.config.resolution

    def warmup(self) -> None:
        self.infer(np.zeros((1, self.resolution, self.resolution, 3), np.uint8))

    def infer(self, maps: np.ndarray) -> np.ndarray:
        check_maps(maps, self.resolution, self.name)
        with self._torch.inference_mode():
            y = self.model(self._torch.from_numpy(maps_to_input(maps)))
        return output_to_faces(y.numpy())

    def close(self) -> None:
        pass


class TorchCudaBackend:
    """fp16 generator on CUDA in channels_last memory format, replayed from CUDA graphs.

    A graph per batch size 1..max_batch is captured in `warmup` (static input/output buffers);
    larger batches are split. uint8 <-> float conversion happens on the GPU so only uint8 crosses
    the bus.
    """

    name = "torch-cuda"

    def __init__(self, checkpoint_path: str | Path | None, cfg: BackendConfig) -> None:
        if checkpoint_path is None:
            raise RenderError("torch-cuda backend: needs a renderer checkpoint (none given)")
        import torch

        if not torch.cuda.is_available():
            raise RenderError("torch-cuda backend: no CUDA device is available")
        from anchor.render.networks import load_generator

        self._torch = torch
        self.device = torch.device("cuda")
        model, self.config = load_generator(checkpoint_path)
        self.model = model.to(self.device, torch.float16).to(  # type: ignore[call-overload]
            memory_format=torch.channels_last
        )
        self.resolution = self.config.resolution
        self.max_batch = max(1, cfg.max_batch)
        self.stream = torch.cuda.Stream(self.device)
        self._graphs: dict[int, tuple[Any, Any, Any]] = {}  # batch -> (graph, static in, out)

    def _capture(self, batch: int) -> tuple[Any, Any, Any]:
        torch = self._torch
        r = self.resolution
        static_in = torch.zeros(
            (batch, self.config.input_nc, r, r), device=self.device, dtype=torch.float16
        ).contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            # warm the allocator and cuDNN autotuning on a side stream before capture
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(3):
                    self.model(static_in)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self.model(static_in)
        return graph, static_in, static_out

    def warmup(self) -> None:
        for batch in range(1, self.max_batch + 1):
            if batch not in self._graphs:
                self._graphs[batch] = self._capture(batch)
        self._torch.cuda.synchronize(self.device)

    def infer(self, maps: np.ndarray) -> np.ndarray:
        check_maps(maps, self.resolution, self.name)
        if not self._graphs:
            self.warmup()
        torch = self._torch
        out = np.empty_like(maps)
        with torch.inference_mode(), torch.cuda.stream(self.stream):
            for start in range(0, maps.shape[0], self.max_batch):
                chunk = maps[start : start + self.max_batch]
                graph, static_in, static_out = self._graphs[chunk.shape[0]]
                x = torch.from_numpy(chunk).to(self.device, non_blocking=False)
                static_in.copy_(x.permute(0, 3, 1, 2).half().div_(127.5).sub_(1.0))
                graph.replay()
                faces = static_out.float().add(1.0).mul(127.5).add(0.5).clamp(0, 255)
                out[start : start + chunk.shape[0]] = (
                    faces.to(torch.uint8).permute(0, 2, 3, 1).contiguous().cpu().numpy()
                )
        self.stream.synchronize()
        return out

    def close(self) -> None:
        self._graphs.clear()


def _construct(
    name: str, cfg: BackendConfig, onnx_path: str | Path, checkpoint_path: str | Path | None
) -> RendererBackend:
    if name == "onnxruntime":
        return OnnxRuntimeBackend(onnx_path, cfg)
    if name == "torch":
        return TorchBackend(checkpoint_path, cfg)
    if name == "torch-cuda":
        return TorchCudaBackend(checkpoint_path, cfg)
    if name == "tensorrt":
        from anchor.render.tensorrt import TensorRtBackend

        return TensorRtBackend(onnx_path, cfg)
    raise ConfigError(f"backend.name {name!r} is not one of {', '.join(BACKEND_NAMES)}")


def _start(
    name: str, cfg: BackendConfig, onnx_path: str | Path, checkpoint_path: str | Path | None,
    warmup: bool,
) -> RendererBackend:
    backend = _construct(name, cfg, onnx_path, checkpoint_path)
    if warmup:
        try:
            backend.warmup()
        except Exception:
            backend.close()
            raise
    return backend


def create_backend(
    cfg: BackendConfig,
    onnx_path: str | Path,
    checkpoint_path: str | Path | None = None,
    *,
    warmup: bool = True,
) -> RendererBackend:
    """Start `cfg.name` (warmed up, so it is known to work), else `cfg.fallback` with a warning.

    Unknown backend names are configuration errors and raise ConfigError at once. Any failure of
    the requested backend to start (RenderError, a missing library, a CUDA error) falls back;
    a failure of the fallback too raises RenderError naming both reasons.
    """
    for which in (cfg.name, cfg.fallback):
        if which and which not in BACKEND_NAMES:
            raise ConfigError(f"backend {which!r} is not one of {', '.join(BACKEND_NAMES)}")
    try:
        backend = _start(cfg.name, cfg, onnx_path, checkpoint_path, warmup)
    except Exception as exc:  # noqa: BLE001 - any start-up failure means: use the fallback
        reason = _one_line(exc)
        if not cfg.fallback or cfg.fallback == cfg.name:
            raise RenderError(f"renderer backend {cfg.name!r} cannot start: {reason}") from exc
        log.warning(
            "renderer backend %r cannot start (%s); falling back to %r",
            cfg.name, reason, cfg.fallback,
        )
        try:
            backend = _start(cfg.fallback, cfg, onnx_path, checkpoint_path, warmup)
        except Exception as exc2:  # noqa: BLE001
            raise RenderError(
                f"renderer backend {cfg.name!r} cannot start ({reason}) and neither can the "
                f"fallback {cfg.fallback!r} ({_one_line(exc2)})"
            ) from exc2
    log.info("renderer backend %s ready (%dx%d)", backend.name, backend.resolution, backend.resolution)
    return backend


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else exc.__class__.__name__
