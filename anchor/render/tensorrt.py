"""TensorRT fp16 engines for the renderer ONNX, cached in engines/, and a backend that runs them.

Engines are specific to a GPU, a TensorRT version and the ONNX graph, so the cache file name is
`renderer-<onnx sha256[:16]>-<gpu>-trt<version>-b<max batch>.engine`: a changed ONNX, GPU or
TensorRT simply misses the cache (stale engines are reported, then a new one is built). The
layer timing cache (engines/timing-<gpu>-trt<version>.cache) is persisted so rebuilds are fast.

`tensorrt` (and torch, whose CUDA tensors serve as the engine's I/O buffers; pycuda is not needed)
are imported lazily: importing this module on a CPU machine costs nothing.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from anchor.config import BackendConfig
from anchor.errors import RenderError
from anchor.render.backends import INPUT_NAME, OUTPUT_NAME, check_maps

log = logging.getLogger(__name__)

DEFAULT_WORKSPACE_BYTES = 4 << 30


def import_tensorrt() -> ModuleType:
    """`import tensorrt`, or a one-line RenderError saying it is not installed."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise RenderError(
            "TensorRT is not installed (install the 'gpu' extra on a CUDA machine with "
            f"NVIDIA's TensorRT wheels): {exc}"
        ) from exc
    # PyPI's `tensorrt` stub without the real libraries imports but has no Builder
    if not hasattr(trt, "Builder"):
        raise RenderError("TensorRT is not installed (the 'tensorrt' package has no builder)")
    return trt


def _torch_cuda() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise RenderError("the TensorRT backend needs torch with CUDA for its buffers") from exc
    if not torch.cuda.is_available():
        raise RenderError("TensorRT needs a CUDA device and none is available")
    return torch


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def engine_filename(onnx_sha256: str, gpu_name: str, trt_version: str, max_batch: int) -> str:
    return f"renderer-{onnx_sha256[:16]}-{_slug(gpu_name)}-trt{trt_version}-b{max_batch}.engine"


def timing_cache_filename(gpu_name: str, trt_version: str) -> str:
    return f"timing-{_slug(gpu_name)}-trt{trt_version}.cache"


def gpu_name() -> str:
    torch = _torch_cuda()
    return str(torch.cuda.get_device_name(torch.cuda.current_device()))


def engine_path_for(
    onnx_path: str | Path, engines_dir: str | Path, max_batch: int, *, trt_version: str,
    gpu: str,
) -> Path:
    return Path(engines_dir) / engine_filename(sha256_file(onnx_path), gpu, trt_version, max_batch)


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def build_engine(
    onnx_path: str | Path,
    engines_dir: str | Path = "engines",
    max_batch: int = 4,
    *,
    fp16: bool = True,
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
    force: bool = False,
) -> Path:
    """The cached engine for this ONNX / GPU / TensorRT / max batch, built when missing.

    Returns the engine path; with `force` a cached engine is rebuilt. Raises RenderError with one
    line when TensorRT, CUDA or the ONNX file is missing, or the build fails.
    """
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise RenderError(f"{onnx_path}: renderer ONNX file does not exist")
    if max_batch < 1:
        raise RenderError(f"max batch must be >= 1, got {max_batch}")
    trt = import_tensorrt()
    gpu = gpu_name()
    engines = Path(engines_dir)
    path = engine_path_for(onnx_path, engines, max_batch, trt_version=trt.__version__, gpu=gpu)
    if path.is_file() and not force:
        log.info("reusing cached TensorRT engine %s", path)
        return path
    stale = sorted(p.name for p in engines.glob("renderer-*.engine") if p != path)
    if stale:
        log.warning(
            "no engine for %s on %s with TensorRT %s (max batch %d) in %s; %d other engine(s) "
            "there were built for another ONNX, GPU, TensorRT or batch: building a new one",
            onnx_path, gpu, trt.__version__, max_batch, engines, len(stale),
        )
    else:
        log.info("building TensorRT engine for %s on %s (this takes a while)", onnx_path, gpu)

    trt_logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(trt_logger)
    # explicit batch is the only mode (and the default) from TensorRT 10 on
    major = int(trt.__version__.split(".")[0])
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RenderError(f"{onnx_path}: TensorRT cannot parse it ({errors or 'unknown error'})")
    if network.num_inputs != 1 or network.get_input(0).name != INPUT_NAME:
        raise RenderError(f"{onnx_path}: expected one input named {INPUT_NAME!r}")
    dims = network.get_input(0).shape  # (-1, C, R, R): index it, Dims is not a tuple
    channels, height, width = int(dims[1]), int(dims[2]), int(dims[3])

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if fp16:
        fp16_flag = getattr(trt.BuilderFlag, "FP16", None)
        if fp16_flag is None:  # a TensorRT without weakly-typed precision flags
            log.warning("this TensorRT has no BuilderFlag.FP16; building an fp32 engine")
        else:
            config.set_flag(fp16_flag)
    profile = builder.create_optimization_profile()
    opt = max(1, (max_batch + 1) // 2)
    profile.set_shape(
        INPUT_NAME,
        (1, channels, height, width),
        (opt, channels, height, width),
        (max_batch, channels, height, width),
    )
    config.add_optimization_profile(profile)

    cache_path = engines / timing_cache_filename(gpu, trt.__version__)
    cache_blob = cache_path.read_bytes() if cache_path.is_file() else b""
    timing_cache = config.create_timing_cache(cache_blob)
    config.set_timing_cache(timing_cache, False)  # False: reject a cache from another setup

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RenderError(f"{onnx_path}: TensorRT engine build failed (see the TensorRT log)")
    _atomic_write(path, bytes(serialized))
    _atomic_write(cache_path, bytes(config.get_timing_cache().serialize()))
    log.info("wrote TensorRT engine %s (timing cache %s)", path, cache_path)
    return path


class TensorRtBackend:
    """Runs the cached engine (building it when missing) with torch CUDA tensors as buffers."""

    name = "tensorrt"

    def __init__(
        self, onnx_path: str | Path, cfg: BackendConfig, *, build_if_missing: bool = True
    ) -> None:
        trt = import_tensorrt()
        torch = _torch_cuda()
        self._trt, self._torch = trt, torch
        self.max_batch = max(1, cfg.max_batch)
        engines = Path(cfg.engines_dir)
        path = engine_path_for(
            onnx_path, engines, self.max_batch, trt_version=trt.__version__, gpu=gpu_name()
        )
        if not path.is_file():
            if not build_if_missing:
                raise RenderError(
                    f"{path}: no TensorRT engine for {onnx_path} on this GPU / TensorRT; "
                    f"run `anchor build-engine {onnx_path} --max-batch {self.max_batch}`"
                )
            path = build_engine(onnx_path, engines, self.max_batch)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            # a corrupt or incompatible file under the right name: rebuild once
            log.warning("TensorRT engine %s cannot be loaded; rebuilding it", path)
            path = build_engine(onnx_path, engines, self.max_batch, force=True)
            engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
            if engine is None:
                raise RenderError(f"{path}: TensorRT cannot deserialize the engine it just built")
        self.engine = engine
        self.context = engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        if set(names) != {INPUT_NAME, OUTPUT_NAME}:
            raise RenderError(f"{path}: engine I/O tensors are {names}, expected map and face")
        for tensor in (INPUT_NAME, OUTPUT_NAME):
            if engine.get_tensor_dtype(tensor) != trt.float32:
                raise RenderError(f"{path}: engine tensor {tensor!r} is not float32")
        in_shape = engine.get_tensor_shape(INPUT_NAME)
        self.channels, self.resolution = int(in_shape[1]), int(in_shape[3])
        self.out_channels = int(engine.get_tensor_shape(OUTPUT_NAME)[1])
        self.engine_path = path
        self.stream = torch.cuda.Stream()

    def warmup(self) -> None:
        for batch in sorted({1, self.max_batch}):
            self.infer(np.zeros((batch, self.resolution, self.resolution, 3), np.uint8))

    def run_float(self, x: Any) -> Any:
        """(B <= max_batch, C, R, R) float32 contiguous CUDA tensor -> float32 CUDA output
        (ready on the caller's current stream)."""
        torch = self._torch
        caller = torch.cuda.current_stream()
        self.stream.wait_stream(caller)  # x may still be being written on the caller's stream
        batch = int(x.shape[0])
        out = torch.empty(
            (batch, self.out_channels, self.resolution, self.resolution),
            device=x.device, dtype=torch.float32,
        )
        if not self.context.set_input_shape(INPUT_NAME, tuple(x.shape)):
            raise RenderError(f"tensorrt backend: input shape {tuple(x.shape)} outside the profile")
        self.context.set_tensor_address(INPUT_NAME, int(x.data_ptr()))
        self.context.set_tensor_address(OUTPUT_NAME, int(out.data_ptr()))
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise RenderError("tensorrt backend: execute_async_v3 failed")
        caller.wait_stream(self.stream)
        return out

    def infer(self, maps: np.ndarray) -> np.ndarray:
        check_maps(maps, self.resolution, self.name)
        torch = self._torch
        out = np.empty_like(maps)
        with torch.inference_mode(), torch.cuda.stream(self.stream):
            for start in range(0, maps.shape[0], self.max_batch):
                chunk = maps[start : start + self.max_batch]
                x = torch.from_numpy(chunk).cuda()
                x = x.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0).contiguous()
                y = self.run_float(x)
                faces = y.add_(1.0).mul_(127.5).add_(0.5).clamp_(0, 255).to(torch.uint8)
                out[start : start + chunk.shape[0]] = faces.permute(0, 2, 3, 1).cpu().numpy()
        self.stream.synchronize()
        return out

    def close(self) -> None:
        # drop the context before the engine and runtime (TensorRT's required order)
        for attr in ("context", "engine"):
            if hasattr(self, attr):
                delattr(self, attr)
