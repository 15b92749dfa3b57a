"""ONNX export: raw MFCC in, raw PCA out, onnxruntime == torch for every model kind."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
import torch  # noqa: E402

pytest.importorskip("onnxruntime")

from anchor.config import AnchorConfig, MouthModelConfig, from_dict, to_dict  # noqa: E402
from anchor.errors import MouthError  # noqa: E402
from anchor.mouth.export import export_mouth  # noqa: E402
from anchor.mouth.models import (  # noqa: E402
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    KINDS,
    build_generator,
    inference_from_checkpoint,
)
from anchor.mouth.runtime import MouthOnnx  # noqa: E402

TINY: dict[str, Any] = dict(channels=16, fc_hidden=16, lstm_hidden=8, lstm_layers=2, disc_channels=8)


def write_checkpoint(path: Path, kind: str) -> AnchorConfig:
    """A checkpoint in the `anchor train mouth` format with random weights and statistics."""
    torch.manual_seed(1)
    cfg = AnchorConfig(mouth_model=MouthModelConfig(kind=kind, **TINY))
    gen = build_generator(cfg.mouth_model)
    norm = {
        "mfcc_mean": torch.randn(13) * 5,
        "mfcc_std": torch.rand(13) * 3 + 0.5,
        "target_scale": torch.rand(10) * 0.1 + 0.01,
    }
    torch.save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "kind": kind,
                "config": to_dict(cfg), "epoch": 3, "model": gen.state_dict(), "norm": norm}, path)
    return cfg


@pytest.mark.parametrize("kind", KINDS)
def test_onnx_matches_torch(tmp_path: Path, kind: str) -> None:
    torch.set_num_threads(1)
    ckpt = tmp_path / "checkpoint.pt"
    cfg = write_checkpoint(ckpt, kind)
    onnx_path = export_mouth(ckpt, tmp_path / "mouth.onnx")
    module, _, _ = inference_from_checkpoint(ckpt)
    rt = MouthOnnx(onnx_path, threads=1)
    x = (np.random.default_rng(0).standard_normal((5, 200, 13)) * 10).astype(np.float32)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    got = rt(x)  # batch 5: the exported batch axis is dynamic
    assert got.shape == (5, 50, 10)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(rt(x[:1]), expected[:1], atol=1e-4, rtol=1e-4)
    # The resolved config travels with the model.
    assert rt.kind == kind
    assert rt.config == cfg
    assert from_dict(AnchorConfig, json.loads(rt.metadata["anchor_config"])) == cfg


def test_runtime_rejects_wrong_shapes_and_missing_files(tmp_path: Path) -> None:
    ckpt = tmp_path / "checkpoint.pt"
    write_checkpoint(ckpt, "tcn")
    rt = MouthOnnx(export_mouth(ckpt, tmp_path / "m.onnx"))
    with pytest.raises(MouthError, match="expected MFCC windows"):
        rt(np.zeros((1, 100, 13), np.float32))
    with pytest.raises(MouthError, match="does not exist"):
        MouthOnnx(tmp_path / "none.onnx")
    with pytest.raises(MouthError, match="does not exist"):
        export_mouth(tmp_path / "none.pt", tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()
