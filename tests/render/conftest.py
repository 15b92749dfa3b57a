"""Tiny renderer fixtures: a random-weight generator's checkpoint and ONNX export (made once).

Everything torch-related is imported inside the fixtures, so the torch-free tests here still run
(and the torch ones skip) where the train extra is not installed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from anchor.config import RendererConfig


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_config() -> RendererConfig:
    from render_helpers import tiny_renderer_config

    return tiny_renderer_config()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory, tiny_config: RendererConfig) -> Path:
    pytest.importorskip("torch", reason="needs torch (the train extra)")
    from render_helpers import save_checkpoint

    return save_checkpoint(tiny_config, tmp_path_factory.mktemp("renderer") / "checkpoint.pt")


@pytest.fixture(scope="session")
def tiny_onnx(tiny_checkpoint: Path) -> Path:
    pytest.importorskip("onnxscript", reason="the ONNX export needs onnxscript (the train extra)")
    from anchor.render.export import export_renderer

    return export_renderer(tiny_checkpoint, tiny_checkpoint.parent / "renderer.onnx")
