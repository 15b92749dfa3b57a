"""`anchor render` end to end on a real (tiny) bundle, and loading a bundle into the pipeline."""

from __future__ import annotations

from pathlib import Path

import av
import pytest

from anchor.avatar.bundle import AvatarBundle
from anchor.cli import main
from anchor.config import AnchorConfig, StreamingConfig, apply_overrides
from anchor.pipeline.models import load_models, merge_streaming


def test_render_command_writes_an_mp4(tiny_bundle: AvatarBundle, speech_wav: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "anchor.mp4"
    code = main(["render", str(speech_wav), "--avatar", str(tiny_bundle.path), "-o", str(out),
                 "--no-progress"])
    assert code == 0
    assert "wrote" in capsys.readouterr().out
    with av.open(str(out)) as c:
        assert {s.type for s in c.streams} == {"video", "audio"}
        assert c.streams.video[0].frames == 100


def test_render_command_fails_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["render", str(tmp_path / "missing.wav"), "--avatar", str(tmp_path / "nope"),
                 "-o", str(tmp_path / "x.mp4")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("anchor: error:") and "\n" not in err
    assert not (tmp_path / "x.mp4").exists()


def test_load_models_from_a_bundle(tiny_bundle: AvatarBundle) -> None:
    cfg = apply_overrides(AnchorConfig(), ["streaming.right_context_frames=5"])
    models = load_models(tiny_bundle.path, cfg, hop_frames=3)
    try:
        assert models.streaming.right_context_frames == 5  # the user's change wins
        assert models.streaming.hop_frames == 3  # the serving hop
        assert models.lookahead_ms == 200.0
        w, h = models.engine.frame_size
        x0, y0, x1, y1 = models.info["mouth_box"]
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
    finally:
        models.engine.close()


def test_merge_streaming_keeps_the_bundles_unless_changed() -> None:
    bundle = StreamingConfig(hop_frames=30, right_context_frames=8)
    assert merge_streaming(bundle, StreamingConfig()) == bundle
    merged = merge_streaming(bundle, StreamingConfig(right_context_frames=4))
    assert merged.right_context_frames == 4 and merged.hop_frames == 30
