"""Frozen configuration dataclasses, one per concern, nested in `AnchorConfig`.

Configs are passed explicitly (no global option object) and the resolved config is saved inside
every checkpoint, bundle and benchmark result via `to_dict`. `load_config` reads TOML and applies
`section.field=value` overrides from the command line.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from anchor.errors import ConfigError

T = TypeVar("T")


BackendName = Literal["onnxruntime", "torch", "torch-cuda", "tensorrt"]


@dataclass(frozen=True)
class AudioConfig:
    """Audio front end: everything downstream sees 16 kHz mono float32 and 100 Hz MFCC."""

    sample_rate: int = 16000
    n_mfcc: int = 13
    n_mels: int = 40
    win_ms: float = 25.0  # analysis window
    hop_ms: float = 10.0  # 100 Hz feature rate
    fmin: float = 0.0
    fmax: float = 8000.0
    log_floor: float = 1e-10  # power floor before log10 (same as librosa's amin)
    vad_aggressiveness: int = 2  # webrtcvad mode 0..3
    vad_frame_ms: int = 20  # webrtcvad accepts 10, 20 or 30 ms
    vad_hangover_ms: int = 300  # keep "speech" this long after the last voiced frame
    vad_min_dbfs: float = -50.0  # frames quieter than this (RMS) are never speech: mic hiss

    @property
    def win_samples(self) -> int:
        return round(self.sample_rate * self.win_ms / 1000)

    @property
    def hop_samples(self) -> int:
        return round(self.sample_rate * self.hop_ms / 1000)

    @property
    def feature_rate(self) -> float:
        return 1000.0 / self.hop_ms


@dataclass(frozen=True)
class VideoConfig:
    fps: int = 25

    @property
    def mfcc_per_frame(self) -> int:
        """MFCC frames per video frame (100 Hz / 25 fps = 4)."""
        return round(100 / self.fps)


@dataclass(frozen=True)
class FaceConfig:
    """Landmarks, face crops and edges as stored by `anchor prepare`."""

    crop_size: int = 256  # stored face crops / edges are crop_size x crop_size
    crop_scale: float = 1.9  # square crop side = crop_scale * landmark extent
    crop_smoothing: float = 0.8  # EMA factor for the per-frame box (0 = none) so crops do not jitter
    redetect_every: int = 25  # run the (slow) HOG detector every N frames, track in between
    upsample: int = 0  # dlib detector upsampling; 1 helps with small faces
    canny_low: int = 50
    canny_high: int = 150
    pca_dims: int = 10
    per_clip_centering: bool = True  # remove each clip's mean mouth before PCA (speaker identity)
    # A/V offset of each clip (anchor/train/av_offset.py): "auto" shifts the audio when the
    # estimate is confident and more than one frame; "off" never; a number is a fixed shift in
    # ms (positive: the audio is late). Estimated and recorded in the manifest in every mode.
    av_offset: str = "auto"
    av_offset_max_ms: float = 1000.0  # offsets searched: +- this
    av_offset_min_correlation: float = 0.2  # confident: held-out lips/speech correlation at least
    av_offset_min_margin: float = 0.1  # ... and above other offsets (>= 3 frames away) and chance by

    def validate(self) -> None:
        mode = self.av_offset.strip().lower()
        if mode not in ("auto", "off"):
            try:
                ms = float(mode)
            except ValueError:
                raise ConfigError(f"face.av_offset {self.av_offset!r}: auto, off or a shift in "
                                  "ms") from None
            if abs(ms) > self.av_offset_max_ms:
                raise ConfigError(f"face.av_offset {ms:g} ms is beyond face.av_offset_max_ms")
        if self.av_offset_max_ms <= 0:
            raise ConfigError("face.av_offset_max_ms must be > 0")


@dataclass(frozen=True)
class MouthModelConfig:
    """Audio-to-mouth networks (paper §3.1): 200x13 MFCC in, 50x10 PCA mouth out."""

    kind: Literal["adversarial-tcn", "tcn", "lstm", "bilstm"] = "adversarial-tcn"
    n_mfcc: int = 13
    pca_dims: int = 10
    window_in: int = 200  # MFCC frames (2 s at 100 Hz)
    window_out: int = 50  # video frames (2 s at 25 fps)
    channels: int = 256
    kernel_size: int = 3
    dilations: tuple[int, ...] = (1, 2, 4, 8)
    fc_hidden: int = 256
    dropout: float = 0.3
    input_dropout: float = 0.1  # dropout on the standardised MFCC (training only)
    lstm_hidden: int = 256
    lstm_layers: int = 2
    lstm_delay_frames: int = 5  # time-delayed LSTM: output for frame t emitted at t + delay
    disc_channels: int = 128
    # Subtract each input window's own MFCC mean (cepstral mean normalisation per 2 s window):
    # removes a voice's and a microphone's spectral tilt; stateless, so live = offline.
    window_cmn: bool = False


@dataclass(frozen=True)
class MouthTrainConfig:
    seed: int = 0
    epochs: int = 16  # an upper bound: `patience` usually stops earlier
    batch_size: int = 32
    lr: float = 3e-4
    disc_lr: float = 2e-4
    weight_decay: float = 1e-2  # AdamW (decoupled)
    gan_weight: float = 1.0
    l2_weight: float = 100.0
    interframe_weight: float = 1.0
    window_stride: int = 5  # video frames between training windows
    val_fraction: float = 0.15  # the last 15% of every clip is held out
    checkpoint_every: int = 5  # epochs
    threads: int = 2
    # divide PCA targets by their RMS: none | global | per-dim
    target_scaling: Literal["none", "global", "per-dim"] = "global"
    patience: int = 4  # stop after this many epochs without a better held-out MSE (0: never)
    # Fine-tuning a generic model on one person (`--base`): a smaller step, fewer epochs, so the
    # many-speaker knowledge is adapted rather than overwritten.
    finetune_lr: float = 1e-4
    # "equalised": every clip's targets are rescaled to the same RMS for training, so speakers
    # who articulate less (or are filmed smaller, at 3/4 view) do not teach a smaller mouth.
    clip_amplitude: Literal["raw", "equalised"] = "raw"
    # Scale the outputs so the predicted inner-lip gap spreads as much as the real one on the
    # train split (an L2 model under-articulates); stored as the checkpoint's amplitude_gain.
    calibrate_amplitude: bool = True
    # Which held-out figure picks the kept epoch (and drives `patience`).
    select_by: Literal["mse", "lip_corr"] = "mse"
    finetune_epochs: int = 8
    # MFCC augmentation of training windows (standardised units; all 0 = off):
    aug_noise: float = 0.3  # std of Gaussian noise added to every coefficient
    aug_gain: float = 0.5  # std of a per-window offset added to c0 (log-energy = gain)
    aug_time_masks: int = 2  # SpecAugment-style: number of time spans zeroed per window
    aug_time_mask_rows: int = 20  # max length of each span, MFCC rows
    aug_coef_masks: int = 1  # number of coefficient bands zeroed per window
    aug_coef_mask_width: int = 3  # max width of each band, coefficients


@dataclass(frozen=True)
class StreamingConfig:
    """Sliding non-causal windows over the live MFCC stream (paper: trim 10 out / 40 in per end).

    A window yields `window_out` frames; of those, `hop_frames` are kept, and
    `right_context_frames` future frames after the last kept one are discarded. The audio a kept
    frame waits for beyond itself is the lookahead.
    """

    window_out: int = 50
    hop_frames: int = 30
    right_context_frames: int = 10
    fps: int = 25

    @property
    def keep_start(self) -> int:
        return self.window_out - self.right_context_frames - self.hop_frames

    @property
    def lookahead_ms(self) -> float:
        return self.right_context_frames * 1000.0 / self.fps

    @property
    def hop_ms(self) -> float:
        return self.hop_frames * 1000.0 / self.fps

    def validate(self) -> None:
        if self.hop_frames < 1:
            raise ConfigError("streaming.hop_frames must be >= 1")
        if self.right_context_frames < 0:
            raise ConfigError("streaming.right_context_frames must be >= 0")
        if self.keep_start < 0:
            raise ConfigError(
                f"streaming: hop_frames ({self.hop_frames}) + right_context_frames "
                f"({self.right_context_frames}) exceed window_out ({self.window_out})"
            )


@dataclass(frozen=True)
class RendererConfig:
    """pix2pixHD generator and discriminator shape."""

    preset: str = "cpu-small"
    resolution: int = 128
    input_nc: int = 3  # facial map channels
    output_nc: int = 3
    ngf: int = 16
    n_downsample: int = 3
    n_blocks: int = 3
    local_enhancer: bool = False
    ndf: int = 16
    n_layers_d: int = 3
    num_d: int = 3
    mouth_discriminator: bool = True


@dataclass(frozen=True)
class RendererTrainConfig:
    seed: int = 0
    epochs: int = 30
    batch_size: int = 4
    lr: float = 2e-4
    beta1: float = 0.5
    feat_weight: float = 10.0
    l1_weight: float = 10.0
    mouth_weight: float = 1.0
    val_fraction: float = 0.1
    amp: bool = True  # only takes effect on CUDA
    threads: int = 2
    max_frames: int = 0  # 0 = all frames of the dataset
    shift_fraction: float = 0.03  # augmentation: joint random shift of map + target, x resolution


@dataclass(frozen=True)
class BackendConfig:
    """Which renderer backend serves frames, and how."""

    name: BackendName = "onnxruntime"
    threads: int = 2
    max_batch: int = 4
    fallback: BackendName = "onnxruntime"  # used when the configured backend cannot start
    engines_dir: str = "engines"


@dataclass(frozen=True)
class ComposeConfig:
    feather_px: int = 12
    color_match: bool = True
    chroma_key: Literal["none", "green", "blue"] = "none"
    key_threshold: float = 0.35
    background: str = ""  # image path, or "#rrggbb"; empty keeps the template background
    idle_crossfade_frames: int = 8
    # how the template loops without a jump
    idle_mode: Literal["pingpong", "crossfade"] = "pingpong"


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    token: str = ""  # bearer token for push/speak/interrupt; ANCHOR_TOKEN or generated if empty
    audio_queue_ms: int = 2000  # audio/features block; nothing dropped silently
    video_queue_ms: int = 200  # video is latest-wins for slow viewers
    max_ws_message_bytes: int = 1 << 20
    max_upload_bytes: int = 50 << 20
    # /offer and /whep bodies: real offers are a few KiB; a bigger one is refused (413) unread
    max_signalling_bytes: int = 64 << 10
    video_codec: Literal["VP8", "H264"] = "VP8"
    # The live pipeline's TCN windows (offline rendering keeps the bundle's `streaming`): the
    # hop, 1 frame: one TCN window (~1.6 ms) per frame on this CPU, 40 ms less latency than 2;
    hop_frames: int = 1
    # the lookahead (right context), 2 frames = 80 ms: the smallest whose held-out mouth error
    # stays within 5 % of the paper's 400 ms (benchmarks/results/cpu-2core/lookahead.json).
    lookahead_frames: int = 2
    # Compute + jitter budget on top of lookahead + hop (live input). None: sized at start from
    # the measured frame cost (anchor.pipeline.models.measured_margin_ms).
    latency_margin_ms: float | None = None
    resync_frames: int = 3  # the player rebases its clock when more than this many frames late
    viewer_audio_ms: int = 200  # per-viewer audio queue (drop-oldest beyond it)
    # Longest decoded duration /speak accepts (413 beyond; checked before decoding past it).
    # 600 s is 38 MB of 16 kHz float32 per queued file.
    max_speak_s: float = 600.0
    # /speak decoding runs on this many dedicated threads (never the default executor, which
    # aiortc's encoders use); a request waits up to speak_decode_wait_s for one, then gets 503.
    speak_decode_workers: int = 1
    speak_decode_wait_s: float = 10.0
    ws_idle_timeout_s: float = 10.0  # /ws/audio silent this long (no message) is closed; 0: never


    def validate(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"server.port {self.port} is not a port (0-65535)")
        if self.hop_frames < 1 or self.lookahead_frames < 0:
            raise ConfigError("server.hop_frames must be >= 1 and server.lookahead_frames >= 0")
        if self.latency_margin_ms is not None and not 0 <= self.latency_margin_ms <= 2000:
            raise ConfigError("server.latency_margin_ms must be between 0 and 2000 (or unset)")
        for name in ("audio_queue_ms", "video_queue_ms", "viewer_audio_ms"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"server.{name} must be > 0")

@dataclass(frozen=True)
class PlannerConfig:
    """The render stage's timing rules (anchor/pipeline/planner.py): when a live frame is late,
    dropped, held or rendered."""

    catchup_s: float = 0.08  # a live segment this far behind drops silent frames to catch up
    max_behind_s: float = 1.0  # ... and speech only beyond this (the backlog too late to show)
    pause_s: float = 0.12  # audio this much later than planned is a source pause: re-plan
    idle_lead_frames: int = 2  # idle frames are made this many frames ahead of their deadline
    in_flight: int = 2  # frames being rendered/composited at once (maps+infer overlap compose)
    underrun_guard_s: float = 0.005  # features later than deadline - idle cost - this: hold
    cost_smoothing: float = 0.2  # weight of the newest measurement in the cost estimates

    def validate(self) -> None:
        if min(self.catchup_s, self.max_behind_s, self.pause_s, self.underrun_guard_s) < 0:
            raise ConfigError("planner times must be >= 0")
        if self.idle_lead_frames < 0 or self.in_flight < 1:
            raise ConfigError("planner.idle_lead_frames must be >= 0 and in_flight >= 1")
        if not 0 < self.cost_smoothing <= 1:
            raise ConfigError("planner.cost_smoothing must be in (0, 1]")


@dataclass(frozen=True)
class BroadcastConfig:
    """Encode once, fan out: the shared encoder, viewer admission and eviction, recording."""

    video_bitrate_kbps: int = 1200  # the one shared encode (VP8 / H.264) every viewer receives
    audio_bitrate_kbps: int = 48  # the one shared Opus encode
    keyframe_interval_s: float = 2.0  # periodic keyframe, so a lost packet heals by itself
    keyframe_min_interval_ms: int = 500  # PLI/FIR/new viewers: at most one forced keyframe per
    viewer_video_ms: int = 200  # per-viewer encoded video queue; past it: drop to next keyframe
    max_viewers: int = 60  # past it /offer and /whep answer 503 + Retry-After
    viewer_timeout_s: float = 4.0  # no RTCP from a connected viewer this long: evicted
    encode_threads: int = 1  # libvpx / libx264 threads inside the one encode worker
    record_dir: str = "recordings"  # where POST /record writes (a name, never a path, is sent)
    # RTP URLs the one encoded stream is published to (an SFU such as Janus), e.g.
    # "rtp://127.0.0.1:5004"; README "Serving a large audience"
    publish: tuple[str, ...] = ()


    def validate(self) -> None:
        if self.video_bitrate_kbps <= 0 or self.audio_bitrate_kbps <= 0:
            raise ConfigError("broadcast bitrates must be > 0 kbit/s")
        if self.max_viewers < 1 or self.viewer_video_ms <= 0 or self.viewer_timeout_s <= 0:
            raise ConfigError("broadcast.max_viewers, viewer_video_ms and viewer_timeout_s "
                              "must be > 0")
        if self.keyframe_interval_s <= 0 or self.keyframe_min_interval_ms < 0:
            raise ConfigError("broadcast keyframe intervals must be > 0")

@dataclass(frozen=True)
class TtsConfig:
    """Offline text to speech in front of the pipeline (`anchor.tts`)."""

    # auto: festival for English if installed, else espeak-ng
    engine: Literal["auto", "festival", "espeak-ng"] = "auto"
    voice: str = ""  # the engine's voice; "" = its default (festival: HTS slt; espeak-ng: language)
    language: str = "en"  # espeak-ng language code (festival's voices are English)
    rate: float = 1.0  # speaking-rate multiplier (1.0 = the voice's own)
    max_chars: int = 5000  # longer text is refused
    sentence_max_chars: int = 400  # longer sentences are split at commas, then spaces
    # Phoneme timings sharpen the mouth (lips close on p/b/m, round on oo, open on vowels):
    # 0 = the TCN alone, 1 = the full constraint (anchor.mouth.visemes).
    phoneme_mouth: float = 1.0


    def validate(self) -> None:
        if not 0.5 <= self.rate <= 2.5:
            raise ConfigError(f"tts.rate {self.rate} must be between 0.5 and 2.5")
        if self.max_chars < 1 or self.sentence_max_chars < 1:
            raise ConfigError("tts.max_chars and tts.sentence_max_chars must be at least 1")
        if not 0.0 <= self.phoneme_mouth <= 1.0:
            raise ConfigError("tts.phoneme_mouth must be between 0 and 1")

@dataclass(frozen=True)
class MotionConfig:
    """Speech-driven head motion and keyword gestures (`anchor.compose.motion`).

    Amplitudes are fractions of the face box (shifts) and degrees (tilt); the motion is a smooth
    warp of the head region of each frame, so face, mouth and landmarks move together."""

    # auto: on for avatars with <= auto_max_template_s of footage
    head: Literal["auto", "on", "off"] = "auto"
    auto_max_template_s: float = 10.0  # a still photo or a short loop has no motion of its own
    seed: int = 0  # the same seed and speech give the same motion
    # Defaults: a calm news anchor (benchmarks/head_motion.py compares with real speakers).
    mode_shift: float = 0.03  # pose modes: head offset, of the face box, per axis at most
    mode_tilt_deg: float = 4.0  # pose modes: roll at most
    mode_change_s: float = 0.9  # a new pose mode eases in over this long
    mode_phrase_s: tuple[float, float] = (1.5, 3.0)  # while speaking, a new mode this often
    drift_shift: float = 0.006  # slow continuous sway on top (of the face box)
    drift_tilt_deg: float = 0.8
    nod_shift: float = 0.025  # a nod dips the head by up to this (of the face box)
    nod_peak_s: float = 0.14  # ... reaching its lowest this long after the prosodic peak
    nod_min_interval_s: float = 0.5  # nods at most this often
    nod_probability: float = 0.9  # a prosodic peak makes a nod this often (not every accent)
    nod_threshold_db: float = 2.0  # frame energy this far above its running level makes a peak
    gestures: bool = True  # play the avatar's keyword gestures (text input)


    def validate(self) -> None:
        amounts = ("auto_max_template_s", "mode_shift", "mode_tilt_deg", "mode_change_s",
                   "drift_shift", "drift_tilt_deg", "nod_shift", "nod_peak_s",
                   "nod_min_interval_s", "nod_threshold_db")
        for name in amounts:
            if getattr(self, name) < 0:
                raise ConfigError(f"motion.{name} must be >= 0")
        if len(self.mode_phrase_s) != 2 or not 0 < self.mode_phrase_s[0] <= self.mode_phrase_s[1]:
            raise ConfigError("motion.mode_phrase_s must be two increasing positive seconds")
        if not 0.0 <= self.nod_probability <= 1.0:
            raise ConfigError("motion.nod_probability must be between 0 and 1")

@dataclass(frozen=True)
class AnchorConfig:
    audio: AudioConfig = field(default_factory=AudioConfig)
    video: VideoConfig = field(default_factory=VideoConfig)
    face: FaceConfig = field(default_factory=FaceConfig)
    mouth_model: MouthModelConfig = field(default_factory=MouthModelConfig)
    mouth_train: MouthTrainConfig = field(default_factory=MouthTrainConfig)
    streaming: StreamingConfig = field(default_factory=StreamingConfig)
    renderer: RendererConfig = field(default_factory=RendererConfig)
    renderer_train: RendererTrainConfig = field(default_factory=RendererTrainConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    compose: ComposeConfig = field(default_factory=ComposeConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    broadcast: BroadcastConfig = field(default_factory=BroadcastConfig)
    tts: TtsConfig = field(default_factory=TtsConfig)
    motion: MotionConfig = field(default_factory=MotionConfig)


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON/TOML-friendly dict of a (nested) config dataclass."""
    out = dataclasses.asdict(cfg)
    return typing.cast(dict[str, Any], _listify(out))


def _listify(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _listify(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_listify(v) for v in value]
    return value


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build a (nested) config dataclass from a dict, rejecting unknown keys with a clear message."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls} is not a dataclass")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} field(s): {', '.join(sorted(unknown))}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, f"{cls.__name__}.{name}")
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a table")
        return from_dict(hint, value)
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(str, choices))}")
        return value
    if origin is tuple:
        (inner, *_rest) = typing.get_args(hint) or (Any,)
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        return tuple(_coerce(inner, v, where) for v in value)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None or value == "none":
            return None
        return _coerce(args[0], value, where)
    try:
        if hint is bool:
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if hint in (int, float, str):
            return hint(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: cannot read {value!r} as {hint.__name__}") from exc
    return value


def apply_overrides(cfg: AnchorConfig, overrides: list[str]) -> AnchorConfig:
    """Apply `section.field=value` strings (from `--set`) to a config, returning a new one."""
    data = to_dict(cfg)
    for item in overrides:
        key, sep, value = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) != 2:
            raise ConfigError(f"override {item!r} must look like section.field=value")
        section, name = parts
        if section not in data or not isinstance(data[section], dict):
            raise ConfigError(f"override {item!r}: no config section {section!r}")
        if name not in data[section]:
            raise ConfigError(f"override {item!r}: section {section!r} has no field {name!r}")
        data[section][name] = value.strip()
    return from_dict(AnchorConfig, data)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> AnchorConfig:
    cfg = AnchorConfig()
    if path is not None:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {p} does not exist") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {p} is not valid TOML: {exc}") from exc
        merged = to_dict(cfg)
        for section, values in data.items():
            if section not in merged or not isinstance(values, dict):
                raise ConfigError(f"config file {p}: unknown section [{section}]")
            merged[section].update(values)
        cfg = from_dict(AnchorConfig, merged)
    if overrides:
        cfg = apply_overrides(cfg, overrides)
    validate_config(cfg)
    return cfg


def replace_checked(section: T, **changes: Any) -> T:
    """`dataclasses.replace` with each value read and checked by its field's type (a Literal
    option must be one of its choices), e.g. replace_checked(cfg.tts, engine=name)."""
    hints = typing.get_type_hints(type(section))
    name = type(section).__name__
    values = {k: _coerce(hints[k], v, f"{name}.{k}") for k, v in changes.items()}
    return dataclasses.replace(section, **values)  # type: ignore[type-var]


def validate_config(cfg: AnchorConfig) -> None:
    """Every section checks itself (`validate()`), so a bad value fails when the config loads,
    in one line naming the field, not later where it is used."""
    for f in dataclasses.fields(cfg):
        check = getattr(getattr(cfg, f.name), "validate", None)
        if callable(check):
            check()
