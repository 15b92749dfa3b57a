"""Renderer backends: uint8 in/out contract, torch vs onnxruntime, fallback when one cannot start."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs torch (the train extra)")

from anchor.config import BackendConfig, RendererConfig  # noqa: E402
from anchor.errors import ConfigError, RenderError  # noqa: E402
from anchor.render.backends import (  # noqa: E402
    OnnxRuntimeBackend,
    RendererBackend,
    TorchBackend,
    create_backend,
    maps_to_input,
    output_to_faces,
)


def _maps(res: int, batch: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (batch, res, res, 3), dtype=np.uint8)


def test_pre_and_post_processing_are_inverse() -> None:
    maps = _maps(8, 3)
    x = maps_to_input(maps)
    assert x.dtype == np.float32 and x.shape == (3, 3, 8, 8)
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    assert np.array_equal(output_to_faces(x), maps)
    # out-of-range outputs are clipped, not wrapped
    assert output_to_faces(np.full((1, 3, 2, 2), 1.5, np.float32)).min() == 255
    assert output_to_faces(np.full((1, 3, 2, 2), -2.0, np.float32)).max() == 0


def test_onnxruntime_backend_contract(tiny_onnx: Path, tiny_config: RendererConfig) -> None:
    backend = OnnxRuntimeBackend(tiny_onnx, BackendConfig(threads=1))
    assert isinstance(backend, RendererBackend)
    assert backend.resolution == tiny_config.resolution
    assert backend.config == tiny_config  # read back from the ONNX metadata
    backend.warmup()
    faces = backend.infer(_maps(backend.resolution, 3))
    assert faces.shape == (3, backend.resolution, backend.resolution, 3)
    assert faces.dtype == np.uint8
    with pytest.raises(RenderError, match="must be"):
        backend.infer(_maps(backend.resolution + 4, 1))
    with pytest.raises(RenderError, match="uint8"):
        backend.infer(_maps(backend.resolution, 1).astype(np.float32))
    backend.close()


def test_torch_and_onnxruntime_backends_agree(tiny_onnx: Path, tiny_checkpoint: Path) -> None:
    cfg = BackendConfig(threads=1)
    ort_backend = OnnxRuntimeBackend(tiny_onnx, cfg)
    torch_backend = TorchBackend(tiny_checkpoint, cfg)
    maps = _maps(ort_backend.resolution, 2, seed=7)
    a, b = ort_backend.infer(maps), torch_backend.infer(maps)
    # fp32 both ways: at most one grey level from rounding a value within 1e-3
    assert int(np.abs(a.astype(int) - b.astype(int)).max()) <= 1


@pytest.mark.parametrize("name", ["tensorrt", "torch-cuda"])
def test_unavailable_gpu_backend_falls_back_to_onnxruntime(
    name: str, tiny_onnx: Path, tiny_checkpoint: Path, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the GPU backends may start here")
    cfg = BackendConfig(name=name, threads=1, fallback="onnxruntime", engines_dir=str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="anchor.render.backends"):
        backend = create_backend(cfg, tiny_onnx, tiny_checkpoint)
    assert backend.name == "onnxruntime"
    assert any(f"{name!r} cannot start" in r.getMessage() and "falling back" in r.getMessage()
               for r in caplog.records)
    assert backend.infer(_maps(backend.resolution, 1)).shape[0] == 1


def test_torch_backend_without_checkpoint_falls_back(tiny_onnx: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="anchor.render.backends"):
        backend = create_backend(BackendConfig(name="torch", threads=1), tiny_onnx)
    assert backend.name == "onnxruntime"
    assert "needs a renderer checkpoint" in caplog.text


def test_torch_backend_when_asked(tiny_onnx: Path, tiny_checkpoint: Path) -> None:
    backend = create_backend(BackendConfig(name="torch", threads=1), tiny_onnx, tiny_checkpoint)
    assert backend.name == "torch"


def test_unknown_backend_is_a_config_error(tiny_onnx: Path) -> None:
    with pytest.raises(ConfigError, match="not one of"):
        create_backend(BackendConfig(name="cuda-magic"), tiny_onnx)


def test_when_fallback_fails_too_the_error_names_both(tmp_path: Path) -> None:
    cfg = BackendConfig(name="tensorrt", fallback="onnxruntime", engines_dir=str(tmp_path))
    with pytest.raises(RenderError, match="tensorrt.*fallback 'onnxruntime'.*does not exist"):
        create_backend(cfg, tmp_path / "missing.onnx")
