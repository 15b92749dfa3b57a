from __future__ import annotations

from pathlib import Path

import pytest

from anchor.config import (
    AnchorConfig,
    StreamingConfig,
    apply_overrides,
    from_dict,
    load_config,
    to_dict,
)
from anchor.errors import ConfigError


def test_round_trip_through_dict() -> None:
    cfg = AnchorConfig()
    assert from_dict(AnchorConfig, to_dict(cfg)) == cfg


def test_overrides_coerce_types() -> None:
    cfg = apply_overrides(
        AnchorConfig(),
        ["streaming.hop_frames=5", "mouth_model.dilations=1,2", "renderer_train.amp=false"],
    )
    assert cfg.streaming.hop_frames == 5
    assert cfg.mouth_model.dilations == (1, 2)
    assert cfg.renderer_train.amp is False


@pytest.mark.parametrize(
    "override, words",
    [
        ("nosuch.field=1", "no config section"),
        ("streaming.nosuch=1", "has no field"),
        ("streaming.hop_frames=abc", "cannot read"),
        ("hop_frames=3", "section.field=value"),
    ],
)
def test_bad_overrides_say_what_is_wrong(override: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        apply_overrides(AnchorConfig(), [override])


def test_toml_file(tmp_path: Path) -> None:
    p = tmp_path / "a.toml"
    p.write_text("[server]\nport = 9000\n[streaming]\nright_context_frames = 5\n")
    cfg = load_config(p, ["server.host=0.0.0.0"])
    assert (cfg.server.port, cfg.server.host, cfg.streaming.right_context_frames) == (9000, "0.0.0.0", 5)
    p.write_text("[nope]\nx = 1\n")
    with pytest.raises(ConfigError, match="unknown section"):
        load_config(p)


def test_streaming_lookahead_math() -> None:
    paper = StreamingConfig(window_out=50, hop_frames=30, right_context_frames=10, fps=25)
    assert paper.keep_start == 10
    assert paper.lookahead_ms == 400.0
    live = StreamingConfig(hop_frames=1, right_context_frames=5)
    assert live.keep_start == 44
    assert live.lookahead_ms == 200.0
    with pytest.raises(ConfigError):
        StreamingConfig(hop_frames=45, right_context_frames=10).validate()


def test_string_options_are_checked_when_the_config_loads() -> None:
    from anchor.config import load_config

    assert load_config(None, ["compose.idle_mode=crossfade"]).compose.idle_mode == "crossfade"
    for override, match in (("compose.idle_mode=bounce", "pingpong, crossfade"),
                            ("tts.engine=say", "auto, festival, espeak-ng"),
                            ("backend.name=cuda", "onnxruntime"),
                            ("motion.head=sometimes", "auto, on, off"),
                            ("server.video_codec=AV1", "VP8, H264")):
        with pytest.raises(ConfigError, match=match):
            load_config(None, [override])


def test_each_section_validates_itself_at_load(tmp_path: Path) -> None:
    from anchor.config import load_config

    for override, match in (("server.port=70000", "server.port"),
                            ("tts.rate=9", "tts.rate"),
                            ("broadcast.max_viewers=0", "max_viewers"),
                            ("motion.nod_probability=2", "nod_probability"),
                            ("motion.mode_phrase_s=3,1", "mode_phrase_s"),
                            ("streaming.hop_frames=0", "hop_frames"),
                            ("face.av_offset=sometimes", "av_offset"),
                            ("face.av_offset=5000", "av_offset_max_ms")):
        with pytest.raises(ConfigError, match=match):
            load_config(None, [override])
    cfg = tmp_path / "c.toml"
    cfg.write_text("[server]\nlatency_margin_ms = -5\n")
    with pytest.raises(ConfigError, match="latency_margin_ms"):
        load_config(cfg)
    assert load_config(None, ["server.latency_margin_ms=none"]).server.latency_margin_ms is None
    assert load_config(None, ["server.latency_margin_ms=60"]).server.latency_margin_ms == 60
