"""torch-cuda backend (fp16, channels_last, CUDA graphs) against the fp32 CPU reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs torch (the train extra)")

from anchor.config import BackendConfig  # noqa: E402
from anchor.render.backends import TorchBackend, TorchCudaBackend, create_backend  # noqa: E402
from anchor.render.networks import load_generator  # noqa: E402

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

# fp16 vs fp32 on tanh outputs in [-1, 1]: max abs diff <= 2e-2 (about 2.5 grey levels)
FP16_TOL = 2e-2


def test_fp16_generator_matches_fp32(tiny_checkpoint: Path) -> None:
    generator, cfg = load_generator(tiny_checkpoint)
    x = torch.rand(4, 3, cfg.resolution, cfg.resolution) * 2 - 1
    with torch.no_grad():
        ref = generator(x)
        half = generator.to("cuda", torch.float16).to(memory_format=torch.channels_last)
        got = half(x.to("cuda", torch.float16).contiguous(memory_format=torch.channels_last))
    assert float((got.float().cpu() - ref).abs().max()) <= FP16_TOL


def test_torch_cuda_backend_matches_torch_cpu(tiny_checkpoint: Path, tiny_onnx: Path) -> None:
    cfg = BackendConfig(name="torch-cuda", max_batch=2, threads=1)
    backend = create_backend(cfg, tiny_onnx, tiny_checkpoint)
    assert isinstance(backend, TorchCudaBackend)  # no fallback on a CUDA machine
    reference = TorchBackend(tiny_checkpoint, cfg)
    rng = np.random.default_rng(0)
    maps = rng.integers(0, 256, (5, backend.resolution, backend.resolution, 3), dtype=np.uint8)
    got, ref = backend.infer(maps), reference.infer(maps)  # 5 > max_batch: split into graphs
    assert got.shape == maps.shape and got.dtype == np.uint8
    # FP16_TOL in grey levels, plus one for rounding
    assert int(np.abs(got.astype(int) - ref.astype(int)).max()) <= int(FP16_TOL * 127.5) + 1
    backend.close()
