"""Mouth networks: shapes of the paper's model and baselines, (non-)causality, baked normalisation."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("torch")
import torch  # noqa: E402

from anchor.config import MouthModelConfig  # noqa: E402
from anchor.errors import MouthError  # noqa: E402
from anchor.mouth.models import (  # noqa: E402
    KINDS,
    BiLstm,
    DelayedLstm,
    MouthDiscriminator,
    MouthInference,
    MouthTcn,
    build_generator,
    load_checkpoint,
)

TINY: dict[str, Any] = dict(channels=16, fc_hidden=16, lstm_hidden=8, lstm_layers=1, disc_channels=8, dropout=0.0)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)


@pytest.mark.parametrize("kind", KINDS)
def test_generators_map_200x13_to_50x10(kind: str) -> None:
    net = build_generator(MouthModelConfig(kind=kind, **TINY)).eval()
    out = net(torch.randn(3, 200, 13))
    assert out.shape == (3, 50, 10)


def test_paper_tcn_shape_and_kinds() -> None:
    cfg = MouthModelConfig()
    net = MouthTcn(cfg)
    # 256 filters, kernel 3, dilations 1,2,4,8: 4 residual layers of 2 convs each.
    convs = [m for m in net.tcn.modules() if isinstance(m, torch.nn.Conv1d)]
    assert [c.dilation[0] for c in convs] == [1, 1, 2, 2, 4, 4, 8, 8]
    assert all(c.out_channels == 256 and c.kernel_size == (3,) for c in convs)
    # Two stride-2 convolutions take 200 MFCC rows (100 Hz) to 50 frames (25 Hz).
    assert [c.stride[0] for c in net.down.modules() if isinstance(c, torch.nn.Conv1d)] == [2, 2]
    assert isinstance(build_generator(MouthModelConfig(kind="tcn")), MouthTcn)
    assert isinstance(build_generator(MouthModelConfig(kind="lstm")), DelayedLstm)
    assert isinstance(build_generator(MouthModelConfig(kind="bilstm")), BiLstm)
    with pytest.raises(MouthError, match="unknown mouth model kind"):
        build_generator(MouthModelConfig(kind="gru"))


def test_discriminator_scores_every_frame() -> None:
    d = MouthDiscriminator(MouthModelConfig(**TINY))
    assert d(torch.randn(4, 200, 13), torch.randn(4, 50, 10)).shape == (4, 50)


def _influence(net: torch.nn.Module, frame_changed: int) -> torch.Tensor:
    """Per output frame: does changing the audio of video frame `frame_changed` change it?"""
    x = torch.randn(1, 200, 13)
    y = x.clone()
    y[:, 4 * frame_changed : 4 * frame_changed + 4] += 5.0
    with torch.no_grad():
        return (net(x) - net(y)).abs().sum(-1)[0] > 1e-6


def test_tcn_is_non_causal() -> None:
    net = MouthTcn(MouthModelConfig(**TINY)).eval()
    changed = _influence(net, 30)
    assert changed[20] and changed[29], "past frames must hear future audio"
    assert changed[40]


def test_delayed_lstm_hears_exactly_delay_frames_ahead() -> None:
    cfg = MouthModelConfig(kind="lstm", lstm_delay_frames=5, **TINY)
    net = DelayedLstm(cfg).eval()
    changed = _influence(net, 30)
    assert not changed[:25].any(), "frame t must not depend on audio beyond t + delay"
    assert changed[25:35].all()


def test_bilstm_hears_both_directions() -> None:
    net = BiLstm(MouthModelConfig(kind="bilstm", **TINY)).eval()
    changed = _influence(net, 30)
    assert changed[25] and changed[35], "earlier frames hear later audio through the backward LSTM"


def test_inference_wrapper_bakes_normalisation() -> None:
    gen = MouthTcn(MouthModelConfig(**TINY)).eval()
    mean, std, scale = torch.randn(13), torch.rand(13) + 0.5, torch.rand(10) + 0.1
    wrapped = MouthInference(gen, mean, std, scale).eval()
    x = torch.randn(2, 200, 13) * 3
    with torch.no_grad():
        torch.testing.assert_close(wrapped(x), gen((x - mean) / std) * scale)


def test_window_cmn_ignores_a_steady_gain_or_microphone_tilt() -> None:
    """A louder voice or another microphone adds a constant to the MFCC of a window: with
    window_cmn the mouth does not change; without, it does."""
    gen = MouthTcn(MouthModelConfig(**TINY)).eval()
    mean, std, scale = torch.zeros(13), torch.ones(13), torch.ones(10)
    x = torch.randn(2, 200, 13) * 3
    tilt = torch.linspace(4.0, -2.0, 13)  # per coefficient, the same in every row
    with torch.no_grad():
        cmn = MouthInference(gen, mean, std, scale, window_cmn=True).eval()
        torch.testing.assert_close(cmn(x + tilt), cmn(x), atol=1e-4, rtol=1e-4)
        plain = MouthInference(gen, mean, std, scale).eval()
        assert not torch.allclose(plain(x + tilt), plain(x), atol=1e-3)


def test_missing_checkpoint_is_a_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(MouthError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    torch.save({"x": 1}, bad)
    with pytest.raises(MouthError, match="not a mouth checkpoint"):
        load_checkpoint(bad)
