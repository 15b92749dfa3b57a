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
