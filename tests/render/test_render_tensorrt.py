"""TensorRT engines: cache keys, the missing-TensorRT error, and (with TensorRT + CUDA) build,
cache reuse and parity with torch."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from anchor.cli import main
from anchor.config import BackendConfig
from anchor.errors import RenderError
from anchor.render import tensorrt as rt


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


HAVE_TRT = importlib.util.find_spec("tensorrt") is not None and _cuda()
needs_trt = pytest.mark.skipif(not HAVE_TRT, reason="needs TensorRT importable and a CUDA device")


def test_engine_name_keys_onnx_gpu_version_and_batch(tmp_path: Path) -> None:
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    a.write_bytes(b"graph a")
    b.write_bytes(b"graph b")
    name = rt.engine_path_for(a, tmp_path, 4, trt_version="10.7.0", gpu="NVIDIA H100 80GB HBM3").name
    assert name == f"renderer-{rt.sha256_file(a)[:16]}-nvidia-h100-80gb-hbm3-trt10.7.0-b4.engine"
    others = {
        rt.engine_path_for(b, tmp_path, 4, trt_version="10.7.0", gpu="NVIDIA H100 80GB HBM3").name,
        rt.engine_path_for(a, tmp_path, 8, trt_version="10.7.0", gpu="NVIDIA H100 80GB HBM3").name,
        rt.engine_path_for(a, tmp_path, 4, trt_version="10.8.0", gpu="NVIDIA H100 80GB HBM3").name,
        rt.engine_path_for(a, tmp_path, 4, trt_version="10.7.0", gpu="NVIDIA H200").name,
    }
    assert name not in others and len(others) == 4


def test_missing_tensorrt_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError
    with pytest.raises(RenderError, match="TensorRT is not installed"):
        rt.import_tensorrt()


def test_build_engine_command_without_tensorrt(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    onnx_path = tmp_path / "renderer.onnx"
    onnx_path.write_bytes(b"x")
    code = main(["build-engine", str(onnx_path), "--engines-dir", str(tmp_path / "engines")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("anchor: error: TensorRT is not installed")
    assert "\n" not in err
    assert not (tmp_path / "engines").exists()


class _FakeTrt:
    """Just enough of the TensorRT 10 Python API to drive build_engine without a GPU."""

    def __init__(self) -> None:
        self.builds = 0
        self.profiles: list[tuple[object, ...]] = []
        self.flags: list[object] = []
        self.timing_blobs: list[bytes] = []
        fake = self

        class Dims(list):  # type: ignore[type-arg]
            pass

        class Tensor:
            name = "map"
            shape = Dims([-1, 3, 32, 32])

        class Network:
            num_inputs = 1

            def get_input(self, i: int) -> Tensor:
                return Tensor()

        class Cache:
            def __init__(self, blob: bytes) -> None:
                self.blob = blob

            def serialize(self) -> bytes:
                return self.blob + b"+timing"

        class Profile:
            def set_shape(self, name: str, *shapes: object) -> None:
                fake.profiles.append((name, *shapes))

        class Config:
            def set_memory_pool_limit(self, pool: object, size: int) -> None:
                assert size > 0

            def set_flag(self, flag: object) -> None:
                fake.flags.append(flag)

            def add_optimization_profile(self, profile: Profile) -> None:
                pass

            def create_timing_cache(self, blob: bytes) -> Cache:
                fake.timing_blobs.append(blob)
                self.cache = Cache(blob)
                return self.cache

            def set_timing_cache(self, cache: Cache, ignore_mismatch: bool) -> None:
                pass

            def get_timing_cache(self) -> Cache:
                return self.cache

        class Builder:
            def __init__(self, logger: object) -> None:
                pass

            def create_network(self, flags: int) -> Network:
                assert flags == 0  # explicit batch is the TensorRT 10 default
                return Network()

            def create_builder_config(self) -> Config:
                return Config()

            def create_optimization_profile(self) -> Profile:
                return Profile()

            def build_serialized_network(self, network: Network, config: Config) -> bytes:
                fake.builds += 1
                return b"engine"

        class OnnxParser:
            num_errors = 0

            def __init__(self, network: Network, logger: object) -> None:
                pass

            def parse(self, data: bytes) -> bool:
                return True

        class Logger:
            WARNING = 1

            def __init__(self, level: int) -> None:
                pass

        self.module = types.SimpleNamespace(
            __version__="10.99.0", Builder=Builder, OnnxParser=OnnxParser, Logger=Logger,
            BuilderFlag=types.SimpleNamespace(FP16="fp16"),
            MemoryPoolType=types.SimpleNamespace(WORKSPACE="workspace"),
        )


def test_build_engine_caches_by_key_and_keeps_timing_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fake = _FakeTrt()
    monkeypatch.setattr(rt, "import_tensorrt", lambda: fake.module)
    monkeypatch.setattr(rt, "gpu_name", lambda: "Fake GPU 1")
    onnx_path = tmp_path / "renderer.onnx"
    onnx_path.write_bytes(b"graph v1")
    engines = tmp_path / "engines"

    path = rt.build_engine(onnx_path, engines, max_batch=8)
    assert path.read_bytes() == b"engine" and fake.builds == 1
    assert fake.profiles == [("map", (1, 3, 32, 32), (4, 3, 32, 32), (8, 3, 32, 32))]
    assert fake.flags == ["fp16"]
    timing = engines / rt.timing_cache_filename("Fake GPU 1", "10.99.0")
    assert timing.read_bytes() == b"+timing"

    assert rt.build_engine(onnx_path, engines, max_batch=8) == path  # cached: no build
    assert fake.builds == 1

    onnx_path.write_bytes(b"graph v2")  # a new export misses the cache, reports the old engine
    with caplog.at_level("WARNING", logger="anchor.render.tensorrt"):
        new = rt.build_engine(onnx_path, engines, max_batch=8)
    assert new != path and fake.builds == 2
    assert "1 other engine(s)" in caplog.text
    assert fake.timing_blobs[-1] == b"+timing"  # the persisted timing cache was reused
    assert sorted(p.suffix for p in engines.iterdir()) == [".cache", ".engine", ".engine"]


@needs_trt
@pytest.mark.tensorrt
@pytest.mark.gpu
def test_engine_build_cache_reuse_and_parity(
    tiny_onnx: Path, tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tensorrt as trt
    import torch

    from anchor.render.networks import load_generator

    engines = tmp_path / "engines"
    path = rt.build_engine(tiny_onnx, engines, max_batch=4)
    assert path.is_file() and path.parent == engines
    assert any(p.name.startswith("timing-") for p in engines.iterdir())  # timing cache persisted
    mtime = path.stat().st_mtime_ns

    # the second call must come from the cache: building would need the Builder
    def no_build(*_a: object, **_k: object) -> None:
        raise AssertionError("rebuilt an engine that was cached")

    with monkeypatch.context() as m:
        m.setattr(trt, "Builder", no_build)
        assert rt.build_engine(tiny_onnx, engines, max_batch=4) == path
    assert path.stat().st_mtime_ns == mtime

    backend = rt.TensorRtBackend(tiny_onnx, BackendConfig(name="tensorrt", max_batch=4,
                                                         engines_dir=str(engines)))
    assert backend.engine_path == path
    generator, cfg = load_generator(tiny_checkpoint)
    x = torch.rand(3, 3, cfg.resolution, cfg.resolution) * 2 - 1
    with torch.no_grad():
        ref = generator(x).numpy()
    got = backend.run_float(x.cuda().contiguous())
    backend.stream.synchronize()
    # fp16 engine vs fp32 torch on [-1, 1] outputs
    assert float(np.abs(got.cpu().numpy() - ref).max()) <= 2e-2
    # batches above max_batch are split; uint8 in, uint8 out
    maps = np.random.default_rng(0).integers(0, 256, (6, cfg.resolution, cfg.resolution, 3), np.uint8)
    faces = backend.infer(maps)
    assert faces.shape == maps.shape and faces.dtype == np.uint8
    backend.close()
