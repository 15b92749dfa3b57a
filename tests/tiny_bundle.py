"""Test fixture: a tiny, valid avatar bundle built without torch or training, for tests of everything that
consumes bundles (engine, pipeline, server). Its renderer is an identity ONNX graph (the face is
the facial map) and its mouth model returns a slice of the MFCC window."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from anchor.avatar.bundle import write_avatar
from anchor.build.synth import synthetic_landmarks
from anchor.compose.body import BodyTemplate
from anchor.config import AnchorConfig


def identity_renderer_onnx(path: Path, resolution: int) -> Path:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("map", TensorProto.FLOAT, ["B", 3, resolution, resolution])
    y = helper.make_tensor_value_info("face", TensorProto.FLOAT, ["B", 3, resolution, resolution])
    graph = helper.make_graph([helper.make_node("Identity", ["map"], ["face"])], "renderer", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def slice_mouth_onnx(path: Path, window_in: int = 200, window_out: int = 50, dims: int = 10) -> Path:
    """(B, window_in, 13) -> (B, window_out, dims): the first rows/columns, scaled down."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("mfcc", TensorProto.FLOAT, ["B", window_in, 13])
    y = helper.make_tensor_value_info("mouth", TensorProto.FLOAT, ["B", window_out, dims])
    inits = [
        helper.make_tensor("starts", TensorProto.INT64, [2], [0, 0]),
        helper.make_tensor("ends", TensorProto.INT64, [2], [window_out, dims]),
        helper.make_tensor("axes", TensorProto.INT64, [2], [1, 2]),
        helper.make_tensor("k", TensorProto.FLOAT, [], [0.01]),
    ]
    nodes = [
        helper.make_node("Slice", ["mfcc", "starts", "ends", "axes"], ["sliced"]),
        helper.make_node("Mul", ["sliced", "k"], ["mouth"]),
    ]
    graph = helper.make_graph(nodes, "mouth", [x], [y], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def tiny_config(resolution: int = 32) -> AnchorConfig:
    cfg = AnchorConfig()
    return dataclasses.replace(
        cfg, renderer=dataclasses.replace(cfg.renderer, resolution=resolution, preset="tiny")
    )


def make_tiny_bundle(
    out: Path,
    *,
    n_frames: int = 6,
    resolution: int = 32,
    template_size: int = 64,
    frame_size: tuple[int, int] = (96, 80),
    name: str = "tiny",
    body_video: bool = False,
    with_jaw: bool = True,
) -> Path:
    """Write a small valid bundle to `out` (frame_size is (width, height)) and return its path."""
    import cv2

    from anchor.face.facial_map import TemplateFrame
    from anchor.face.jaw import JawRegression
    from anchor.mouth.features import MouthPca, normalise_mouth

    out = Path(out)
    work = out.parent / f".{out.name}.parts"
    work.mkdir(parents=True, exist_ok=True)
    cfg = tiny_config(resolution)
    rng = np.random.default_rng(0)
    comps = np.linalg.qr(rng.standard_normal((40, 10)))[0].T.astype(np.float32)  # (10, 40)
    pca = MouthPca(
        mean=np.zeros(40, np.float32), components=comps,
        explained_variance_ratio=np.linspace(0.3, 0.01, 10).astype(np.float32),
    )
    jaw = JawRegression(np.zeros((3, 34))) if with_jaw else None
    w, h = frame_size
    templates = []
    frames = np.zeros((n_frames, h, w, 3), np.uint8)
    boxes = np.zeros((n_frames, 4), np.float32)
    side = min(w, h) * 0.6
    for i in range(n_frames):
        lm = synthetic_landmarks(template_size)
        lm = lm + np.array([0.3 * i, 0.0])  # a little sway
        norm = normalise_mouth(lm[None])
        edges = np.zeros((template_size, template_size), np.uint8)
        cv2.polylines(edges, [np.round(lm[0:17]).astype(np.int32)], False, 255, 1)
        templates.append(
            TemplateFrame(
                edges=edges, crop_landmarks=lm, mouth_center=norm.center[0].astype(np.float64),
                mouth_angle=float(norm.angle[0]), mouth_scale=float(norm.scale[0]),
                mouth_mean=norm.mouth[0].astype(np.float64),
            )
        )
        frames[i] = (40 + 10 * i, 120, 80)
        x0, y0 = (w - side) / 2 + 0.3 * i, (h - side) / 2
        cv2.circle(frames[i], (int(w / 2), int(h / 2)), int(side / 3), (200, 160, 130), -1)
        boxes[i] = (x0, y0, x0 + side, y0 + side)
    mask = np.zeros((resolution, resolution), np.float32)
    cv2.ellipse(
        mask, (resolution // 2, int(resolution * 0.62)), (int(resolution * 0.3), int(resolution * 0.25)),
        0, 0, 360, 1.0, -1,
    )
    body = BodyTemplate(boxes, mask, frames)
    write_avatar(
        out, name=name, config=cfg,
        mouth_onnx=slice_mouth_onnx(work / "mouth.onnx"),
        renderer_onnx=identity_renderer_onnx(work / "renderer.onnx", resolution),
        pca=pca, jaw=jaw, templates=templates, body=body, body_video=body_video,
        description="synthetic test bundle",
    )
    for p in work.iterdir():
        p.unlink()
    work.rmdir()
    return out
