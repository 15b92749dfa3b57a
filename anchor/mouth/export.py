"""Mouth checkpoint -> ONNX (opset 17, dynamic batch) mapping raw MFCC to raw PCA mouth features."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from pathlib import Path

from anchor.config import to_dict
from anchor.errors import MouthError
from anchor.mouth.runtime import INPUT_NAME, META_CONFIG, META_KIND, OUTPUT_NAME

log = logging.getLogger(__name__)

OPSET = 17


def export_module(module: object, out: str | Path, window_in: int, n_mfcc: int,
                  metadata: dict[str, str]) -> Path:
    """Export a raw-MFCC -> raw-PCA torch module to `out` atomically, with metadata_props."""
    import onnx
    import torch

    assert isinstance(module, torch.nn.Module)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    module.eval()
    dummy = torch.zeros(2, window_in, n_mfcc)
    fd, tmp_name = tempfile.mkstemp(prefix=out.name + ".", suffix=".tmp", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # LSTM batch-size and legacy-exporter warnings
            torch.onnx.export(
                module, (dummy,), str(tmp), dynamo=False, opset_version=OPSET,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            )
        model = onnx.load(str(tmp))
        for key, value in metadata.items():
            prop = model.metadata_props.add()
            prop.key, prop.value = key, value
        onnx.checker.check_model(model)
        onnx.save(model, str(tmp))
        os.replace(tmp, out)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, MouthError):
            raise
        raise MouthError(f"{out}: ONNX export failed ({exc})") from exc
    return out


def export_mouth(checkpoint: str | Path, out: str | Path) -> Path:
    """Write `out` from a `anchor train mouth` checkpoint; returns the path."""
    from anchor.mouth.models import inference_from_checkpoint

    module, cfg, ckpt = inference_from_checkpoint(checkpoint)
    meta = {
        META_CONFIG: json.dumps(to_dict(cfg)),
        META_KIND: cfg.mouth_model.kind,
        "epoch": str(ckpt.get("epoch", "")),
        "lookahead_ms": f"{cfg.streaming.lookahead_ms:g}",
    }
    path = export_module(module, out, cfg.mouth_model.window_in, cfg.mouth_model.n_mfcc, meta)
    log.info("exported %s (%s) -> %s", checkpoint, cfg.mouth_model.kind, path)
    return path
