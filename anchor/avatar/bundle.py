"""The avatar bundle: everything one anchor needs at serving time, in one directory.

Layout::

    BUNDLE/
      avatar.toml     format, version, name, fps, face_resolution, lookahead_ms,
                      [templates] frames/size, [body] frames/width/height,
                      [files.<role>] path/sha256/bytes for every file, [config] the resolved config
      mouth.onnx      audio -> mouth model (raw MFCC (B,200,13) in, raw PCA (B,50,dims) out)
      renderer.onnx   facial map "map" (B,3,R,R) -> face "face" (B,3,R,R), both in [-1, 1]
      pca.npz         MouthPca (mean (40,), components (dims,40), explained_variance_ratio)
      jaw.npz         JawRegression (optional)
      templates.npz   one stacked array per TemplateFrame field: edges (K,S,S) uint8,
                      crop_landmarks (K,68,2), mouth_center (K,2), mouth_angle (K,),
                      mouth_scale (K,), mouth_mean (K,40)
      body.npz        face_boxes (K,4) float32 x0,y0,x1,y1; blend_mask (R,R) float32;
                      frames (K,H,W,3) uint8 unless body.mp4 holds them
      body.mp4        body frames (optional; H.264 4:4:4 near-lossless), decoded lazily
      gestures.toml   keyword gestures (optional): [[gesture]] name, keywords, probability,
                      ramp_in_s, hold_s, ramp_out_s, motion rows [dx, dy, tilt] (compose/motion.py)

Template frame i and body frame i are the same moment of the idle footage: the face rendered from
template i is pasted into body frame i inside face box i. `avatar.toml` is written last inside a
temporary directory that is then renamed, so a bundle is either complete or absent.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
import shutil
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from anchor.avatar import toml_writer
from anchor.compose.body import BodyTemplate
from anchor.config import AnchorConfig, from_dict, to_dict
from anchor.errors import AnchorError, AvatarError

if TYPE_CHECKING:
    from anchor.compose.motion import GestureSet
    from anchor.face.facial_map import TemplateFrame
    from anchor.face.jaw import JawRegression
    from anchor.mouth.features import MouthPca

log = logging.getLogger(__name__)

FORMAT = "anchor-avatar"
VERSION = 1
MANIFEST = "avatar.toml"

# role -> (default file name, required)
FILE_ROLES: dict[str, tuple[str, bool]] = {
    "mouth": ("mouth.onnx", True),
    "renderer": ("renderer.onnx", True),
    "pca": ("pca.npz", True),
    "jaw": ("jaw.npz", False),
    "templates": ("templates.npz", True),
    "body": ("body.npz", True),
    "body_video": ("body.mp4", False),
    "gestures": ("gestures.toml", False),
}
TOP_LEVEL_KEYS = {
    "format", "version", "name", "description", "created", "fps", "face_resolution",
    "lookahead_ms", "templates", "body", "files", "config", "mouth_base",
}
# [mouth_base]: the generic mouth model a bundle's mouth was fine-tuned from (optional).
MOUTH_BASE_KEYS = {"name", "sha256", "clips"}
FILE_ENTRY_KEYS = {"path", "sha256", "bytes"}
# Body frames bigger than this (raw bytes) go to body.mp4 instead of body.npz.
BODY_VIDEO_THRESHOLD = 16 << 20
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def default_avatar_path() -> Path:
    """The avatar shipped with the package (built by `python -m anchor.build.default_avatar`)."""
    return Path(__file__).resolve().parent / "default"


@dataclass(frozen=True)
class AvatarBundle:
    path: Path
    name: str
    fps: int
    face_resolution: int
    lookahead_ms: float
    config: AnchorConfig
    mouth_onnx: Path
    renderer_onnx: Path
    pca: MouthPca
    jaw: JawRegression | None
    templates: list[TemplateFrame]
    body: BodyTemplate
    manifest: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)
    gestures: GestureSet | None = None  # the keyword gesture dictionary, if the bundle has one

    @property
    def n_templates(self) -> int:
        return len(self.templates)


# --------------------------------------------------------------------------------------------
# helpers


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _template_fields() -> list[str]:
    from anchor.face.facial_map import TemplateFrame

    return [f.name for f in dataclasses.fields(TemplateFrame)]


# Expected per-frame shapes of the TemplateFrame fields we know about (None = any size there).
_TEMPLATE_SHAPES: dict[str, tuple[int | None, ...]] = {
    "edges": (None, None),
    "crop_landmarks": (68, 2),
    "mouth_center": (2,),
    "mouth_angle": (),
    "mouth_scale": (),
    "mouth_mean": (40,),
}


def _want_type(manifest: dict[str, Any], key: str, kinds: tuple[type, ...], where: Path) -> Any:
    if key not in manifest:
        raise AvatarError(f"{where}: missing field {key!r}")
    value = manifest[key]
    if isinstance(value, bool) or not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise AvatarError(f"{where}: field {key!r} must be {names}, got {value!r}")
    return value


def _onnx_dims(path: Path, which: str) -> list[tuple[str, list[int | str]]]:
    """(name, dims) of a model's graph inputs or outputs, without loading weights' data."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises several unrelated types for a bad file
        raise AvatarError(f"{path}: not a readable ONNX model ({exc})") from exc
    items = model.graph.input if which == "input" else model.graph.output
    out = []
    for value in items:
        dims: list[int | str] = []
        for d in value.type.tensor_type.shape.dim:
            dims.append(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?"))
        out.append((value.name, dims))
    return out


# --------------------------------------------------------------------------------------------
# loading


def load_avatar(path: str | Path, *, verify_checksums: bool = True) -> AvatarBundle:
    """Read and validate a bundle; AvatarError names the file and exactly what is wrong.

    Body frames stored in body.mp4 are decoded on first use (see BodyTemplate.frames).
    """
    root = Path(path)
    if not root.is_dir():
        raise AvatarError(f"avatar bundle {root} does not exist (or is not a directory)")
    mpath = root / MANIFEST
    if not mpath.is_file():
        raise AvatarError(f"{root}: no {MANIFEST} (not an avatar bundle, or an unfinished one)")
    try:
        manifest = tomllib.loads(mpath.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise AvatarError(f"{mpath}: not valid TOML ({exc})") from exc

    fmt = manifest.get("format")
    if fmt != FORMAT:
        raise AvatarError(f"{mpath}: format is {fmt!r}, expected {FORMAT!r}")
    version = _want_type(manifest, "version", (int,), mpath)
    if version > VERSION:
        raise AvatarError(
            f"{mpath}: format version {version} is newer than this anchor supports ({VERSION}); "
            "upgrade anchor"
        )
    if version < 1:
        raise AvatarError(f"{mpath}: format version {version} is invalid")
    unknown = sorted(set(manifest) - TOP_LEVEL_KEYS)
    if unknown:
        raise AvatarError(f"{mpath}: unknown field(s) {', '.join(unknown)}")

    name = _want_type(manifest, "name", (str,), mpath)
    if not name.strip():
        raise AvatarError(f"{mpath}: field 'name' is empty")
    fps = _want_type(manifest, "fps", (int,), mpath)
    face_resolution = _want_type(manifest, "face_resolution", (int,), mpath)
    lookahead_ms = float(_want_type(manifest, "lookahead_ms", (int, float), mpath))
    if fps <= 0 or face_resolution <= 0 or lookahead_ms < 0:
        raise AvatarError(
            f"{mpath}: fps ({fps}) and face_resolution ({face_resolution}) must be > 0 and "
            f"lookahead_ms ({lookahead_ms}) >= 0"
        )

    base = manifest.get("mouth_base")
    if base is not None and (not isinstance(base, dict) or set(base) - MOUTH_BASE_KEYS
                             or not isinstance(base.get("name"), str)):
        raise AvatarError(
            f"{mpath}: [mouth_base] must be a table with name (and sha256, clips)"
        )

    config_table = manifest.get("config")
    if not isinstance(config_table, dict):
        raise AvatarError(f"{mpath}: missing [config] table (the resolved configuration)")
    try:
        config = from_dict(AnchorConfig, config_table)
    except AnchorError as exc:
        raise AvatarError(f"{mpath}: [config]: {exc}") from exc
    except TypeError as exc:
        raise AvatarError(f"{mpath}: [config]: {exc}") from exc
    if config.video.fps != fps:
        raise AvatarError(f"{mpath}: fps {fps} disagrees with config video.fps {config.video.fps}")
    if config.renderer.resolution != face_resolution:
        raise AvatarError(
            f"{mpath}: face_resolution {face_resolution} disagrees with config "
            f"renderer.resolution {config.renderer.resolution}"
        )
    if abs(config.streaming.lookahead_ms - lookahead_ms) > 1e-6:
        raise AvatarError(
            f"{mpath}: lookahead_ms {lookahead_ms:g} disagrees with the config's streaming "
            f"lookahead ({config.streaming.lookahead_ms:g} ms)"
        )

    files = _check_files(root, mpath, manifest, verify_checksums)
    templates_meta = _table(manifest, "templates", {"frames", "size"}, mpath)
    body_meta = _table(manifest, "body", {"frames", "width", "height"}, mpath)

    pca = _load_pca(files["pca"], config)
    jaw = _load_jaw(files["jaw"]) if "jaw" in files else None
    _check_mouth_onnx(files["mouth"], config)
    _check_renderer_onnx(files["renderer"], face_resolution)
    templates = _load_templates(files["templates"], templates_meta)
    body = _load_body(files["body"], files.get("body_video"), body_meta, face_resolution)
    gestures = _load_gestures(files["gestures"]) if "gestures" in files else None
    if body.n_frames != len(templates):
        raise AvatarError(
            f"{files['body']}: {body.n_frames} body frames but {len(templates)} template frames "
            "(they must pair up one to one)"
        )
    return AvatarBundle(
        path=root,
        name=name,
        fps=fps,
        face_resolution=face_resolution,
        lookahead_ms=lookahead_ms,
        config=config,
        mouth_onnx=files["mouth"],
        renderer_onnx=files["renderer"],
        pca=pca,
        jaw=jaw,
        templates=templates,
        body=body,
        manifest=manifest,
        gestures=gestures,
    )


def _load_gestures(path: Path) -> GestureSet:
    from anchor.compose.motion import load_gestures

    try:
        return load_gestures(path)
    except AnchorError as exc:
        raise AvatarError(str(exc)) from None


def _table(manifest: dict[str, Any], key: str, fields: set[str], mpath: Path) -> dict[str, int]:
    table = manifest.get(key)
    if not isinstance(table, dict):
        raise AvatarError(f"{mpath}: missing [{key}] table ({', '.join(sorted(fields))})")
    unknown = sorted(set(table) - fields)
    if unknown:
        raise AvatarError(f"{mpath}: [{key}] has unknown field(s) {', '.join(unknown)}")
    out: dict[str, int] = {}
    for f in sorted(fields):
        v = table.get(f)
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise AvatarError(f"{mpath}: [{key}] {f} must be a positive integer, got {v!r}")
        out[f] = v
    return out


def _check_files(
    root: Path, mpath: Path, manifest: dict[str, Any], verify: bool
) -> dict[str, Path]:
    table = manifest.get("files")
    if not isinstance(table, dict):
        raise AvatarError(f"{mpath}: missing [files] table")
    unknown = sorted(set(table) - set(FILE_ROLES))
    if unknown:
        raise AvatarError(f"{mpath}: [files] has unknown role(s) {', '.join(unknown)}")
    out: dict[str, Path] = {}
    for role, (_default, required) in FILE_ROLES.items():
        entry = table.get(role)
        if entry is None:
            if required:
                raise AvatarError(f"{mpath}: [files] lists no {role} file")
            continue
        if not isinstance(entry, dict):
            raise AvatarError(f"{mpath}: [files.{role}] must be a table")
        bad = sorted(set(entry) - FILE_ENTRY_KEYS)
        if bad:
            raise AvatarError(f"{mpath}: [files.{role}] has unknown field(s) {', '.join(bad)}")
        rel = entry.get("path")
        digest = entry.get("sha256")
        if not isinstance(rel, str) or not _SAFE_NAME.match(rel) or rel in (".", ".."):
            raise AvatarError(f"{mpath}: [files.{role}] path {rel!r} must be a plain file name")
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise AvatarError(f"{mpath}: [files.{role}] sha256 {digest!r} is not a sha256 hex digest")
        fpath = root / rel
        if not fpath.is_file():
            raise AvatarError(f"{fpath}: missing ({role} file listed in {MANIFEST})")
        size = entry.get("bytes")
        if size is not None and fpath.stat().st_size != size:
            raise AvatarError(
                f"{fpath}: size {fpath.stat().st_size} bytes, {MANIFEST} says {size} "
                "(file changed or truncated)"
            )
        if verify:
            actual = sha256_file(fpath)
            if actual != digest:
                raise AvatarError(
                    f"{fpath}: checksum mismatch (sha256 {actual[:12]}..., {MANIFEST} says "
                    f"{digest[:12]}...): file changed or corrupt"
                )
        out[role] = fpath
    return out


def _load_pca(path: Path, config: AnchorConfig) -> MouthPca:
    from anchor.mouth.features import MouthPca

    try:
        pca = MouthPca.load(path)
    except AnchorError as exc:
        raise AvatarError(f"{path}: {exc}") from exc
    except (OSError, KeyError, ValueError) as exc:
        raise AvatarError(f"{path}: cannot read PCA basis ({exc})") from exc
    comps = np.asarray(pca.components)
    mean = np.asarray(pca.mean)
    if mean.shape != (40,) or comps.ndim != 2 or comps.shape[1] != 40:
        raise AvatarError(
            f"{path}: PCA mean {mean.shape} / components {comps.shape} must be (40,) / (dims, 40)"
        )
    if comps.shape[0] != config.mouth_model.pca_dims:
        raise AvatarError(
            f"{path}: PCA has {comps.shape[0]} components but config mouth_model.pca_dims is "
            f"{config.mouth_model.pca_dims}"
        )
    return pca


def _load_jaw(path: Path) -> JawRegression:
    from anchor.face.jaw import JawRegression

    try:
        return JawRegression.load(path)
    except AnchorError as exc:
        raise AvatarError(str(exc)) from exc


def _check_mouth_onnx(path: Path, config: AnchorConfig) -> None:
    inputs = _onnx_dims(path, "input")
    outputs = _onnx_dims(path, "output")
    if len(inputs) != 1 or len(outputs) != 1:
        raise AvatarError(f"{path}: mouth model needs one input and one output")
    mc = config.mouth_model
    want_in = [mc.window_in, mc.n_mfcc]
    want_out = [mc.window_out, mc.pca_dims]
    for (label, dims), want in ((inputs[0], want_in), (outputs[0], want_out)):
        static = dims[1:]
        if len(dims) != 3 or any(
            isinstance(d, int) and d > 0 and d != w for d, w in zip(static, want, strict=True)
        ):
            raise AvatarError(
                f"{path}: mouth model {label!r} has shape {dims}, expected (B, {want[0]}, {want[1]})"
            )


def _check_renderer_onnx(path: Path, resolution: int) -> None:
    inputs = _onnx_dims(path, "input")
    outputs = _onnx_dims(path, "output")
    if len(inputs) != 1 or len(outputs) != 1:
        raise AvatarError(f"{path}: renderer needs one input and one output")
    for label, dims in (inputs[0], outputs[0]):
        ok = len(dims) == 4 and all(
            not isinstance(d, int) or d <= 0 or d == w
            for d, w in zip(dims[1:], (3, resolution, resolution), strict=True)
        )
        if not ok:
            raise AvatarError(
                f"{path}: renderer {label!r} has shape {dims}, expected (B, 3, {resolution}, "
                f"{resolution}) for face_resolution {resolution}"
            )


def _load_templates(path: Path, meta: dict[str, int]) -> list[TemplateFrame]:
    from anchor.face.facial_map import TemplateFrame

    fields = _template_fields()
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: np.asarray(z[k]) for k in z.files}
    except (OSError, ValueError) as exc:
        raise AvatarError(f"{path}: cannot read templates ({exc})") from exc
    missing = [f for f in fields if f not in arrays]
    if missing:
        raise AvatarError(f"{path}: missing template array(s) {', '.join(missing)}")
    extra = sorted(set(arrays) - set(fields))
    if extra:
        raise AvatarError(f"{path}: unknown template array(s) {', '.join(extra)}")
    k = meta["frames"]
    size = meta["size"]
    for f in fields:
        a = arrays[f]
        if a.ndim == 0 or a.shape[0] != k:
            raise AvatarError(
                f"{path}: {f} has shape {a.shape}, expected {k} template frames (avatar.toml)"
            )
        want = _TEMPLATE_SHAPES.get(f)
        if f == "edges":
            want = (size, size)
        if want is not None and a.shape[1:] != want:
            raise AvatarError(f"{path}: {f} has shape {a.shape}, expected {(k, *want)}")
        if not np.all(np.isfinite(a.astype(np.float64, copy=False))):
            raise AvatarError(f"{path}: {f} contains NaN or infinite values")
    if arrays["edges"].dtype != np.uint8:
        raise AvatarError(f"{path}: edges must be uint8, got {arrays['edges'].dtype}")
    out: list[TemplateFrame] = []
    for i in range(k):
        kwargs: dict[str, Any] = {}
        for f in fields:
            v = arrays[f][i]
            kwargs[f] = float(v) if v.ndim == 0 else v
        out.append(TemplateFrame(**kwargs))
    return out


def _load_body(
    path: Path, video: Path | None, meta: dict[str, int], resolution: int
) -> BodyTemplate:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise AvatarError(f"{path}: cannot read body template ({exc})") from exc
    for key in ("face_boxes", "blend_mask"):
        if key not in arrays:
            raise AvatarError(f"{path}: missing array {key!r}")
    extra = sorted(set(arrays) - {"face_boxes", "blend_mask", "frames"})
    if extra:
        raise AvatarError(f"{path}: unknown array(s) {', '.join(extra)}")
    boxes, mask = arrays["face_boxes"], arrays["blend_mask"]
    n, h, w = meta["frames"], meta["height"], meta["width"]
    if boxes.shape != (n, 4):
        raise AvatarError(f"{path}: face_boxes has shape {boxes.shape}, expected ({n}, 4)")
    if mask.shape != (resolution, resolution):
        raise AvatarError(
            f"{path}: blend_mask has shape {mask.shape}, expected ({resolution}, {resolution}) "
            "(face_resolution)"
        )
    if not np.all(np.isfinite(boxes)) or not np.all(np.isfinite(mask)):
        raise AvatarError(f"{path}: face_boxes or blend_mask contains NaN or infinite values")
    frames = arrays.get("frames")
    if frames is not None and video is not None:
        raise AvatarError(f"{path}: body frames are in both body.npz and {video.name}; keep one")
    try:
        if frames is not None:
            if frames.shape != (n, h, w, 3) or frames.dtype != np.uint8:
                raise AvatarError(
                    f"{path}: frames have shape {frames.shape} {frames.dtype}, expected "
                    f"({n}, {h}, {w}, 3) uint8"
                )
            return BodyTemplate(boxes, mask, frames)
        if video is None:
            raise AvatarError(f"{path}: no body frames (neither a frames array nor body.mp4)")
        vn, vh, vw = _probe_video(video)
        if (vh, vw) != (h, w) or (vn and vn != n):
            raise AvatarError(
                f"{video}: {vn} frames of {vw}x{vh}, avatar.toml says {n} frames of {w}x{h}"
            )
        return BodyTemplate(
            boxes, mask, loader=lambda: decode_body_video(video, n), n_frames=n, height=h, width=w
        )
    except AvatarError:
        raise
    except AnchorError as exc:
        raise AvatarError(f"{path}: {exc}") from exc


def _probe_video(path: Path) -> tuple[int, int, int]:
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            return int(stream.frames or 0), int(stream.height), int(stream.width)
    except (av.error.FFmpegError, OSError, IndexError) as exc:
        raise AvatarError(f"{path}: cannot read body video ({exc})") from exc


def decode_body_video(path: Path, n_frames: int) -> np.ndarray:
    import av

    out: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                out.append(frame.to_ndarray(format="rgb24"))
    except (av.error.FFmpegError, OSError) as exc:
        raise AvatarError(f"{path}: cannot decode body video ({exc})") from exc
    if len(out) != n_frames:
        raise AvatarError(f"{path}: decoded {len(out)} frames, avatar.toml says {n_frames}")
    return np.stack(out)


# --------------------------------------------------------------------------------------------
# writing


def encode_body_video(frames: np.ndarray, path: Path, fps: int, crf: int = 10) -> None:
    """Near-lossless H.264 4:4:4 (no chroma subsampling, so the face box edges stay crisp)."""
    import av

    n, h, w, _ = frames.shape
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuv444p"
        stream.options = {"crf": str(crf), "preset": "slow"}
        for img in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_avatar(
    out: str | Path,
    *,
    name: str,
    config: AnchorConfig,
    mouth_onnx: str | Path,
    renderer_onnx: str | Path,
    pca: MouthPca | str | Path,
    templates: list[TemplateFrame],
    body: BodyTemplate,
    jaw: JawRegression | str | Path | None = None,
    body_video: bool | None = None,
    body_video_file: str | Path | None = None,
    description: str = "",
    verify: bool = True,
    gestures: GestureSet | None = None,
    mouth_base: dict[str, Any] | None = None,
) -> Path:
    """Write a bundle atomically (temporary directory + rename) and return its path.

    `body_video=None` stores the body frames as body.mp4 when they are large, else in body.npz;
    `body_video_file` copies an already encoded body.mp4 (with `body`'s frame count and size).
    The written bundle is loaded back (`verify`) so a bundle that would not load is never left
    in place.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise AvatarError(f"{out}: exists and is not a directory")
    if not templates:
        raise AvatarError(f"{out}: no template frames to write")
    if len(templates) != body.n_frames:
        raise AvatarError(
            f"{out}: {len(templates)} template frames but {body.n_frames} body frames"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        files: dict[str, str] = {}
        shutil.copyfile(mouth_onnx, tmp / "mouth.onnx")
        files["mouth"] = "mouth.onnx"
        shutil.copyfile(renderer_onnx, tmp / "renderer.onnx")
        files["renderer"] = "renderer.onnx"
        if isinstance(pca, str | Path):
            shutil.copyfile(pca, tmp / "pca.npz")
        else:
            pca.save(tmp / "pca.npz")
        files["pca"] = "pca.npz"
        if jaw is not None:
            if isinstance(jaw, str | Path):
                shutil.copyfile(jaw, tmp / "jaw.npz")
            else:
                jaw.save(tmp / "jaw.npz")
            files["jaw"] = "jaw.npz"

        fields = _template_fields()
        stacked = {
            f: np.stack([np.asarray(getattr(t, f)) for t in templates]) for f in fields
        }
        stacked["edges"] = stacked["edges"].astype(np.uint8)
        np.savez_compressed(tmp / "templates.npz", **stacked)  # type: ignore[arg-type]
        files["templates"] = "templates.npz"

        body_arrays: dict[str, np.ndarray] = {
            "face_boxes": body.face_boxes.astype(np.float32),
            "blend_mask": body.blend_mask.astype(np.float32),
        }
        if body_video_file is not None:
            shutil.copyfile(body_video_file, tmp / "body.mp4")
            files["body_video"] = "body.mp4"
        else:
            frames = body.frames
            if body_video is None:
                body_video = frames.nbytes > BODY_VIDEO_THRESHOLD
            if body_video:
                encode_body_video(frames, tmp / "body.mp4", config.video.fps)
                files["body_video"] = "body.mp4"
            else:
                body_arrays["frames"] = frames
        np.savez_compressed(tmp / "body.npz", **body_arrays)  # type: ignore[arg-type]
        files["body"] = "body.npz"
        if gestures is not None and len(gestures):
            from anchor.compose.motion import gestures_toml

            (tmp / "gestures.toml").write_text(gestures_toml(gestures))
            files["gestures"] = "gestures.toml"

        manifest: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "name": name,
            "description": description,
            "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "fps": config.video.fps,
            "face_resolution": config.renderer.resolution,
            "lookahead_ms": float(config.streaming.lookahead_ms),
            "templates": {
                "frames": len(templates),
                "size": int(stacked["edges"].shape[1]),
            },
            "body": {"frames": body.n_frames, "width": body.width, "height": body.height},
            "files": {
                role: {
                    "path": rel,
                    "sha256": sha256_file(tmp / rel),
                    "bytes": (tmp / rel).stat().st_size,
                }
                for role, rel in files.items()
            },
            "config": to_dict(config),
        }
        if mouth_base is not None:
            manifest["mouth_base"] = dict(mouth_base)
        (tmp / MANIFEST).write_text(toml_writer.dumps(manifest))
        for f in tmp.iterdir():
            f.chmod(0o644)  # some writers use mkstemp (0600); a bundle is shared read-only data
        if verify:
            load_avatar(tmp)
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("wrote avatar bundle %s (%.1f MB)", out, bundle_size(out) / 1e6)
    return out


def set_gestures(path: str | Path, gestures: GestureSet) -> None:
    """Give an existing bundle a new gesture dictionary (no retraining): gestures.toml and the
    manifest entry are written to temporary files and renamed into place, manifest last."""
    from anchor.compose.motion import gestures_toml

    root = Path(path)
    load_avatar(root)  # a broken bundle is refused, not patched
    mpath = root / MANIFEST
    manifest = tomllib.loads(mpath.read_text())
    tmp = root / f".gestures.toml.tmp{os.getpid()}"
    tmp.write_text(gestures_toml(gestures))
    tmp.chmod(0o644)
    os.replace(tmp, root / "gestures.toml")
    g = root / "gestures.toml"
    manifest.setdefault("files", {})["gestures"] = {
        "path": "gestures.toml", "sha256": sha256_file(g), "bytes": g.stat().st_size,
    }
    mtmp = root / f".{MANIFEST}.tmp{os.getpid()}"
    mtmp.write_text(toml_writer.dumps(manifest))
    mtmp.chmod(0o644)
    os.replace(mtmp, mpath)
    load_avatar(root)


def _replace_dir(src: Path, dst: Path) -> None:
    if not dst.exists():
        os.rename(src, dst)
        return
    old = dst.parent / f".{dst.name}.old-{os.getpid()}"
    if old.exists():
        shutil.rmtree(old)
    os.rename(dst, old)
    os.rename(src, dst)
    shutil.rmtree(old, ignore_errors=True)


def bundle_size(path: str | Path) -> int:
    """Total bytes of the files in a bundle directory."""
    return sum(p.stat().st_size for p in Path(path).iterdir() if p.is_file())
