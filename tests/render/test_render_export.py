"""Renderer ONNX export: names, dynamic batch, opset, metadata, parity with torch, the command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs torch (the train extra)")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from anchor.cli import main  # noqa: E402
from anchor.config import RendererConfig, from_dict  # noqa: E402
from anchor.errors import RenderError  # noqa: E402
from anchor.render.export import META_CONFIG, META_RENDERER, export_generator  # noqa: E402
from anchor.render.networks import build_generator, load_generator  # noqa: E402


def test_onnx_interface_and_metadata(tiny_onnx: Path, tiny_config: RendererConfig) -> None:
    model = onnx.load(str(tiny_onnx))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert [i.name for i in model.graph.input] == ["map"]
    assert [o.name for o in model.graph.output] == ["face"]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param  # symbolic batch
    assert [d.dim_value for d in dims[1:]] == [3, tiny_config.resolution, tiny_config.resolution]
    meta = {p.key: p.value for p in model.metadata_props}
    assert from_dict(RendererConfig, json.loads(meta[META_RENDERER])) == tiny_config
    assert json.loads(meta[META_CONFIG])["renderer"]["resolution"] == tiny_config.resolution


def test_onnxruntime_matches_torch_fp32(tiny_onnx: Path, tiny_checkpoint: Path) -> None:
    generator, cfg = load_generator(tiny_checkpoint)
    sess = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    for batch in (1, 3):  # dynamic batch: a size never used at export time
        x = rng.uniform(-1, 1, (batch, 3, cfg.resolution, cfg.resolution)).astype(np.float32)
        with torch.no_grad():
            ref = generator(torch.from_numpy(x)).numpy()
        got = sess.run(["face"], {"map": x})[0]
        assert got.shape == ref.shape
        assert float(np.abs(got - ref).max()) <= 1e-3


def test_export_rejects_old_opset_and_leaves_no_file(tmp_path: Path, tiny_config: RendererConfig) -> None:
    out = tmp_path / "r.onnx"
    with pytest.raises(RenderError, match="opset 16"):
        export_generator(build_generator(tiny_config), tiny_config, out, opset=16)
    assert list(tmp_path.iterdir()) == []


def test_export_command(tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sub" / "renderer.onnx"
    assert main(["export", "renderer", str(tiny_checkpoint), "-o", str(out)]) == 0
    assert out.is_file()
    assert "dynamic batch" in capsys.readouterr().out
    assert sorted(p.name for p in out.parent.iterdir()) == ["renderer.onnx"]  # no temp files left


def test_export_command_missing_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "renderer", str(tmp_path / "nope.pt"), "-o", str(tmp_path / "r.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "does not exist" in err
