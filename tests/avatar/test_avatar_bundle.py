"""Avatar bundles: a good bundle loads; every kind of bad bundle is refused with a message that
names the file and the problem."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from tiny_bundle import make_tiny_bundle

from anchor.avatar.bundle import (
    MANIFEST,
    VERSION,
    default_avatar_path,
    load_avatar,
    sha256_file,
)
from anchor.errors import AvatarError


@pytest.fixture(scope="module")
def good_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny")


@pytest.fixture()
def bundle(good_bundle: Path, tmp_path: Path) -> Path:
    """A private copy each test may break."""
    return Path(shutil.copytree(good_bundle, tmp_path / "tiny"))


def _edit_manifest(bundle: Path, old: str, new: str) -> None:
    path = bundle / MANIFEST
    text = path.read_text()
    assert old in text, f"{old!r} not in manifest"
    path.write_text(text.replace(old, new, 1))


def _rewrite_npz(bundle: Path, name: str, role: str, **changes: np.ndarray) -> None:
    """Replace arrays inside an npz and fix its checksum, so only the shape check can fail."""
    path = bundle / name
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(changes)
    np.savez(path, **arrays)  # type: ignore[arg-type]
    text = (bundle / MANIFEST).read_text()
    text = re.sub(
        rf'(\[files\.{role}\]\npath = "{re.escape(name)}"\nsha256 = ")[0-9a-f]+("\nbytes = )\d+',
        rf"\g<1>{sha256_file(path)}\g<2>{path.stat().st_size}",
        text,
    )
    (bundle / MANIFEST).write_text(text)


def test_good_bundle_loads_with_all_fields(good_bundle: Path) -> None:
    b = load_avatar(good_bundle)
    assert b.name == "tiny"
    assert b.fps == 25 and b.face_resolution == 32
    assert b.lookahead_ms == b.config.streaming.lookahead_ms
    assert b.mouth_onnx.name == "mouth.onnx" and b.renderer_onnx.name == "renderer.onnx"
    assert b.pca.components.shape == (10, 40)
    assert b.jaw is not None
    assert len(b.templates) == 6 and b.templates[0].edges.shape == (64, 64)
    assert b.body.frames.shape == (6, 80, 96, 3)
    assert b.body.face_boxes.shape == (6, 4)
    assert b.body.blend_mask.shape == (32, 32)


def test_body_video_decodes_lazily_to_the_same_size(tmp_path: Path) -> None:
    path = make_tiny_bundle(tmp_path / "v", body_video=True)
    assert (path / "body.mp4").is_file()
    b = load_avatar(path)
    assert not b.body.loaded
    frames = b.body.frames
    assert frames.shape == (6, 80, 96, 3) and frames.dtype == np.uint8
    # near-lossless: the flat background colour survives the codec
    assert abs(int(frames[0, 2, 2, 1]) - 120) <= 3


def test_rewrite_replaces_an_existing_bundle_atomically(tmp_path: Path) -> None:
    path = make_tiny_bundle(tmp_path / "b", name="first")
    make_tiny_bundle(tmp_path / "b", name="second")
    assert load_avatar(path).name == "second"
    assert [p.name for p in tmp_path.iterdir()] == ["b"]  # no temp or old dirs left


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(AvatarError, match="does not exist"):
        load_avatar(tmp_path / "nope")


def test_missing_manifest(bundle: Path) -> None:
    (bundle / MANIFEST).unlink()
    with pytest.raises(AvatarError, match="no avatar.toml"):
        load_avatar(bundle)


def test_missing_file_is_named(bundle: Path) -> None:
    (bundle / "renderer.onnx").unlink()
    with pytest.raises(AvatarError, match=r"renderer\.onnx: missing"):
        load_avatar(bundle)


def test_checksum_mismatch_is_named(bundle: Path) -> None:
    data = bytearray((bundle / "templates.npz").read_bytes())
    data[-30] ^= 0xFF  # same size, different content
    (bundle / "templates.npz").write_bytes(bytes(data))
    with pytest.raises(AvatarError, match=r"templates\.npz: checksum mismatch"):
        load_avatar(bundle)


def test_truncated_file_is_named(bundle: Path) -> None:
    data = (bundle / "pca.npz").read_bytes()
    (bundle / "pca.npz").write_bytes(data[:-10])
    with pytest.raises(AvatarError, match=r"pca\.npz: size .* truncated"):
        load_avatar(bundle)


def test_version_too_new(bundle: Path) -> None:
    _edit_manifest(bundle, f"version = {VERSION}", f"version = {VERSION + 1}")
    with pytest.raises(AvatarError, match=rf"format version {VERSION + 1} is newer"):
        load_avatar(bundle)


def test_malformed_toml(bundle: Path) -> None:
    _edit_manifest(bundle, 'name = "tiny"', 'name = "tiny')
    with pytest.raises(AvatarError, match=r"avatar\.toml: not valid TOML"):
        load_avatar(bundle)


def test_unknown_field(bundle: Path) -> None:
    _edit_manifest(bundle, 'name = "tiny"', 'name = "tiny"\ncolour = "blue"')
    with pytest.raises(AvatarError, match="unknown field.*colour"):
        load_avatar(bundle)


def test_unknown_config_field(bundle: Path) -> None:
    _edit_manifest(bundle, "[config.video]\nfps = 25", "[config.video]\nfps = 25\nspeed = 2")
    with pytest.raises(AvatarError, match=r"\[config\].*unknown VideoConfig field.*speed"):
        load_avatar(bundle)


def test_missing_field(bundle: Path) -> None:
    _edit_manifest(bundle, "face_resolution = 32\n", "")
    with pytest.raises(AvatarError, match="missing field 'face_resolution'"):
        load_avatar(bundle)


def test_wrong_type(bundle: Path) -> None:
    _edit_manifest(bundle, "fps = 25\nface", 'fps = "fast"\nface')
    with pytest.raises(AvatarError, match="field 'fps' must be int"):
        load_avatar(bundle)


def test_resolution_disagrees_with_config(bundle: Path) -> None:
    _edit_manifest(bundle, "face_resolution = 32", "face_resolution = 64")
    with pytest.raises(AvatarError, match="face_resolution 64 disagrees with config renderer.resolution 32"):
        load_avatar(bundle)


def test_template_shapes_disagree(bundle: Path) -> None:
    with np.load(bundle / "templates.npz") as z:
        lm = z["crop_landmarks"]
    _rewrite_npz(bundle, "templates.npz", "templates", crop_landmarks=lm[:, :60])
    with pytest.raises(AvatarError, match=r"templates\.npz: crop_landmarks has shape \(6, 60, 2\), expected \(6, 68, 2\)"):
        load_avatar(bundle)


def test_body_and_template_counts_disagree(bundle: Path) -> None:
    with np.load(bundle / "body.npz") as z:
        boxes = z["face_boxes"]
    _rewrite_npz(bundle, "body.npz", "body", face_boxes=boxes[:5])
    with pytest.raises(AvatarError, match=r"body\.npz: face_boxes has shape \(5, 4\), expected \(6, 4\)"):
        load_avatar(bundle)


def test_blend_mask_must_match_face_resolution(bundle: Path) -> None:
    _rewrite_npz(bundle, "body.npz", "body", blend_mask=np.ones((16, 16), np.float32))
    with pytest.raises(AvatarError, match=r"blend_mask has shape \(16, 16\), expected \(32, 32\)"):
        load_avatar(bundle)


def test_renderer_resolution_must_match(bundle: Path, tmp_path: Path) -> None:
    from tiny_bundle import identity_renderer_onnx

    identity_renderer_onnx(bundle / "renderer.onnx", 48)
    text = (bundle / MANIFEST).read_text()
    path = bundle / "renderer.onnx"
    text = re.sub(
        r'(\[files\.renderer\]\npath = "renderer.onnx"\nsha256 = ")[0-9a-f]+("\nbytes = )\d+',
        rf"\g<1>{sha256_file(path)}\g<2>{path.stat().st_size}",
        text,
    )
    (bundle / MANIFEST).write_text(text)
    with pytest.raises(AvatarError, match=r"renderer\.onnx: renderer 'map' has shape .*48.* expected \(B, 3, 32, 32\)"):
        load_avatar(bundle)


def test_path_outside_bundle_refused(bundle: Path) -> None:
    _edit_manifest(bundle, 'path = "pca.npz"', 'path = "../pca.npz"')
    with pytest.raises(AvatarError, match="must be a plain file name"):
        load_avatar(bundle)


def test_shipped_default_avatar_validates() -> None:
    path = default_avatar_path()
    if not (path / MANIFEST).is_file():
        pytest.skip(f"no default avatar built at {path} yet")
    b = load_avatar(path)
    assert b.name
    assert len(b.templates) == b.body.n_frames
    frame = b.body.frame(0)
    assert frame.shape == (b.body.height, b.body.width, 3)


def test_gestures_are_added_to_a_bundle_and_a_broken_dictionary_is_named(tmp_path: Path) -> None:
    from anchor.avatar.bundle import set_gestures
    from anchor.compose.motion import Gesture, GestureSet, drawn_gesture

    path = make_tiny_bundle(tmp_path / "g")
    assert load_avatar(path).gestures is None
    nod = Gesture("nod", ("yes",), drawn_gesture("nod", 1.0, 25), probability=0.5)
    set_gestures(path, GestureSet.of([nod]))
    loaded = load_avatar(path).gestures
    assert loaded is not None and loaded.gestures[0].name == "nod"
    assert loaded.match(["oh", "yes"]) is not None
    assert not list(path.glob(".*tmp*"))
    # a hand-edited dictionary that breaks the rules is refused with the file and the reason
    g = path / "gestures.toml"
    g.write_text(g.read_text().replace("probability = 0.5", "probability = 5.0"))
    manifest = path / MANIFEST
    text = re.sub(r'(\[files\.gestures\][^\[]*sha256 = ")[0-9a-f]+', lambda m: m.group(1)
                  + sha256_file(g), manifest.read_text())
    text = re.sub(r'(\[files\.gestures\][^\[]*bytes = )\d+', lambda m: m.group(1)
                  + str(g.stat().st_size), text)
    manifest.write_text(text)
    with pytest.raises(AvatarError, match=r"gestures\.toml: gesture 1 \(nod\): probability"):
        load_avatar(path)
