"""Audio-to-mouth networks (Zheng et al. 2021, §3.1) and the baselines of Tables 1-2.

Every generator maps a window of standardised MFCC (B, window_in=200, n_mfcc=13) at 100 Hz to PCA
mouth features (B, window_out=50, pca_dims=10) at 25 fps:

- `MouthTcn`: two stride-2 1-D convolutions (100 Hz -> 50 Hz -> 25 Hz), a non-causal residual TCN
  block (kernel 3, 256 filters, dilations 1, 2, 4, 8, symmetric "same" padding) and two fully
  connected layers applied per frame. Trained adversarially ("adversarial-tcn") or with L2 only
  ("tcn").
- `MouthDiscriminator`: the same down-sampling of the MFCC, concatenated with a mouth sequence,
  then dilated convolutions -> one realness logit per frame (B, 50).
- `DelayedLstm`: unidirectional LSTM over frames (4 MFCC rows stacked per frame); the output for
  frame t is read at step t + delay, so it has heard `delay` frames of future audio.
- `BiLstm`: bidirectional LSTM over the same frame sequence.

`MouthInference` wraps a generator with the MFCC standardisation and the target de-scaling so that
it maps raw MFCC to raw PCA features; it is what eval and the ONNX export run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from anchor.config import AnchorConfig, MouthModelConfig, from_dict
from anchor.errors import MouthError

KINDS = ("adversarial-tcn", "tcn", "lstm", "bilstm")
CHECKPOINT_FORMAT = "anchor-mouth-checkpoint"
CHECKPOINT_VERSION = 1


def _rows_per_frame(cfg: MouthModelConfig) -> int:
    if cfg.window_in % cfg.window_out:
        raise MouthError(
            f"mouth_model.window_in ({cfg.window_in}) must be a multiple of window_out ({cfg.window_out})"
        )
    return cfg.window_in // cfg.window_out


class MfccDownsampler(nn.Module):
    """(B, n_mfcc, window_in) -> (B, channels, window_out): stride-2 convolutions, 100 Hz -> 25 Hz."""

    def __init__(self, n_in: int, channels: int, kernel_size: int, factor: int) -> None:
        super().__init__()
        n_stages = factor.bit_length() - 1
        if 1 << n_stages != factor:
            raise MouthError(f"MFCC rows per frame must be a power of two (got {factor})")
        layers: list[nn.Module] = []
        c_in = n_in
        pad = kernel_size // 2
        for _ in range(n_stages):
            layers += [nn.Conv1d(c_in, channels, kernel_size, stride=2, padding=pad), nn.ReLU()]
            c_in = channels
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ResidualTcnLayer(nn.Module):
    """Two dilated non-causal convolutions with a skip: length-preserving (B, C, T) -> (B, C, T)."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, dropout: float) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise MouthError(f"mouth_model.kernel_size must be odd for symmetric padding (got {kernel_size})")
        pad = dilation * (kernel_size - 1) // 2  # symmetric: each output sees past and future
        self.conv1 = nn.Conv1d(channels, channels, kernel_size, dilation=dilation, padding=pad)
        self.conv2 = nn.Conv1d(channels, channels, kernel_size, dilation=dilation, padding=pad)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.drop(F.relu(self.conv1(x)))
        y = self.drop(F.relu(self.conv2(y)))
        return F.relu(x + y)


class MouthTcn(nn.Module):
    """(B, 200, 13) standardised MFCC -> (B, 50, 10) PCA mouth features."""

    def __init__(self, cfg: MouthModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        factor = _rows_per_frame(cfg)
        self.down = MfccDownsampler(cfg.n_mfcc, cfg.channels, cfg.kernel_size, factor)
        self.tcn = nn.Sequential(
            *[ResidualTcnLayer(cfg.channels, cfg.kernel_size, d, cfg.dropout) for d in cfg.dilations]
        )
        self.fc1 = nn.Linear(cfg.channels, cfg.fc_hidden)
        self.fc2 = nn.Linear(cfg.fc_hidden, cfg.pca_dims)
        self.in_drop = nn.Dropout(cfg.input_dropout)

    def forward(self, mfcc: torch.Tensor) -> torch.Tensor:
        x = self.in_drop(mfcc).transpose(1, 2)  # (B, 13, 200)
        x = self.down(x)  # (B, C, 50)
        x = self.tcn(x)  # (B, C, 50)
        x = x.transpose(1, 2)  # (B, 50, C)
        return self.fc2(F.relu(self.fc1(x)))  # (B, 50, 10)


class MouthDiscriminator(nn.Module):
    """(audio (B, 200, 13), mouth (B, 50, 10)) -> per-frame realness logits (B, 50)."""

    def __init__(self, cfg: MouthModelConfig) -> None:
        super().__init__()
        c = cfg.disc_channels
        self.down = MfccDownsampler(cfg.n_mfcc, c, cfg.kernel_size, _rows_per_frame(cfg))
        self.inp = nn.Conv1d(c + cfg.pca_dims, c, 1)
        self.convs = nn.ModuleList(
            [
                nn.Conv1d(c, c, cfg.kernel_size, dilation=d, padding=d * (cfg.kernel_size - 1) // 2)
                for d in cfg.dilations
            ]
        )
        self.out = nn.Conv1d(c, 1, 1)

    def forward(self, mfcc: torch.Tensor, mouth: torch.Tensor) -> torch.Tensor:
        a = self.down(mfcc.transpose(1, 2))  # (B, Cd, 50)
        x = torch.cat([a, mouth.transpose(1, 2)], dim=1)  # (B, Cd + 10, 50)
        x = F.leaky_relu(self.inp(x), 0.2)
        for conv in self.convs:
            x = x + F.leaky_relu(conv(x), 0.2)
        return self.out(x).squeeze(1)  # (B, 50)


def _stack_frames(mfcc: torch.Tensor, cfg: MouthModelConfig) -> torch.Tensor:
    """(B, 200, 13) -> (B, 50, 4*13): the MFCC rows of each video frame side by side."""
    r = _rows_per_frame(cfg)
    return mfcc.reshape(mfcc.shape[0], cfg.window_out, r * cfg.n_mfcc)


class DelayedLstm(nn.Module):
    """Unidirectional LSTM; frame t's output is read at step t + delay (it hears `delay` frames ahead)."""

    def __init__(self, cfg: MouthModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.delay = cfg.lstm_delay_frames
        n_in = _rows_per_frame(cfg) * cfg.n_mfcc
        self.lstm = nn.LSTM(
            n_in, cfg.lstm_hidden, num_layers=cfg.lstm_layers, batch_first=True,
            dropout=cfg.dropout if cfg.lstm_layers > 1 else 0.0,
        )
        self.fc = nn.Linear(cfg.lstm_hidden, cfg.pca_dims)
        self.in_drop = nn.Dropout(cfg.input_dropout)

    def forward(self, mfcc: torch.Tensor) -> torch.Tensor:
        x = _stack_frames(self.in_drop(mfcc), self.cfg)  # (B, 50, 52)
        # Zero (= train-mean MFCC) steps after the window let the last frames be read `delay` later.
        x = F.pad(x, (0, 0, 0, self.delay))  # (B, 50 + delay, 52)
        h, _ = self.lstm(x)  # (B, 50 + delay, H)
        h = h[:, self.delay : self.delay + self.cfg.window_out]  # (B, 50, H)
        return self.fc(h)  # (B, 50, 10)


class BiLstm(nn.Module):
    """Bidirectional LSTM over frames: (B, 200, 13) -> (B, 50, 10)."""

    def __init__(self, cfg: MouthModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        n_in = _rows_per_frame(cfg) * cfg.n_mfcc
        self.lstm = nn.LSTM(
            n_in, cfg.lstm_hidden, num_layers=cfg.lstm_layers, batch_first=True,
            bidirectional=True, dropout=cfg.dropout if cfg.lstm_layers > 1 else 0.0,
        )
        self.fc = nn.Linear(2 * cfg.lstm_hidden, cfg.pca_dims)
        self.in_drop = nn.Dropout(cfg.input_dropout)

    def forward(self, mfcc: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(_stack_frames(self.in_drop(mfcc), self.cfg))  # (B, 50, 2H)
        return self.fc(h)  # (B, 50, 10)


def build_generator(cfg: MouthModelConfig) -> nn.Module:
    """The generator for `cfg.kind` (adversarial-tcn and tcn share the architecture)."""
    if cfg.kind in ("adversarial-tcn", "tcn"):
        return MouthTcn(cfg)
    if cfg.kind == "lstm":
        return DelayedLstm(cfg)
    if cfg.kind == "bilstm":
        return BiLstm(cfg)
    raise MouthError(f"unknown mouth model kind {cfg.kind!r} (choose from {', '.join(KINDS)})")


class MouthInference(nn.Module):
    """Raw MFCC (B, 200, 13) -> raw PCA mouth (B, 50, 10): standardisation and de-scaling built in."""

    mfcc_mean: torch.Tensor  # (1, 1, 13) buffers
    mfcc_std: torch.Tensor
    target_scale: torch.Tensor  # (1, 1, 10)

    def __init__(
        self,
        generator: nn.Module,
        mfcc_mean: torch.Tensor,
        mfcc_std: torch.Tensor,
        target_scale: torch.Tensor,
        window_cmn: bool = False,
    ) -> None:
        super().__init__()
        self.generator = generator
        self.window_cmn = window_cmn
        self.register_buffer("mfcc_mean", mfcc_mean.detach().float().reshape(1, 1, -1).clone())
        self.register_buffer("mfcc_std", mfcc_std.detach().float().reshape(1, 1, -1).clone())
        self.register_buffer("target_scale", target_scale.detach().float().reshape(1, 1, -1).clone())

    def forward(self, mfcc: torch.Tensor) -> torch.Tensor:
        if self.window_cmn:  # each window's own mean off: the voice's and channel's spectral tilt
            mfcc = mfcc - mfcc.mean(dim=1, keepdim=True)
        x = (mfcc - self.mfcc_mean) / self.mfcc_std
        return self.generator(x) * self.target_scale


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a mouth checkpoint written by `anchor train mouth`, checking its format."""
    p = Path(path)
    if not p.is_file():
        raise MouthError(f"{p}: mouth checkpoint does not exist")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt file
        raise MouthError(f"{p}: cannot read mouth checkpoint ({exc})") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise MouthError(f"{p}: not a mouth checkpoint (format {ckpt.get('format') if isinstance(ckpt, dict) else type(ckpt)})")
    if int(ckpt.get("version", -1)) > CHECKPOINT_VERSION:
        raise MouthError(f"{p}: checkpoint version {ckpt.get('version')} is newer than this anchor")
    return dict(ckpt)


def checkpoint_config(ckpt: dict[str, Any]) -> AnchorConfig:
    return from_dict(AnchorConfig, ckpt["config"])


def inference_from_checkpoint(path: str | Path) -> tuple[MouthInference, AnchorConfig, dict[str, Any]]:
    """(raw-MFCC -> raw-PCA module in eval mode, the resolved config, the checkpoint dict)."""
    ckpt = load_checkpoint(path)
    cfg = checkpoint_config(ckpt)
    gen = build_generator(cfg.mouth_model)
    try:
        gen.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise MouthError(f"{path}: weights do not fit mouth_model config ({exc})") from exc
    norm = ckpt["norm"]
    module = MouthInference(gen, norm["mfcc_mean"], norm["mfcc_std"], norm["target_scale"],
                            window_cmn=cfg.mouth_model.window_cmn)
    module.eval()
    return module, cfg, ckpt
