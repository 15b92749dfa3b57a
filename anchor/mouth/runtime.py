"""Serving-time mouth model: the exported ONNX graph on onnxruntime's CPU provider (no torch).

The graph maps raw MFCC (B, 200, 13) to raw PCA mouth features (B, 50, 10); standardisation and
de-scaling are baked in by `anchor export mouth`. The resolved AnchorConfig it was trained with
travels in the model's metadata (key "anchor_config", JSON).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from anchor.config import AnchorConfig, MouthModelConfig, StreamingConfig, from_dict
from anchor.errors import ConfigError, MouthError

log = logging.getLogger(__name__)

INPUT_NAME = "mfcc"
OUTPUT_NAME = "mouth"
META_CONFIG = "anchor_config"
META_KIND = "mouth_kind"


class MouthOnnx:
    """Callable with the `infer` signature: (B, 200, 13) float32 -> (B, 50, 10) float32."""

    def __init__(self, path: str | Path, threads: int = 1) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise MouthError(f"{self.path}: mouth ONNX model does not exist")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, threads)
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                str(self.path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise MouthError(f"{self.path}: cannot load mouth ONNX model ({exc})") from exc
        meta = self.session.get_modelmeta().custom_metadata_map
        self.metadata: dict[str, str] = dict(meta)
        self.config_dict: dict[str, Any] = {}
        if META_CONFIG in meta:
            try:
                self.config_dict = json.loads(meta[META_CONFIG])
            except json.JSONDecodeError as exc:
                raise MouthError(f"{self.path}: metadata {META_CONFIG} is not JSON ({exc})") from exc
        self.kind = meta.get(META_KIND, "")
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.window_in = int(inp.shape[1])
        self.n_mfcc = int(inp.shape[2])

    @property
    def config(self) -> AnchorConfig:
        """The resolved config stored at export (defaults if the model carries none)."""
        try:
            return from_dict(AnchorConfig, self.config_dict) if self.config_dict else AnchorConfig()
        except ConfigError as exc:
            raise MouthError(f"{self.path}: stored config is invalid ({exc})") from exc

    @property
    def model_config(self) -> MouthModelConfig:
        return self.config.mouth_model

    @property
    def streaming_config(self) -> StreamingConfig:
        return self.config.streaming

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        if x.ndim != 3 or x.shape[1:] != (self.window_in, self.n_mfcc):
            raise MouthError(
                f"{self.path}: expected MFCC windows (B, {self.window_in}, {self.n_mfcc}), got {x.shape}"
            )
        (out,) = self.session.run(None, {self.input_name: x})
        return np.asarray(out, dtype=np.float32)
