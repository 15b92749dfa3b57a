"""Renderer generator -> ONNX: input "map" float32 (B, 3, R, R) in [-1, 1], output "face" float32
(B, 3, R, R) in [-1, 1], dynamic batch, opset 18 (the contract asks >= 17; the dynamo exporter
has no opset-17 form of reflection padding), the RendererConfig (and, from a checkpoint,
the whole resolved AnchorConfig) as JSON in metadata_props.

The runtime side (onnxruntime, TensorRT) reads the shape back from the metadata, so serving never
needs torch or the checkpoint.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from anchor.config import RendererConfig, to_dict
from anchor.errors import RenderError
from anchor.render.networks import generator_from_checkpoint, load_checkpoint_dict

log = logging.getLogger(__name__)

INPUT_NAME = "map"
OUTPUT_NAME = "face"
DEFAULT_OPSET = 18
# metadata_props keys
META_RENDERER = "anchor.renderer_config"
META_CONFIG = "anchor.config"
META_FORMAT = "anchor.format"
FORMAT = "anchor-renderer-v1"


def export_generator(
    generator: nn.Module,
    cfg: RendererConfig,
    out_onnx: str | Path,
    *,
    anchor_config: dict[str, Any] | None = None,
    opset: int = DEFAULT_OPSET,
    verify: bool = True,
) -> Path:
    """Export a generator (any device / mode; a CPU fp32 eval copy is exported, the caller's
    module is left as it was) to `out_onnx`.

    Written to a temp file next to the target and renamed, so a failed export leaves nothing.
    With `verify`, the exported graph is compared with torch at batch 1 and 2 (max abs diff
    <= 1e-3) before the rename.
    """
    if opset < DEFAULT_OPSET:
        # the dynamo exporter has no opset-17 adapter for Pad (reflection padding)
        raise RenderError(f"{out_onnx}: opset {opset} is not supported (needs >= {DEFAULT_OPSET})")
    out = Path(out_onnx)
    out.parent.mkdir(parents=True, exist_ok=True)
    generator = copy.deepcopy(generator).to("cpu", torch.float32).eval()
    r = cfg.resolution
    example = torch.zeros(1, cfg.input_nc, r, r)
    fd, tmp_name = tempfile.mkstemp(prefix=out.name + ".", suffix=".tmp", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        batch = torch.export.Dim("batch", min=1, max=1024)
        with torch.no_grad(), warnings.catch_warnings(), _quiet_exporter_logs():
            # the dynamo exporter gives a clean graph (constant Pad, no shape arithmetic), which
            # both onnxruntime and TensorRT like better than the TorchScript exporter's
            warnings.simplefilter("ignore", category=FutureWarning)
            program = torch.onnx.export(
                generator,
                (example,),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: batch},),
                opset_version=opset,
                dynamo=True,
                optimize=True,
                verbose=False,
            )
        if program is None:
            raise RenderError(f"{out}: ONNX export produced no program")
        program.save(str(tmp))
        model = onnx.load(str(tmp))
        meta = {META_FORMAT: FORMAT, META_RENDERER: json.dumps(to_dict(cfg), sort_keys=True)}
        if anchor_config is not None:
            meta[META_CONFIG] = json.dumps(anchor_config, sort_keys=True)
        del model.metadata_props[:]
        for key, value in meta.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        model.doc_string = f"anchor pix2pixHD renderer ({cfg.preset}, {r}x{r})"
        onnx.checker.check_model(model)
        onnx.save(model, str(tmp))
        if verify:
            _verify(generator, cfg, tmp)
        os.replace(tmp, out)
    except RenderError:
        raise
    except Exception as exc:  # noqa: BLE001 - one user-facing line for any exporter failure
        raise RenderError(f"{out}: ONNX export failed ({exc.__class__.__name__}: {exc})") from exc
    finally:
        tmp.unlink(missing_ok=True)
    log.info("exported renderer %s (%dx%d, opset %d) to %s", cfg.preset, r, r, opset, out)
    return out


@contextlib.contextmanager
def _quiet_exporter_logs() -> Iterator[None]:
    # the exporter and its graph optimiser log every pass at INFO (and a warning per missing
    # optional torchvision op): noise for a user exporting one small graph
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _verify(generator: nn.Module, cfg: RendererConfig, onnx_path: Path, tol: float = 1e-3) -> None:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for batch in (1, 2):
        x = rng.uniform(-1, 1, (batch, cfg.input_nc, cfg.resolution, cfg.resolution))
        x = x.astype(np.float32)
        with torch.no_grad():
            ref = generator(torch.from_numpy(x)).numpy()
        got = sess.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
        diff = float(np.abs(ref - got).max())
        if diff > tol:
            raise RenderError(
                f"{onnx_path}: exported graph differs from torch by {diff:.2e} at batch {batch}"
            )


def export_renderer(checkpoint: str | Path, out_onnx: str | Path, *, opset: int = DEFAULT_OPSET) -> Path:
    """Renderer checkpoint (see `load_generator`) -> ONNX file; returns its path."""
    ckpt = load_checkpoint_dict(checkpoint)
    generator, cfg = generator_from_checkpoint(ckpt, str(checkpoint))
    return export_generator(generator, cfg, out_onnx, anchor_config=ckpt["config"], opset=opset)

